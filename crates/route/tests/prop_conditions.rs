//! Property tests of the condition compiler (issue 15): any JSON thrown at it compiles or is
//! refused with an error whose path points into that JSON, never a panic; and conditions
//! built from the operators decide exactly as a small reference evaluator written here.
//!
//! CI runs a fixed number of cases per property (`CASES`); set `PROPTEST_CASES` for a
//! longer local run, e.g. `PROPTEST_CASES=20000 cargo test -p portcullis-route --test prop_conditions`.

use std::collections::BTreeMap;

use portcullis_core::RequestView;
use portcullis_core::context::Metadata;
use portcullis_route::{Condition, RouteInput};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value, json};

/// Cases per property in CI (debug build, 2 cores: a few seconds per suite).
const CASES: u32 = 2000;

/// `CASES`, unless `PROPTEST_CASES` asks for more (or fewer). No regression files are
/// written: a failure found is kept as a plain test below.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------------------------------------
// Arbitrary JSON: never a panic, errors with a path into the input.

/// Keys a query may hold, right and wrong.
fn query_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "$and", "$or", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex",
            "$length", "$", "metadata.plan", "metadata.tier", "metadata.", "metadata.a.b",
            "params.model", "params.messages.0.role", "params.", "params..x", "params.a.",
            "url.pathname", "url.host", "", "plan",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,8}",
        1 => "\\$[a-z]{0,6}",
    ]
}

/// Regex sources, valid and not, including ones that are expensive to build.
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z^$.*+?|()\\[\\]{}0-9\\\\-]{0,16}",
        prop::sample::select(vec![
            "^gpt-4o",
            "(",
            "[",
            "a{2,1}",
            "(?=x)",
            "\\1",
            "\\w{60}",
            "\\w{1000}",
            "(a|b)*c",
            "\\p{Greek}+",
            "x{100}{100}",
            "[^\\x00-\\x{10FFFF}]",
            "(?i)GPT",
            "",
        ])
        .prop_map(str::to_owned),
    ]
}

fn any_operand() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "3", "-2.5", "1e3", " 7 ", "NaN", "inf", "3abc", "paid", ""
        ])
        .prop_map(Value::from),
        "\\PC{0,6}".prop_map(Value::from),
        pattern().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(query_key(), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Anything shaped roughly like a query: objects of query keys, arrays of those, operators
/// under fields, nested several levels.
fn any_query() -> impl Strategy<Value = Value> {
    let leaf = any_operand();
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            3 => prop::collection::btree_map(query_key(), inner.clone(), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            1 => prop::collection::vec(inner, 0..4).prop_map(Value::Array),
        ]
    })
}

/// One segment of a `BuildError` path.
#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Reads a path as `BuildError` writes it: bare keys, JSON-quoted keys and `[i]`, joined by
/// dots (none before an index).
fn segments(path: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or("unclosed [")?;
            out.push(Segment::Index(
                after[..end].parse().map_err(|_| "bad index")?,
            ));
            rest = &after[end + 1..];
        } else if rest.starts_with('"') {
            let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
            let key = de
                .next()
                .ok_or("empty quoted key")?
                .map_err(|e| e.to_string())?;
            let used = de.byte_offset();
            out.push(Segment::Key(key));
            rest = &rest[used..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            if key.is_empty() {
                return Err(format!("empty bare key in {path}"));
            }
            out.push(Segment::Key(key.to_owned()));
            rest = &rest[end..];
        }
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
            if rest.is_empty() || rest.starts_with('[') {
                return Err(format!("a dot before nothing or an index in {path}"));
            }
        }
    }
    Ok(out)
}

/// The value at `path` in `value`, if the path leads somewhere.
fn at<'a>(value: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, segment| match segment {
        Segment::Key(k) => v.as_object()?.get(k),
        Segment::Index(i) => v.as_array()?.get(*i),
    })
}

/// A request input with a bit of everything, for compiled conditions to run on.
fn sample_inputs() -> (Metadata, RequestView) {
    let metadata = Metadata::new(
        [("plan", "paid"), ("tier", "3"), ("a.b", "x"), ("", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    let view = RequestView::parse(bytes::Bytes::from_static(
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"n":2,"x":null}"#,
    ))
    .unwrap();
    (metadata, view)
}

// ---------------------------------------------------------------------------------------------
// Well-formed conditions over metadata, and the reference evaluator.

const KEYS: [&str; 3] = ["plan", "tier", "region"];
const TEXTS: [&str; 9] = ["paid", "free", "3", "2.5", "-1", "abc", "", " 7 ", "1e1"];

/// An operand of `$gt` and its family: a number, or a string that reads as one.
#[derive(Clone, Debug)]
enum Bound {
    Number(f64),
    Text(&'static str),
}

impl Bound {
    fn json(&self) -> Value {
        match self {
            Bound::Number(n) => json!(n),
            Bound::Text(t) => json!(t),
        }
    }

    fn value(&self) -> f64 {
        match self {
            Bound::Number(n) => *n,
            Bound::Text(t) => number(t).expect("bounds are numeric"),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Eq(&'static str),
    Ne(&'static str),
    Gt(Bound),
    Gte(Bound),
    Lt(Bound),
    Lte(Bound),
    In(Vec<&'static str>),
    Nin(Vec<&'static str>),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Eq(_) => "$eq",
            Op::Ne(_) => "$ne",
            Op::Gt(_) => "$gt",
            Op::Gte(_) => "$gte",
            Op::Lt(_) => "$lt",
            Op::Lte(_) => "$lte",
            Op::In(_) => "$in",
            Op::Nin(_) => "$nin",
        }
    }

    fn operand(&self) -> Value {
        match self {
            Op::Eq(t) | Op::Ne(t) => json!(t),
            Op::Gt(b) | Op::Gte(b) | Op::Lt(b) | Op::Lte(b) => b.json(),
            Op::In(ts) | Op::Nin(ts) => json!(ts),
        }
    }
}

/// How a field's tests are written: a plain value (`{"metadata.plan": "paid"}`) or an object
/// of operators, each name at most once.
#[derive(Clone, Debug)]
enum Tests {
    Plain(&'static str),
    Ops(Vec<Op>),
}

#[derive(Clone, Debug)]
struct Query {
    fields: BTreeMap<&'static str, Tests>,
    and: Option<Vec<Query>>,
    or: Option<Vec<Query>>,
}

impl Query {
    fn json(&self) -> Value {
        let mut object = Map::new();
        for (key, tests) in &self.fields {
            let value = match tests {
                Tests::Plain(t) => json!(t),
                Tests::Ops(ops) => Value::Object(
                    ops.iter()
                        .map(|op| (op.name().to_owned(), op.operand()))
                        .collect(),
                ),
            };
            object.insert(format!("metadata.{key}"), value);
        }
        if let Some(qs) = &self.and {
            object.insert("$and".into(), qs.iter().map(Query::json).collect());
        }
        if let Some(qs) = &self.or {
            object.insert("$or".into(), qs.iter().map(Query::json).collect());
        }
        Value::Object(object)
    }
}

/// The reference: metadata values are text; a missing field makes `$ne` and `$nin` hold and
/// everything else fail; ordering compares the value read as a finite number with the bound.
fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn op_holds(op: &Op, value: Option<&str>) -> bool {
    let compare = |bound: &Bound, ok: fn(f64, f64) -> bool| {
        value.and_then(number).is_some_and(|v| ok(v, bound.value()))
    };
    match op {
        Op::Eq(t) => value == Some(*t),
        Op::Ne(t) => value != Some(*t),
        Op::Gt(b) => compare(b, |v, b| v > b),
        Op::Gte(b) => compare(b, |v, b| v >= b),
        Op::Lt(b) => compare(b, |v, b| v < b),
        Op::Lte(b) => compare(b, |v, b| v <= b),
        Op::In(ts) => value.is_some_and(|v| ts.contains(&v)),
        Op::Nin(ts) => !value.is_some_and(|v| ts.contains(&v)),
    }
}

fn reference(query: &Query, metadata: &BTreeMap<String, String>) -> bool {
    let fields = query.fields.iter().all(|(key, tests)| {
        let value = metadata.get(*key).map(String::as_str);
        match tests {
            Tests::Plain(t) => value == Some(*t),
            Tests::Ops(ops) => ops.iter().all(|op| op_holds(op, value)),
        }
    });
    let and = query
        .and
        .as_ref()
        .is_none_or(|qs| qs.iter().all(|q| reference(q, metadata)));
    let or = query
        .or
        .as_ref()
        .is_none_or(|qs| qs.iter().any(|q| reference(q, metadata)));
    fields && and && or
}

fn text() -> impl Strategy<Value = &'static str> {
    prop::sample::select(TEXTS.to_vec())
}

fn bound() -> impl Strategy<Value = Bound> {
    prop_oneof![
        prop::sample::select(vec![-1.0, 0.0, 2.0, 2.5, 3.0, 7.0, 10.0]).prop_map(Bound::Number),
        prop::sample::select(vec!["3", "2.5", "-1", " 7 ", "1e1"]).prop_map(Bound::Text),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        text().prop_map(Op::Eq),
        text().prop_map(Op::Ne),
        bound().prop_map(Op::Gt),
        bound().prop_map(Op::Gte),
        bound().prop_map(Op::Lt),
        bound().prop_map(Op::Lte),
        prop::collection::vec(text(), 0..4).prop_map(Op::In),
        prop::collection::vec(text(), 0..4).prop_map(Op::Nin),
    ]
}

fn tests() -> impl Strategy<Value = Tests> {
    prop_oneof![
        text().prop_map(Tests::Plain),
        // At least one operator, each name once.
        prop::collection::vec(op(), 1..4).prop_map(|ops| {
            let mut seen = Vec::new();
            Tests::Ops(
                ops.into_iter()
                    .filter(|op| {
                        let fresh = !seen.contains(&op.name());
                        seen.push(op.name());
                        fresh
                    })
                    .collect(),
            )
        }),
    ]
}

fn fields() -> impl Strategy<Value = BTreeMap<&'static str, Tests>> {
    prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), tests(), 0..3)
}

fn query() -> impl Strategy<Value = Query> {
    let leaf = fields().prop_map(|fields| Query {
        fields,
        and: None,
        or: None,
    });
    leaf.prop_recursive(4, 32, 4, |inner| {
        (
            fields(),
            prop::option::of(prop::collection::vec(inner.clone(), 0..4)),
            prop::option::of(prop::collection::vec(inner, 0..4)),
        )
            .prop_map(|(fields, and, or)| Query { fields, and, or })
    })
}

fn metadata() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
        text().prop_map(str::to_owned),
        0..=KEYS.len(),
    )
}

proptest! {
    #![proptest_config(config())]

    /// Any JSON: compiles, or fails with a path that leads to a place in that JSON (empty
    /// only when the query itself is not an object); a compiled one runs on any input.
    #[test]
    fn any_json_compiles_or_names_its_path(query in any_query()) {
        match Condition::compile(&query) {
            Ok(condition) => {
                prop_assert!(query.is_object());
                let (metadata, view) = sample_inputs();
                let full = RouteInput::new().metadata(&metadata).view(&view).path("/v1/chat/completions");
                let _ = condition.matches(&full);
                let _ = condition.matches(&RouteInput::new());
            }
            Err(err) => {
                prop_assert!(!err.message().is_empty());
                if query.is_object() {
                    prop_assert!(!err.path().is_empty(), "{}", err);
                    let segments = segments(err.path())
                        .map_err(|e| TestCaseError::fail(format!("{err}: unreadable path: {e}")))?;
                    prop_assert!(
                        at(&query, &segments).is_some(),
                        "{} points nowhere in {}", err.path(), query
                    );
                } else {
                    prop_assert_eq!(err.path(), "");
                }
                prop_assert!(err.to_string().ends_with(err.message()));
            }
        }
    }

    /// Well-formed conditions over metadata decide as the reference evaluator does.
    #[test]
    fn conditions_agree_with_the_reference(query in query(), values in metadata()) {
        let json = query.json();
        let condition = Condition::compile(&json)
            .map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
        let metadata = Metadata::new(values.clone());
        let expected = reference(&query, &values);
        prop_assert_eq!(
            condition.matches(&RouteInput::new().metadata(&metadata)),
            expected,
            "{} on {:?}", json, values
        );
        // Without metadata every field is missing: the same as empty metadata.
        prop_assert_eq!(
            condition.matches(&RouteInput::new()),
            reference(&query, &BTreeMap::new()),
            "{} without metadata", json
        );
    }

    /// `$ne` and `$nin` are the negations of `$eq` and `$in`, present or missing.
    #[test]
    fn negations_negate(key in prop::sample::select(KEYS.to_vec()), t in text(), ts in prop::collection::vec(text(), 0..4), values in metadata()) {
        let metadata = Metadata::new(values);
        let input = RouteInput::new().metadata(&metadata);
        let field = format!("metadata.{key}");
        let eq = Condition::compile(&json!({&field: {"$eq": t}})).unwrap().matches(&input);
        let ne = Condition::compile(&json!({&field: {"$ne": t}})).unwrap().matches(&input);
        prop_assert_ne!(eq, ne);
        let is_in = Condition::compile(&json!({&field: {"$in": ts}})).unwrap().matches(&input);
        let nin = Condition::compile(&json!({&field: {"$nin": ts}})).unwrap().matches(&input);
        prop_assert_ne!(is_in, nin);
    }
}

#[test]
fn paths_are_read_as_they_are_written() {
    let query = json!({"$or": [{"params.model": {"$regex": "("}}]});
    let err = Condition::compile(&query).unwrap_err();
    let s = segments(err.path()).unwrap();
    assert_eq!(at(&query, &s), Some(&json!("(")));
    assert!(segments("a..b").is_err());
}
