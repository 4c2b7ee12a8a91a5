//! From Portkey's JSON query to the compiled tree: every check that can be made before a
//! request arrives is made here.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::value::{json_type, numeric_str};
use super::{Clause, Field, Query, RegexLimits, Test};
use crate::BuildError;

/// The operators of the language, for messages.
const OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $regex, $and, $or";

pub(super) fn query(value: &Value, limits: &RegexLimits) -> Result<Query, BuildError> {
    let Value::Object(object) = value else {
        return Err(BuildError::new(format!(
            "a query must be an object, got {}",
            json_type(value)
        )));
    };
    let mut clauses = Vec::with_capacity(object.len());
    for (key, value) in object {
        let clause = match key.as_str() {
            "$and" => queries(value, "$and", limits).map(Clause::All),
            "$or" => queries(value, "$or", limits).map(Clause::Any),
            op if op.starts_with('$') => Err(operator_without_field(op)),
            name => field(name).and_then(|field| {
                let tests = tests(&field, value, limits)?;
                Ok(Clause::Field { field, tests })
            }),
        };
        clauses.push(clause.map_err(|e| e.in_key(key))?);
    }
    Ok(Query {
        clauses: clauses.into(),
    })
}

/// The operand of `$and` / `$or`: an array of queries.
fn queries(value: &Value, op: &str, limits: &RegexLimits) -> Result<Box<[Query]>, BuildError> {
    let Value::Array(items) = value else {
        return Err(BuildError::new(format!(
            "`{op}` takes an array of queries, got {}",
            json_type(value)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| query(item, limits).map_err(|e| e.in_index(i)))
        .collect()
}

fn operator_without_field(op: &str) -> BuildError {
    if is_value_operator(op) {
        BuildError::new(format!(
            "`{op}` compares a field: write {{\"FIELD\": {{\"{op}\": …}}}}"
        ))
    } else {
        unknown_operator(op)
    }
}

fn unknown_operator(op: &str) -> BuildError {
    BuildError::new(format!(
        "unknown operator `{op}`; the operators are {OPERATORS}"
    ))
}

fn is_value_operator(op: &str) -> bool {
    matches!(
        op,
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$in" | "$nin" | "$regex"
    )
}

/// A field name: `metadata.KEY` (the whole rest is the key), `params.PATH` (split on dots)
/// or `url.pathname`.
fn field(name: &str) -> Result<Field, BuildError> {
    if let Some(key) = name.strip_prefix("metadata.") {
        if key.is_empty() {
            return Err(BuildError::new(
                "`metadata.` needs a key, e.g. `metadata.user_plan`",
            ));
        }
        return Ok(Field::Metadata(key.into()));
    }
    if let Some(path) = name.strip_prefix("params.") {
        let segments: Box<[Box<str>]> = path.split('.').map(Box::from).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(BuildError::new(format!(
                "`{name}` has an empty segment; write `params.a.b`"
            )));
        }
        return Ok(Field::Params(segments));
    }
    if name == "url.pathname" {
        return Ok(Field::Pathname);
    }
    Err(BuildError::new(format!(
        "unknown field `{name}`; fields are `metadata.KEY`, `params.PATH` and `url.pathname`"
    )))
}

/// The tests on one field: a plain value (equality) or an object of operators (all must hold).
fn tests(field: &Field, value: &Value, limits: &RegexLimits) -> Result<Box<[Test]>, BuildError> {
    match value {
        Value::Object(ops) => operators(field, ops, limits),
        Value::Array(_) => Err(BuildError::new(
            "a plain array is ambiguous: write {\"$in\": […]} for membership or \
             {\"$eq\": […]} for equality",
        )),
        _ => Ok(Box::new([Test::Eq(equality_operand(field, value)?)])),
    }
}

fn operators(
    field: &Field,
    ops: &Map<String, Value>,
    limits: &RegexLimits,
) -> Result<Box<[Test]>, BuildError> {
    if ops.is_empty() {
        return Err(BuildError::new(
            "an empty object tests nothing: give a value or operators such as {\"$eq\": …}",
        ));
    }
    ops.iter()
        .map(|(op, arg)| operator(field, op, arg, limits).map_err(|e| e.in_key(op)))
        .collect()
}

fn operator(
    field: &Field,
    op: &str,
    arg: &Value,
    limits: &RegexLimits,
) -> Result<Test, BuildError> {
    Ok(match op {
        "$eq" => Test::Eq(equality_operand(field, arg)?),
        "$ne" => Test::Ne(equality_operand(field, arg)?),
        "$gt" => Test::Gt(number_operand(op, arg)?),
        "$gte" => Test::Gte(number_operand(op, arg)?),
        "$lt" => Test::Lt(number_operand(op, arg)?),
        "$lte" => Test::Lte(number_operand(op, arg)?),
        "$in" => Test::In(set_operand(field, op, arg)?),
        "$nin" => Test::Nin(set_operand(field, op, arg)?),
        "$regex" => Test::Regex(regex_operand(arg, limits)?),
        "$and" | "$or" => {
            return Err(BuildError::new(format!(
                "`{op}` combines queries: put it in the query, not under a field"
            )));
        }
        _ if op.starts_with('$') => return Err(unknown_operator(op)),
        _ => {
            return Err(BuildError::new(format!(
                "`{op}` is not an operator: an object under a field holds operators \
                 ({OPERATORS}); to compare with an object write {{\"$eq\": {{…}}}}"
            )));
        }
    })
}

/// An operand compared for equality. Metadata values and the path are strings, so anything
/// else could never be equal to them: that is a mistake in the config, said at build time.
fn equality_operand(field: &Field, arg: &Value) -> Result<Value, BuildError> {
    let what = match field {
        Field::Metadata(_) => "metadata values are strings and never equal",
        Field::Pathname => "`url.pathname` is a string and never equals",
        Field::Params(_) => return Ok(arg.clone()),
    };
    match arg {
        Value::String(_) => Ok(arg.clone()),
        Value::Number(_) | Value::Bool(_) => Err(BuildError::new(format!(
            "{what} {}: write \"{arg}\"",
            json_type(arg)
        ))),
        _ => Err(BuildError::new(format!("{what} {}", json_type(arg)))),
    }
}

/// The bound of `$gt` and its family: a number, or a string that reads as one.
fn number_operand(op: &str, arg: &Value) -> Result<f64, BuildError> {
    let number = match arg {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => numeric_str(s),
        _ => None,
    };
    number.ok_or_else(|| {
        BuildError::new(format!(
            "`{op}` takes a number (or a string that reads as one), got {}",
            json_type(arg)
        ))
    })
}

fn set_operand(field: &Field, op: &str, arg: &Value) -> Result<Box<[Value]>, BuildError> {
    let Value::Array(items) = arg else {
        return Err(BuildError::new(format!(
            "`{op}` takes an array, got {}",
            json_type(arg)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| equality_operand(field, item).map_err(|e| e.in_index(i)))
        .collect()
}

fn regex_operand(arg: &Value, limits: &RegexLimits) -> Result<Regex, BuildError> {
    let Value::String(pattern) = arg else {
        return Err(BuildError::new(format!(
            "`$regex` takes a pattern (a string), got {}",
            json_type(arg)
        )));
    };
    regex(pattern, limits)
}

/// Builds a pattern within `limits`: the one place both the JSON and the typed form build
/// their regexes, so the limits and the messages are the same.
pub(super) fn regex(pattern: &str, limits: &RegexLimits) -> Result<Regex, BuildError> {
    // Checked before the parser sees it: the source length bounds the parse, the size limits
    // bound what compiling may allocate (a repetition such as `\w{60}` multiplies a Unicode
    // class into a program of megabytes).
    if pattern.len() > limits.max_len {
        return Err(BuildError::new(format!(
            "a pattern is at most {} bytes, this one is {}",
            limits.max_len,
            pattern.len()
        )));
    }
    RegexBuilder::new(pattern)
        .size_limit(limits.size_limit)
        .dfa_size_limit(limits.dfa_size_limit)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => BuildError::new(format!(
                "the compiled pattern is larger than the limit of {limit} bytes: simplify it \
                 (a counted repetition multiplies the size of what it repeats; `(?-u)\\w` is \
                 far smaller than the Unicode `\\w`)"
            )),
            other => {
                // The regex crate's message spans lines with a caret under the fault; a
                // config error is one line.
                let text = other.to_string();
                let parts: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
                    .collect();
                BuildError::new(format!("invalid regex: {}", parts.join(" ")))
            }
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Condition, RegexLimits};

    fn regex_query(pattern: &str) -> serde_json::Value {
        json!({"$or": [{"params.user": {"$regex": pattern}}]})
    }

    #[test]
    fn a_regex_bomb_is_refused_at_its_path() {
        let err = Condition::compile(&regex_query(r"\w{60}")).unwrap_err();
        assert_eq!(err.path(), r#"$or[0]."params.user".$regex"#);
        assert!(
            err.message()
                .starts_with("the compiled pattern is larger than the limit of 262144 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_pattern_longer_than_the_limit_is_refused_before_it_is_parsed() {
        let long = "a".repeat(RegexLimits::DEFAULT_MAX_LEN + 1);
        let err = Condition::compile(&regex_query(&long)).unwrap_err();
        assert_eq!(
            err.message(),
            "a pattern is at most 1024 bytes, this one is 1025"
        );
        // Not parsed: an invalid pattern that is too long is refused for its length.
        let invalid = format!("({long}");
        let err = Condition::compile(&regex_query(&invalid)).unwrap_err();
        assert!(err.message().starts_with("a pattern is at most"), "{err}");
        let tight = RegexLimits::default().max_len(3);
        assert!(Condition::compile_with(&regex_query("abcd"), &tight).is_err());
        assert!(Condition::compile_with(&regex_query("abc"), &tight).is_ok());
    }

    #[test]
    fn the_defaults_hold_the_patterns_routing_rules_use() {
        for pattern in [
            "^gpt-4o",
            "(?i)^(gpt|claude|gemini)-",
            r"^[a-z0-9._%+-]+@example\.com$",
            r"\d{3}-\d{4}",
            r"\w+",
            r"(?-u)\w{60}",
            "^/v1/(chat/)?completions$",
        ] {
            Condition::compile(&regex_query(pattern)).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        }
    }

    #[test]
    fn limits_are_configurable_both_ways() {
        let roomy = RegexLimits::default().size_limit(64 << 20);
        assert!(Condition::compile_with(&regex_query(r"\w{60}"), &roomy).is_ok());
        let tight = RegexLimits::default().size_limit(1024);
        let err = Condition::compile_with(&regex_query(r"\w+"), &tight).unwrap_err();
        assert!(err.message().contains("limit of 1024 bytes"), "{err}");
        assert_eq!(tight.get_size_limit(), 1024);
        assert_eq!(
            tight.get_dfa_size_limit(),
            RegexLimits::DEFAULT_DFA_SIZE_LIMIT
        );
        assert_eq!(tight.get_max_len(), RegexLimits::DEFAULT_MAX_LEN);
    }

    #[test]
    fn invalid_patterns_still_read_as_before() {
        let err = Condition::compile(&regex_query("(")).unwrap_err();
        assert!(err.message().starts_with("invalid regex: "), "{err}");
        assert!(!err.message().contains('\n'));
    }
}
