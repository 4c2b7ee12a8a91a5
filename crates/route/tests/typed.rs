//! Conditions built in Rust: every typed operator compiles to what its JSON twin compiles to
//! and decides the same on a corpus of requests; nesting; regex limits; closure predicates;
//! and routers built only from typed conditions, through `oneshot` and over loopback HTTP.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use http::{Extensions, HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::context::{Metadata, TargetPath};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, OverrideParamsLayer, RequestView};
use portcullis_provider::OpenAi;
use portcullis_route::condition::Predicate;
use portcullis_route::{
    BoxTarget, BuildError, Condition, ConditionalRouter, RegexLimits, RouteInput,
};
use portcullis_testkit::FakeUpstream;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};

// ---------------------------------------------------------------------------------------------
// The corpus: every combination of a body, metadata and a path.

fn bodies() -> Vec<Option<Value>> {
    let mut bodies = vec![None];
    for body in [
        json!({}),
        json!({"model": "gpt-4o"}),
        json!({"model": "gpt-4o-mini"}),
        json!({"model": "GPT-4o"}),
        json!({"model": "claude-3-5-sonnet"}),
        json!({"model": null}),
        // `model`, `user`, `stream` and `messages` must have their types; `seed` and
        // `logprobs` may be anything.
        json!({"seed": 4}),
        json!({"seed": "4"}),
        json!({"seed": "gpt-4o"}),
        json!({"seed": null}),
        json!({"seed": true}),
        json!({"seed": ["gpt-4o"]}),
        json!({"seed": {"name": "gpt-4o"}}),
        json!({"logprobs": true}),
        json!({"logprobs": "true"}),
        json!({"temperature": 0.2}),
        json!({"temperature": 1}),
        json!({"temperature": 1.0}),
        json!({"temperature": "0.7"}),
        json!({"temperature": " 1.5 "}),
        json!({"temperature": "hot"}),
        json!({"temperature": "1e3"}),
        json!({"max_tokens": u64::MAX}),
        json!({"max_tokens": -3}),
        json!({"stream": true}),
        json!({"stream": false}),
        json!({"user": null}),
        json!({"user": "alice@example.com"}),
        json!({"user": "bob@elsewhere.org"}),
        json!({"stop": ["a", "b"]}),
        json!({"stop": ["b", "a"]}),
        json!({"response_format": {"type": "json_object"}}),
        json!({"response_format": {"type": "json_schema", "strict": true}}),
        json!({"response_format": {"strict": true, "type": "json_object"}}),
        json!({"messages": [{"role": "system"}, {"role": "user"}]}),
        json!({"messages": [{"role": "user"}]}),
        json!({"metadata": {"a.b": "x"}}),
        json!({"model": "gpt-4o", "temperature": 0.2, "response_format": {"type": "json_object"}}),
        json!({"model": "o1-preview", "temperature": 1, "stream": true}),
    ] {
        bodies.push(Some(body));
    }
    bodies
}

fn metadatas() -> Vec<Option<Metadata>> {
    let mut all = vec![None];
    for pairs in [
        &[][..],
        &[("plan", "paid")],
        &[("plan", "free")],
        &[("plan", "Paid")],
        &[("plan", "")],
        &[("plan", "team"), ("tier", "3")],
        &[("tier", "2")],
        &[("tier", " 2.5 ")],
        &[("tier", "x")],
        &[("tier", "-1")],
        &[("a.b", "dotted")],
    ] {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.push(Some(Metadata::new(map)));
    }
    all
}

const PATHS: [Option<&str>; 4] = [
    None,
    Some("/v1/chat/completions"),
    Some("/v1/embeddings"),
    Some("/admin/v1/chat/completions"),
];

/// The parts every input of the corpus borrows.
struct Corpus {
    views: Vec<Option<RequestView>>,
    metadatas: Vec<Option<Metadata>>,
}

impl Corpus {
    fn new() -> Self {
        Self {
            views: bodies()
                .into_iter()
                .map(|b| b.map(|b| RequestView::parse(b.to_string().into()).unwrap()))
                .collect(),
            metadatas: metadatas(),
        }
    }

    fn inputs(&self) -> Vec<RouteInput<'_>> {
        let mut inputs = Vec::new();
        for view in &self.views {
            for metadata in &self.metadatas {
                for path in PATHS {
                    let mut input = RouteInput::new();
                    if let Some(view) = view {
                        input = input.view(view);
                    }
                    if let Some(metadata) = metadata {
                        input = input.metadata(metadata);
                    }
                    if let Some(path) = path {
                        input = input.path(path);
                    }
                    inputs.push(input);
                }
            }
        }
        inputs
    }
}

/// Asserts that each typed condition compiles to the same tree as its JSON twin, decides the
/// same on every input of the corpus, and that the corpus exercises it both ways.
fn same_decisions(rows: Vec<(Condition, Value)>) {
    let corpus = Corpus::new();
    let inputs = corpus.inputs();
    for (i, (typed, query)) in rows.into_iter().enumerate() {
        let json = Condition::compile(&query).unwrap_or_else(|e| panic!("row {i}: {query}: {e}"));
        assert_eq!(
            format!("{typed:?}"),
            format!("{json:?}"),
            "row {i}: {query}: the compiled trees differ"
        );
        let mut held = 0;
        for input in &inputs {
            let decision = typed.matches(input);
            assert_eq!(
                decision,
                json.matches(input),
                "row {i}: {query}: decisions differ on {input:?}"
            );
            held += usize::from(decision);
        }
        assert!(held > 0, "row {i}: {query}: holds for no input");
        assert!(
            held < inputs.len(),
            "row {i}: {query}: holds for every input"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// One test per operator.

fn eq_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("plan").eq("paid"),
            json!({"metadata.plan": {"$eq": "paid"}}),
        ),
        (
            Condition::metadata("plan").eq(""),
            json!({"metadata.plan": {"$eq": ""}}),
        ),
        (
            Condition::metadata("a.b").eq("dotted"),
            json!({"metadata.a.b": {"$eq": "dotted"}}),
        ),
        (
            Condition::param("model").eq("gpt-4o"),
            json!({"params.model": {"$eq": "gpt-4o"}}),
        ),
        (
            Condition::param("seed").eq(4),
            json!({"params.seed": {"$eq": 4}}),
        ),
        (
            Condition::param("seed").eq("4"),
            json!({"params.seed": {"$eq": "4"}}),
        ),
        (
            Condition::param("model").eq(Value::Null),
            json!({"params.model": {"$eq": null}}),
        ),
        (
            Condition::param("seed").eq(true),
            json!({"params.seed": {"$eq": true}}),
        ),
        (
            Condition::param("seed").eq(json!(["gpt-4o"])),
            json!({"params.seed": {"$eq": ["gpt-4o"]}}),
        ),
        (
            Condition::param("temperature").eq(1),
            json!({"params.temperature": {"$eq": 1}}),
        ),
        (
            Condition::param("temperature").eq(0.2),
            json!({"params.temperature": {"$eq": 0.2}}),
        ),
        (
            Condition::param("max_tokens").eq(u64::MAX),
            json!({"params.max_tokens": {"$eq": u64::MAX}}),
        ),
        (
            Condition::param("stop").eq(json!(["a", "b"])),
            json!({"params.stop": {"$eq": ["a", "b"]}}),
        ),
        (
            Condition::param("response_format").eq(json!({"type": "json_object", "strict": true})),
            json!({"params.response_format": {"$eq": {"type": "json_object", "strict": true}}}),
        ),
        (
            Condition::param("response_format.type").eq("json_object"),
            json!({"params.response_format.type": {"$eq": "json_object"}}),
        ),
        (
            Condition::param("messages.0.role").eq("system"),
            json!({"params.messages.0.role": {"$eq": "system"}}),
        ),
        (
            Condition::param_path(["messages", "1", "role"]).eq("user"),
            json!({"params.messages.1.role": {"$eq": "user"}}),
        ),
        (
            Condition::path().eq("/v1/embeddings"),
            json!({"url.pathname": {"$eq": "/v1/embeddings"}}),
        ),
    ]
}

#[test]
fn eq_matches_its_json_twin() {
    same_decisions(eq_rows());
}

#[test]
fn a_plain_value_is_eq() {
    // The JSON shorthand `{"field": value}` compiles to `$eq`, as the typed `eq` does.
    same_decisions(vec![
        (
            Condition::metadata("plan").eq("paid"),
            json!({"metadata.plan": "paid"}),
        ),
        (
            Condition::param("stream").eq(true),
            json!({"params.stream": true}),
        ),
        (
            Condition::path().eq("/v1/chat/completions"),
            json!({"url.pathname": "/v1/chat/completions"}),
        ),
    ]);
}

fn ne_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("plan").ne("free"),
            json!({"metadata.plan": {"$ne": "free"}}),
        ),
        (
            Condition::param("model").ne("gpt-4o"),
            json!({"params.model": {"$ne": "gpt-4o"}}),
        ),
        (
            Condition::param("model").ne(Value::Null),
            json!({"params.model": {"$ne": null}}),
        ),
        (
            Condition::param("stream").ne(true),
            json!({"params.stream": {"$ne": true}}),
        ),
        (
            Condition::param("response_format.type").ne("json_object"),
            json!({"params.response_format.type": {"$ne": "json_object"}}),
        ),
        (
            Condition::path().ne("/v1/chat/completions"),
            json!({"url.pathname": {"$ne": "/v1/chat/completions"}}),
        ),
    ]
}

#[test]
fn ne_matches_its_json_twin() {
    same_decisions(ne_rows());
}

fn gt_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("tier").gt(2),
            json!({"metadata.tier": {"$gt": 2}}),
        ),
        (
            Condition::metadata("tier").gt(-1.5),
            json!({"metadata.tier": {"$gt": -1.5}}),
        ),
        (
            Condition::param("temperature").gt(0.5),
            json!({"params.temperature": {"$gt": 0.5}}),
        ),
        (
            Condition::param("max_tokens").gt(0),
            json!({"params.max_tokens": {"$gt": 0}}),
        ),
        (
            Condition::param("seed").gt(3),
            json!({"params.seed": {"$gt": 3}}),
        ),
    ]
}

#[test]
fn gt_matches_its_json_twin() {
    same_decisions(gt_rows());
}

fn gte_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("tier").gte(2),
            json!({"metadata.tier": {"$gte": 2}}),
        ),
        (
            Condition::param("temperature").gte(1),
            json!({"params.temperature": {"$gte": 1}}),
        ),
        (
            Condition::param("temperature").gte(1.5),
            json!({"params.temperature": {"$gte": 1.5}}),
        ),
    ]
}

#[test]
fn gte_matches_its_json_twin() {
    same_decisions(gte_rows());
}

fn lt_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("tier").lt(2.5),
            json!({"metadata.tier": {"$lt": 2.5}}),
        ),
        (
            Condition::param("temperature").lt(1),
            json!({"params.temperature": {"$lt": 1}}),
        ),
        (
            Condition::param("max_tokens").lt(0),
            json!({"params.max_tokens": {"$lt": 0}}),
        ),
    ]
}

#[test]
fn lt_matches_its_json_twin() {
    same_decisions(lt_rows());
}

fn lte_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("tier").lte(2),
            json!({"metadata.tier": {"$lte": 2}}),
        ),
        (
            Condition::param("temperature").lte(1),
            json!({"params.temperature": {"$lte": 1}}),
        ),
        (
            Condition::param("temperature").lte(1000),
            json!({"params.temperature": {"$lte": 1000}}),
        ),
    ]
}

#[test]
fn lte_matches_its_json_twin() {
    same_decisions(lte_rows());
}

fn in_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("plan").is_in(["paid", "team"]),
            json!({"metadata.plan": {"$in": ["paid", "team"]}}),
        ),
        (
            Condition::param("model").is_in(["gpt-4o", "claude-3-5-sonnet"]),
            json!({"params.model": {"$in": ["gpt-4o", "claude-3-5-sonnet"]}}),
        ),
        (
            Condition::param("seed").is_in([json!(4), json!(null), json!(["gpt-4o"])]),
            json!({"params.seed": {"$in": [4, null, ["gpt-4o"]]}}),
        ),
        (
            Condition::path().is_in(["/v1/embeddings", "/v1/completions"]),
            json!({"url.pathname": {"$in": ["/v1/embeddings", "/v1/completions"]}}),
        ),
    ]
}

#[test]
fn in_matches_its_json_twin() {
    same_decisions(in_rows());
}

fn nin_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("plan").not_in(["paid", "team"]),
            json!({"metadata.plan": {"$nin": ["paid", "team"]}}),
        ),
        (
            Condition::param("model").not_in(["gpt-4o", "gpt-4o-mini"]),
            json!({"params.model": {"$nin": ["gpt-4o", "gpt-4o-mini"]}}),
        ),
        (
            Condition::param("logprobs").not_in([json!(true), json!("true")]),
            json!({"params.logprobs": {"$nin": [true, "true"]}}),
        ),
        (
            Condition::path().not_in(["/v1/chat/completions"]),
            json!({"url.pathname": {"$nin": ["/v1/chat/completions"]}}),
        ),
    ]
}

#[test]
fn nin_matches_its_json_twin() {
    same_decisions(nin_rows());
}

fn regex_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::metadata("plan").regex("^(paid|team)$").unwrap(),
            json!({"metadata.plan": {"$regex": "^(paid|team)$"}}),
        ),
        (
            Condition::param("model").regex("^gpt-4o").unwrap(),
            json!({"params.model": {"$regex": "^gpt-4o"}}),
        ),
        (
            Condition::param("model").regex("(?i)^gpt").unwrap(),
            json!({"params.model": {"$regex": "(?i)^gpt"}}),
        ),
        (
            Condition::param("user").regex(r"@example\.com$").unwrap(),
            json!({"params.user": {"$regex": r"@example\.com$"}}),
        ),
        // Only strings match: the number 4 is not the text "4".
        (
            Condition::param("seed").regex("^4$").unwrap(),
            json!({"params.seed": {"$regex": "^4$"}}),
        ),
        (
            Condition::path().regex("^/admin/").unwrap(),
            json!({"url.pathname": {"$regex": "^/admin/"}}),
        ),
        (
            Condition::param("response_format.type")
                .regex_with("^json_", &RegexLimits::default().max_len(8))
                .unwrap(),
            json!({"params.response_format.type": {"$regex": "^json_"}}),
        ),
    ]
}

#[test]
fn regex_matches_its_json_twin() {
    same_decisions(regex_rows());
}

fn and_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::and([
                Condition::param("model").eq("gpt-4o"),
                Condition::param("temperature").lt(0.5),
            ]),
            json!({"$and": [
                {"params.model": {"$eq": "gpt-4o"}},
                {"params.temperature": {"$lt": 0.5}},
            ]}),
        ),
        (
            Condition::and([
                Condition::metadata("plan").eq("team"),
                Condition::metadata("tier").gte(3),
                Condition::path().regex("^/v1/").unwrap(),
            ]),
            json!({"$and": [
                {"metadata.plan": {"$eq": "team"}},
                {"metadata.tier": {"$gte": 3}},
                {"url.pathname": {"$regex": "^/v1/"}},
            ]}),
        ),
    ]
}

#[test]
fn and_matches_its_json_twin() {
    same_decisions(and_rows());
}

fn or_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::or([
                Condition::metadata("plan").eq("paid"),
                Condition::param("stream").eq(true),
            ]),
            json!({"$or": [
                {"metadata.plan": {"$eq": "paid"}},
                {"params.stream": {"$eq": true}},
            ]}),
        ),
        (
            Condition::or([
                Condition::path().eq("/v1/embeddings"),
                Condition::param("model").regex("^claude").unwrap(),
            ]),
            json!({"$or": [
                {"url.pathname": {"$eq": "/v1/embeddings"}},
                {"params.model": {"$regex": "^claude"}},
            ]}),
        ),
    ]
}

#[test]
fn or_matches_its_json_twin() {
    same_decisions(or_rows());
}

fn nested_and_or_rows() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::and([
                Condition::metadata("tier").gte(2),
                Condition::or([
                    Condition::param("response_format.type").eq("json_object"),
                    Condition::param("model").regex("^gpt-4o").unwrap(),
                ]),
            ]),
            json!({"$and": [
                {"metadata.tier": {"$gte": 2}},
                {"$or": [
                    {"params.response_format.type": {"$eq": "json_object"}},
                    {"params.model": {"$regex": "^gpt-4o"}},
                ]},
            ]}),
        ),
        (
            Condition::or([
                Condition::and([
                    Condition::param("model").eq("gpt-4o"),
                    Condition::or([
                        Condition::param("temperature").lte(0.2),
                        Condition::metadata("plan").is_in(["paid"]),
                    ]),
                ]),
                Condition::and([
                    Condition::path().ne("/v1/chat/completions"),
                    Condition::param("stream").not_in([json!(false)]),
                ]),
            ]),
            json!({"$or": [
                {"$and": [
                    {"params.model": {"$eq": "gpt-4o"}},
                    {"$or": [
                        {"params.temperature": {"$lte": 0.2}},
                        {"metadata.plan": {"$in": ["paid"]}},
                    ]},
                ]},
                {"$and": [
                    {"url.pathname": {"$ne": "/v1/chat/completions"}},
                    {"params.stream": {"$nin": [false]}},
                ]},
            ]}),
        ),
    ]
}

#[test]
fn nested_and_or_match_their_json_twins() {
    same_decisions(nested_and_or_rows());
}

#[test]
fn empty_and_holds_always_and_empty_or_never() {
    let corpus = Corpus::new();
    let all = Condition::and([]);
    let none = Condition::or([]);
    let json_all = Condition::compile(&json!({"$and": []})).unwrap();
    let json_none = Condition::compile(&json!({"$or": []})).unwrap();
    assert_eq!(format!("{all:?}"), format!("{json_all:?}"));
    assert_eq!(format!("{none:?}"), format!("{json_none:?}"));
    for input in corpus.inputs() {
        assert!(all.matches(&input) && json_all.matches(&input));
        assert!(!none.matches(&input) && !json_none.matches(&input));
    }
}

/// Every operator of the language has a table above, and every row of an operator's table
/// uses that operator.
#[test]
fn the_tables_cover_every_operator() {
    fn operators(value: &Value, found: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if key.starts_with('$') {
                        found.insert(key.clone());
                    }
                    operators(value, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| operators(v, found)),
            _ => {}
        }
    }
    let tables = [
        ("$eq", eq_rows()),
        ("$ne", ne_rows()),
        ("$gt", gt_rows()),
        ("$gte", gte_rows()),
        ("$lt", lt_rows()),
        ("$lte", lte_rows()),
        ("$in", in_rows()),
        ("$nin", nin_rows()),
        ("$regex", regex_rows()),
        ("$and", and_rows()),
        ("$or", or_rows()),
    ];
    for (op, rows) in &tables {
        assert!(!rows.is_empty(), "{op}");
        for (_, query) in rows {
            let mut found = BTreeSet::new();
            operators(query, &mut found);
            assert!(found.contains(*op), "{op}: {query}");
        }
    }
    let covered: BTreeSet<&str> = tables.iter().map(|(op, _)| *op).collect();
    let language: BTreeSet<&str> = [
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex", "$and", "$or",
    ]
    .into();
    assert_eq!(covered, language);
}

// ---------------------------------------------------------------------------------------------
// Regexes: the same limits and the same errors as the JSON form.

#[test]
fn a_typed_regex_past_the_limits_is_the_json_forms_error() {
    let typed = Condition::param("user").regex(r"\w{60}").unwrap_err();
    let json = Condition::compile(&json!({"params.user": {"$regex": r"\w{60}"}})).unwrap_err();
    assert_eq!(typed, json);
    assert_eq!(typed.path(), r#""params.user".$regex"#);
    assert!(typed.message().contains("larger than the limit"), "{typed}");

    let long = "a".repeat(RegexLimits::DEFAULT_MAX_LEN + 1);
    let typed = Condition::metadata("plan").regex(&long).unwrap_err();
    let json = Condition::compile(&json!({"metadata.plan": {"$regex": long}})).unwrap_err();
    assert_eq!(typed, json);
    assert_eq!(
        typed.message(),
        "a pattern is at most 1024 bytes, this one is 1025"
    );

    let typed = Condition::path().regex("(").unwrap_err();
    let json = Condition::compile(&json!({"url.pathname": {"$regex": "("}})).unwrap_err();
    assert_eq!(typed, json);
    assert!(typed.message().starts_with("invalid regex: "), "{typed}");
}

#[test]
fn typed_regex_limits_are_configurable_both_ways() {
    let roomy = RegexLimits::default().size_limit(64 << 20);
    assert!(
        Condition::param("user")
            .regex_with(r"\w{60}", &roomy)
            .is_ok()
    );

    let tight = RegexLimits::default().size_limit(1024);
    let err = Condition::param("user")
        .regex_with(r"\w+", &tight)
        .unwrap_err();
    assert!(err.message().contains("limit of 1024 bytes"), "{err}");

    let short = RegexLimits::default().max_len(3);
    assert!(
        Condition::metadata("plan")
            .regex_with("abc", &short)
            .is_ok()
    );
    let err = Condition::metadata("plan")
        .regex_with("abcd", &short)
        .unwrap_err();
    assert_eq!(err.path(), r#""metadata.plan".$regex"#);
    assert_eq!(err.message(), "a pattern is at most 3 bytes, this one is 4");
}

#[test]
fn a_typed_regex_error_reads_at_its_condition_in_a_router() {
    // What a router built from a list of typed conditions reports, placed by the caller.
    let conditions = [("^gpt", "a"), (r"\w{60}", "b")];
    let err = conditions
        .iter()
        .enumerate()
        .map(|(i, (pattern, _))| {
            Condition::param("model")
                .regex(pattern)
                .map_err(|e| e.in_key("query").in_index(i).prefixed("conditions"))
        })
        .collect::<Result<Vec<_>, BuildError>>()
        .unwrap_err();
    assert_eq!(err.path(), r#"conditions[1].query."params.model".$regex"#);
}

// ---------------------------------------------------------------------------------------------
// Predicates.

/// A caller's own extension, set by a layer in front.
#[derive(Clone, Debug)]
struct Team(&'static str);

/// A predicate type of the caller's: requests whose `Team` extension is on its list.
struct TeamIs(Vec<&'static str>);

impl Predicate for TeamIs {
    fn matches(&self, input: &RouteInput<'_>) -> bool {
        input
            .get_extensions()
            .and_then(|ext| ext.get::<Team>())
            .is_some_and(|team| self.0.contains(&team.0))
    }
}

#[test]
fn a_closure_predicate_reads_every_part_of_the_input() {
    let metadata = Metadata::new([("plan".to_owned(), "paid".to_owned())].into());
    let view = RequestView::parse(r#"{"model":"gpt-4o","stream":true}"#.into()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-tier", "gold".parse().unwrap());
    let mut extensions = Extensions::new();
    extensions.insert(Team("ml"));
    let full = RouteInput::new()
        .metadata(&metadata)
        .view(&view)
        .path("/v1/chat/completions")
        .headers(&headers)
        .extensions(&extensions);

    let every_part = Condition::predicate(|input| {
        input.get_metadata().and_then(|m| m.get("plan")) == Some("paid")
            && input.get_view().is_some_and(|v| v.stream())
            && input.get_path() == Some("/v1/chat/completions")
            && input
                .get_headers()
                .and_then(|h| h.get("x-tier"))
                .is_some_and(|v| v == "gold")
            && input
                .get_extensions()
                .and_then(|e| e.get::<Team>())
                .is_some()
    });
    assert!(every_part.matches(&full));
    assert!(!every_part.matches(&full.path("/v1/embeddings")));
    assert!(!every_part.matches(&RouteInput::new()));

    assert!(Condition::custom(TeamIs(vec!["ml"])).matches(&full));
    assert!(!Condition::custom(TeamIs(vec!["infra"])).matches(&full));
}

#[test]
fn predicates_combine_with_typed_conditions() {
    let view = RequestView::parse(r#"{"model":"gpt-4o"}"#.into()).unwrap();
    let other = RequestView::parse(r#"{"model":"claude-3-5-sonnet"}"#.into()).unwrap();
    let condition = Condition::and([
        Condition::param("model").regex("^gpt").unwrap(),
        Condition::or([
            Condition::predicate(|input| {
                input
                    .get_path()
                    .is_some_and(|p| p.ends_with("/chat/completions"))
            }),
            Condition::metadata("plan").eq("paid"),
        ]),
    ]);
    assert!(condition.matches(&RouteInput::new().view(&view).path("/v1/chat/completions")));
    assert!(!condition.matches(&RouteInput::new().view(&view).path("/v1/embeddings")));
    assert!(!condition.matches(&RouteInput::new().view(&other).path("/v1/chat/completions")));
    // Debug names the predicate without trying to show a closure.
    assert!(format!("{condition:?}").contains("Predicate(..)"));
}

// ---------------------------------------------------------------------------------------------
// Routers built only from typed conditions.

/// A target that answers its name and the target path the request carried.
fn named(name: &'static str) -> BoxTarget {
    BoxTarget::new(service_fn(move |req: Request<BufferedBody>| async move {
        let path = req
            .extensions()
            .get::<TargetPath>()
            .map(|p| p.to_string())
            .unwrap_or_default();
        Ok::<_, BoxError>(Response::new(Body::from(format!("{name} {path}"))))
    }))
}

async fn text(res: Response<Body>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn chat(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn a_router_of_typed_conditions_and_predicates_routes_through_oneshot() {
    let router = ConditionalRouter::builder()
        .target("gold", named("gold"))
        .target("team", named("team"))
        .target("json", named("json"))
        .target("rest", named("rest"))
        .condition(
            Condition::predicate(|input| {
                input
                    .get_headers()
                    .and_then(|h| h.get("x-tier"))
                    .is_some_and(|v| v == "gold")
            }),
            "gold",
        )
        .condition(Condition::custom(TeamIs(vec!["ml"])), "team")
        .condition(
            Condition::and([
                Condition::param("response_format.type").eq("json_object"),
                Condition::param("model").is_in(["gpt-4o", "gpt-4o-mini"]),
            ]),
            "json",
        )
        .default("rest")
        .build()
        .unwrap();
    let stack = EdgeLayer::new().layer(router);

    let mut gold = chat(r#"{"model":"gpt-4o"}"#);
    gold.headers_mut().insert("x-tier", "gold".parse().unwrap());
    let res = stack.clone().oneshot(gold).await.unwrap();
    assert_eq!(
        ResponseFacts::get(&res)
            .unwrap()
            .target
            .as_ref()
            .unwrap()
            .to_string(),
        "targets[0]"
    );
    assert_eq!(text(res).await, "gold targets[0]");

    let mut team = chat(r#"{"model":"gpt-4o"}"#);
    team.extensions_mut().insert(Team("ml"));
    assert_eq!(
        text(stack.clone().oneshot(team).await.unwrap()).await,
        "team targets[1]"
    );

    let json_mode = chat(r#"{"model":"gpt-4o-mini","response_format":{"type":"json_object"}}"#);
    assert_eq!(
        text(stack.clone().oneshot(json_mode).await.unwrap()).await,
        "json targets[2]"
    );

    let plain = chat(r#"{"model":"gpt-4o-mini"}"#);
    assert_eq!(
        text(stack.clone().oneshot(plain).await.unwrap()).await,
        "rest targets[3]"
    );
}

#[tokio::test]
async fn a_router_of_typed_conditions_decides_as_its_json_twin() {
    let typed = ConditionalRouter::builder()
        .target("a", ())
        .target("b", ())
        .condition(Condition::metadata("plan").is_in(["paid", "team"]), "b")
        .condition(Condition::param("model").regex("^claude").unwrap(), "a")
        .condition(Condition::path().ne("/v1/chat/completions"), "b")
        .build()
        .unwrap();
    let json = ConditionalRouter::builder()
        .target("a", ())
        .target("b", ())
        .conditions(&json!([
            {"query": {"metadata.plan": {"$in": ["paid", "team"]}}, "then": "b"},
            {"query": {"params.model": {"$regex": "^claude"}}, "then": "a"},
            {"query": {"url.pathname": {"$ne": "/v1/chat/completions"}}, "then": "b"},
        ]))
        .unwrap()
        .build()
        .unwrap();
    let corpus = Corpus::new();
    let mut routed = BTreeSet::new();
    for input in corpus.inputs() {
        let decision = typed.route(&input);
        assert_eq!(decision, json.route(&input), "{input:?}");
        routed.insert(decision);
    }
    assert_eq!(
        routed,
        [None, Some(0), Some(1)].into(),
        "every outcome is exercised"
    );
}

#[tokio::test]
async fn a_router_of_typed_conditions_routes_over_loopback() {
    let paid = FakeUpstream::start().await;
    let free = FakeUpstream::start().await;
    let target = |upstream: &FakeUpstream, model: &str| {
        let params = json!({"model": model}).as_object().unwrap().clone();
        OverrideParamsLayer::new(params)
            .layer(OpenAi::builder(upstream.base_url()).build().unwrap())
    };
    // Both targets are of one type: no boxing.
    let router = ConditionalRouter::builder()
        .target("paid-model", target(&paid, "gpt-4o"))
        .target("free-model", target(&free, "gpt-4o-mini"))
        .condition(Condition::metadata("user_plan").eq("paid"), "paid-model")
        .condition(
            Condition::and([
                Condition::param("messages.0.role").eq("system"),
                Condition::param("temperature").lte(0.3),
            ]),
            "paid-model",
        )
        .default("free-model")
        .build()
        .unwrap();
    let stack = EdgeLayer::new().layer(router);

    let mut req = chat(r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#);
    req.extensions_mut().insert(Metadata::new(
        [("user_plan".to_owned(), "paid".to_owned())].into(),
    ));
    let res = stack.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!((paid.hits(), free.hits()), (1, 0));
    assert_eq!(paid.last_request().unwrap().json()["model"], "gpt-4o");

    let req = chat(
        r#"{"model":"x","temperature":0.1,"messages":[{"role":"system","content":"be terse"}]}"#,
    );
    assert_eq!(stack.clone().oneshot(req).await.unwrap().status(), 200);
    assert_eq!((paid.hits(), free.hits()), (2, 0));

    let req =
        chat(r#"{"model":"x","temperature":0.9,"messages":[{"role":"system","content":"hi"}]}"#);
    assert_eq!(stack.clone().oneshot(req).await.unwrap().status(), 200);
    assert_eq!((paid.hits(), free.hits()), (2, 1));
    assert_eq!(free.last_request().unwrap().json()["model"], "gpt-4o-mini");
}
