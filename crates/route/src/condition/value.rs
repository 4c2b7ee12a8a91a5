//! The values a condition sees and how they compare.

use serde_json::{Number, Value};

/// A field's value in a request: text (metadata, the path) or a JSON value (params).
#[derive(Clone, Copy, Debug)]
pub(super) enum Found<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl<'a> Found<'a> {
    /// Strict equality with a JSON operand: same type and same value; numbers by value
    /// (`1 == 1.0`); arrays and objects element by element.
    pub(super) fn equals(self, operand: &Value) -> bool {
        match self {
            Found::Text(text) => operand.as_str() == Some(text),
            Found::Json(value) => json_eq(value, operand),
        }
    }

    /// The value as a number: a JSON number, or a string that reads as one.
    pub(super) fn number(self) -> Option<f64> {
        match self {
            Found::Text(text) => numeric_str(text),
            Found::Json(Value::Number(n)) => n.as_f64(),
            Found::Json(Value::String(s)) => numeric_str(s),
            Found::Json(_) => None,
        }
    }

    /// The value as text, when it is a string.
    pub(super) fn text(self) -> Option<&'a str> {
        match self {
            Found::Text(text) => Some(text),
            Found::Json(value) => value.as_str(),
        }
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => number_eq(a, b),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| json_eq(a, b)))
        }
        _ => false,
    }
}

/// Numbers by value: integers exactly, anything else as `f64` (so `1 == 1.0`).
fn number_eq(a: &Number, b: &Number) -> bool {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return a == b;
    }
    a.as_f64() == b.as_f64()
}

/// A string that reads as a finite decimal number once trimmed (`"3"`, `"-2.5"`, `"1e3"`);
/// `"3abc"`, `""`, `"NaN"` and `"inf"` do not.
pub(super) fn numeric_str(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The JSON type of a value, for messages.
pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        assert!(Found::Json(&json!(1)).equals(&json!(1.0)));
        assert!(Found::Json(&json!(-1)).equals(&json!(-1)));
        assert!(Found::Json(&json!(u64::MAX)).equals(&json!(u64::MAX)));
        assert!(!Found::Json(&json!(u64::MAX)).equals(&json!(u64::MAX - 1)));
        assert!(!Found::Json(&json!(1)).equals(&json!("1")));
    }

    #[test]
    fn containers_compare_deeply_and_ignore_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[1,{"c":null}]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":[1.0,{"c":null}],"a":1}"#).unwrap();
        assert!(Found::Json(&a).equals(&b));
        assert!(!Found::Json(&a).equals(&json!({"a": 1})));
        assert!(!Found::Json(&json!([1, 2])).equals(&json!([2, 1])));
        assert!(!Found::Json(&json!({"a": 1})).equals(&json!({"b": 1})));
    }

    #[test]
    fn numeric_strings() {
        assert_eq!(numeric_str("3"), Some(3.0));
        assert_eq!(numeric_str(" -2.5 "), Some(-2.5));
        assert_eq!(numeric_str("1e3"), Some(1000.0));
        for s in [
            "",
            "3abc",
            "NaN",
            "inf",
            "-infinity",
            "0x10",
            "1_000",
            "three",
        ] {
            assert_eq!(numeric_str(s), None, "{s:?}");
        }
    }
}
