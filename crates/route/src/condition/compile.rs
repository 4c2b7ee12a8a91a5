//! From Portkey's JSON query to the compiled tree: every check that can be made before a
//! request arrives is made here.

use regex::Regex;
use serde_json::{Map, Value};

use super::value::{json_type, numeric_str};
use super::{Clause, Field, Query, Test};
use crate::BuildError;

/// The operators of the language, for messages.
const OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $regex, $and, $or";

pub(super) fn query(value: &Value) -> Result<Query, BuildError> {
    let Value::Object(object) = value else {
        return Err(BuildError::new(format!(
            "a query must be an object, got {}",
            json_type(value)
        )));
    };
    let mut clauses = Vec::with_capacity(object.len());
    for (key, value) in object {
        let clause = match key.as_str() {
            "$and" => queries(value, "$and").map(Clause::All),
            "$or" => queries(value, "$or").map(Clause::Any),
            op if op.starts_with('$') => Err(operator_without_field(op)),
            name => field(name).and_then(|field| {
                let tests = tests(&field, value)?;
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
fn queries(value: &Value, op: &str) -> Result<Box<[Query]>, BuildError> {
    let Value::Array(items) = value else {
        return Err(BuildError::new(format!(
            "`{op}` takes an array of queries, got {}",
            json_type(value)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| query(item).map_err(|e| e.in_index(i)))
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
fn tests(field: &Field, value: &Value) -> Result<Box<[Test]>, BuildError> {
    match value {
        Value::Object(ops) => operators(field, ops),
        Value::Array(_) => Err(BuildError::new(
            "a plain array is ambiguous: write {\"$in\": […]} for membership or \
             {\"$eq\": […]} for equality",
        )),
        _ => Ok(Box::new([Test::Eq(equality_operand(field, value)?)])),
    }
}

fn operators(field: &Field, ops: &Map<String, Value>) -> Result<Box<[Test]>, BuildError> {
    if ops.is_empty() {
        return Err(BuildError::new(
            "an empty object tests nothing: give a value or operators such as {\"$eq\": …}",
        ));
    }
    ops.iter()
        .map(|(op, arg)| operator(field, op, arg).map_err(|e| e.in_key(op)))
        .collect()
}

fn operator(field: &Field, op: &str, arg: &Value) -> Result<Test, BuildError> {
    Ok(match op {
        "$eq" => Test::Eq(equality_operand(field, arg)?),
        "$ne" => Test::Ne(equality_operand(field, arg)?),
        "$gt" => Test::Gt(number_operand(op, arg)?),
        "$gte" => Test::Gte(number_operand(op, arg)?),
        "$lt" => Test::Lt(number_operand(op, arg)?),
        "$lte" => Test::Lte(number_operand(op, arg)?),
        "$in" => Test::In(set_operand(field, op, arg)?),
        "$nin" => Test::Nin(set_operand(field, op, arg)?),
        "$regex" => Test::Regex(regex_operand(arg)?),
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

fn regex_operand(arg: &Value) -> Result<Regex, BuildError> {
    let Value::String(pattern) = arg else {
        return Err(BuildError::new(format!(
            "`$regex` takes a pattern (a string), got {}",
            json_type(arg)
        )));
    };
    Regex::new(pattern).map_err(|e| {
        // The regex crate's message spans lines with a caret under the fault; a config error
        // is one line.
        let text = e.to_string();
        let parts: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
            .collect();
        BuildError::new(format!("invalid regex: {}", parts.join(" ")))
    })
}
