//! A small JSON Schema validator: the subset of draft 2020-12 that output checks use.
//!
//! Supported keywords: `type` (a name or a list), `enum`, `const`, `properties`,
//! `required`, `additionalProperties` (a boolean or a schema), `minProperties`,
//! `maxProperties`, `items` (one schema for every item), `prefixItems`, `minItems`,
//! `maxItems`, `uniqueItems`, `minLength`, `maxLength` (in characters), `pattern`,
//! `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, `allOf`,
//! `anyOf`, `oneOf`, `not`, and the booleans `true` / `false` as schemas. Annotations are
//! ignored: `$schema`, `$id`, `title`, `description`, `default`, `examples`, `format` (an
//! annotation in 2020-12), `$comment`, `deprecated`, `readOnly`, `writeOnly`. Any other
//! keyword (`$ref`, `patternProperties`, `if`, …) is refused when the schema is loaded,
//! naming its path, rather than silently not checked.

use portcullis_core::BuildError;
use serde_json::Value;

use crate::regex::{self, Pattern};

/// A compiled schema.
#[derive(Debug)]
pub(crate) enum Schema {
    Bool(bool),
    Object(Box<Rules>),
}

#[derive(Debug, Default)]
pub(crate) struct Rules {
    types: Option<Vec<String>>,
    enum_: Option<Vec<Value>>,
    const_: Option<Value>,
    properties: Vec<(String, Schema)>,
    required: Vec<String>,
    additional: Option<Schema>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    items: Option<Schema>,
    prefix_items: Vec<Schema>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<Pattern>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,
    all_of: Vec<Schema>,
    any_of: Vec<Schema>,
    one_of: Vec<Schema>,
    not: Option<Schema>,
}

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "default",
    "examples",
    "format",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
];

fn num(v: &Value, key: &str) -> Result<f64, BuildError> {
    v.as_f64()
        .ok_or_else(|| BuildError::new("must be a number").in_key(key))
}

fn count(v: &Value, key: &str) -> Result<u64, BuildError> {
    v.as_u64()
        .ok_or_else(|| BuildError::new("must be a non-negative integer").in_key(key))
}

fn list(v: &Value, key: &str) -> Result<Vec<Schema>, BuildError> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| BuildError::new("must be a non-empty array of schemas").in_key(key))?;
    items
        .iter()
        .enumerate()
        .map(|(i, s)| Schema::compile(s).map_err(|e| e.in_index(i).in_key(key)))
        .collect()
}

impl Schema {
    /// Compiles `value`; errors name the keyword's path inside the schema.
    pub(crate) fn compile(value: &Value) -> Result<Self, BuildError> {
        let map = match value {
            Value::Bool(b) => return Ok(Schema::Bool(*b)),
            Value::Object(map) => map,
            _ => return Err(BuildError::new("a schema must be an object or a boolean")),
        };
        let mut r = Rules::default();
        for (key, v) in map {
            let k = key.as_str();
            match k {
                "type" => {
                    let names = match v {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(a) => a
                            .iter()
                            .map(|t| t.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| BuildError::new("must name types").in_key(k))?,
                        _ => return Err(BuildError::new("must be a type name or a list").in_key(k)),
                    };
                    for n in &names {
                        if ![
                            "null", "boolean", "object", "array", "number", "integer", "string",
                        ]
                        .contains(&n.as_str())
                        {
                            return Err(BuildError::new(format!("unknown type `{n}`")).in_key(k));
                        }
                    }
                    r.types = Some(names);
                }
                "enum" => {
                    r.enum_ = Some(
                        v.as_array()
                            .cloned()
                            .ok_or_else(|| BuildError::new("must be an array").in_key(k))?,
                    );
                }
                "const" => r.const_ = Some(v.clone()),
                "properties" => {
                    let props = v
                        .as_object()
                        .ok_or_else(|| BuildError::new("must be an object").in_key(k))?;
                    for (name, s) in props {
                        let s = Schema::compile(s).map_err(|e| e.in_key(name).in_key(k))?;
                        r.properties.push((name.clone(), s));
                    }
                }
                "required" => {
                    r.required = v
                        .as_array()
                        .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
                        .ok_or_else(|| BuildError::new("must be an array of strings").in_key(k))?;
                }
                "additionalProperties" => {
                    r.additional = Some(Schema::compile(v).map_err(|e| e.in_key(k))?);
                }
                "minProperties" => r.min_properties = Some(count(v, k)?),
                "maxProperties" => r.max_properties = Some(count(v, k)?),
                "items" => r.items = Some(Schema::compile(v).map_err(|e| e.in_key(k))?),
                "prefixItems" => r.prefix_items = list(v, k)?,
                "minItems" => r.min_items = Some(count(v, k)?),
                "maxItems" => r.max_items = Some(count(v, k)?),
                "uniqueItems" => {
                    r.unique_items = v
                        .as_bool()
                        .ok_or_else(|| BuildError::new("must be a boolean").in_key(k))?;
                }
                "minLength" => r.min_length = Some(count(v, k)?),
                "maxLength" => r.max_length = Some(count(v, k)?),
                "pattern" => {
                    let p = v
                        .as_str()
                        .ok_or_else(|| BuildError::new("must be a string").in_key(k))?;
                    r.pattern = Some(regex::compile(p).map_err(|e| BuildError::new(e).in_key(k))?);
                }
                "minimum" => r.minimum = Some(num(v, k)?),
                "maximum" => r.maximum = Some(num(v, k)?),
                "exclusiveMinimum" => r.exclusive_minimum = Some(num(v, k)?),
                "exclusiveMaximum" => r.exclusive_maximum = Some(num(v, k)?),
                "multipleOf" => {
                    let m = num(v, k)?;
                    if m <= 0.0 {
                        return Err(BuildError::new("must be > 0").in_key(k));
                    }
                    r.multiple_of = Some(m);
                }
                "allOf" => r.all_of = list(v, k)?,
                "anyOf" => r.any_of = list(v, k)?,
                "oneOf" => r.one_of = list(v, k)?,
                "not" => r.not = Some(Schema::compile(v).map_err(|e| e.in_key(k))?),
                _ if ANNOTATIONS.contains(&k) => {}
                _ => {
                    return Err(BuildError::new(
                        "this JSON Schema keyword is not supported (see the crate docs for the subset)",
                    )
                    .in_key(k));
                }
            }
        }
        Ok(Schema::Object(Box::new(r)))
    }

    /// Validates `value`, pushing an error per violation (with its JSON pointer).
    pub(crate) fn validate(&self, value: &Value, at: &str, errors: &mut Vec<String>) {
        let r = match self {
            Schema::Bool(true) => return,
            Schema::Bool(false) => return errors.push(format!("{at}: no value is allowed here")),
            Schema::Object(r) => r,
        };
        let mut fail =
            |m: String| errors.push(format!("{}: {m}", if at.is_empty() { "/" } else { at }));
        if let Some(types) = &r.types
            && !types.iter().any(|t| type_matches(t, value))
        {
            fail(format!("expected {}", types.join(" or ")));
            return;
        }
        if let Some(e) = &r.enum_
            && !e.iter().any(|x| json_eq(x, value))
        {
            fail("is not one of the enum values".into());
        }
        if let Some(c) = &r.const_
            && !json_eq(c, value)
        {
            fail(format!("must be {c}"));
        }
        match value {
            Value::Object(map) => {
                for name in &r.required {
                    if !map.contains_key(name) {
                        fail(format!("missing required property `{name}`"));
                    }
                }
                if r.min_properties.is_some_and(|m| (map.len() as u64) < m) {
                    fail("has too few properties".into());
                }
                if r.max_properties.is_some_and(|m| (map.len() as u64) > m) {
                    fail("has too many properties".into());
                }
                for (k, v) in map {
                    let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    match r.properties.iter().find(|(name, _)| name == k) {
                        Some((_, s)) => s.validate(v, &path, errors),
                        None => {
                            if let Some(a) = &r.additional {
                                a.validate(v, &path, errors);
                            }
                        }
                    }
                }
            }
            Value::Array(items) => {
                if r.min_items.is_some_and(|m| (items.len() as u64) < m) {
                    fail("has too few items".into());
                }
                if r.max_items.is_some_and(|m| (items.len() as u64) > m) {
                    fail("has too many items".into());
                }
                if r.unique_items
                    && items
                        .iter()
                        .enumerate()
                        .any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b)))
                {
                    fail("has duplicate items".into());
                }
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{at}/{i}");
                    match r.prefix_items.get(i) {
                        Some(s) => s.validate(item, &path, errors),
                        None => {
                            if let Some(s) = &r.items {
                                s.validate(item, &path, errors);
                            }
                        }
                    }
                }
            }
            Value::String(s) => {
                let len = s.chars().count() as u64;
                if r.min_length.is_some_and(|m| len < m) {
                    fail("is too short".into());
                }
                if r.max_length.is_some_and(|m| len > m) {
                    fail("is too long".into());
                }
                if let Some(p) = &r.pattern
                    && !p.regex.is_match(s).unwrap_or(false)
                {
                    fail(format!("does not match `{}`", p.source));
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if r.minimum.is_some_and(|m| x < m)
                    || r.maximum.is_some_and(|m| x > m)
                    || r.exclusive_minimum.is_some_and(|m| x <= m)
                    || r.exclusive_maximum.is_some_and(|m| x >= m)
                {
                    fail(format!("{x} is out of range"));
                }
                if let Some(m) = r.multiple_of {
                    let q = x / m;
                    if (q - q.round()).abs() > 1e-9 {
                        fail(format!("is not a multiple of {m}"));
                    }
                }
            }
            _ => {}
        }
        for s in &r.all_of {
            s.validate(value, at, errors);
        }
        if !r.any_of.is_empty() && !r.any_of.iter().any(|s| s.is_valid(value)) {
            errors.push(format!("{at}: matches none of anyOf"));
        }
        if !r.one_of.is_empty() && r.one_of.iter().filter(|s| s.is_valid(value)).count() != 1 {
            errors.push(format!("{at}: must match exactly one of oneOf"));
        }
        if let Some(s) = &r.not
            && s.is_valid(value)
        {
            errors.push(format!("{at}: must not match the `not` schema"));
        }
    }

    pub(crate) fn is_valid(&self, value: &Value) -> bool {
        let mut errors = Vec::new();
        self.validate(value, "", &mut errors);
        errors.is_empty()
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

/// JSON equality where `1` equals `1.0`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_the_common_keywords() {
        let s = Schema::compile(&json!({
            "type": "object",
            "required": ["name", "age"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "pattern": "^[A-Z]"},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": true}
            },
            "additionalProperties": false
        }))
        .unwrap();
        assert!(s.is_valid(&json!({"name": "Ann", "age": 3, "tags": ["a"]})));
        let mut errors = Vec::new();
        s.validate(
            &json!({"name": "ann", "age": 1.5, "tags": ["a", "a", "c"], "x": 1}),
            "",
            &mut errors,
        );
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("/x:")));
    }

    #[test]
    fn unknown_keywords_are_refused_with_their_path() {
        let e = Schema::compile(&json!({"properties": {"a": {"$ref": "#/x"}}})).unwrap_err();
        assert_eq!(e.path(), "properties.a.$ref");
        assert!(Schema::compile(&json!({"type": "float"})).is_err());
    }
}
