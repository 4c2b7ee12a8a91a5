//! JSON Schema → Gemini's schema subset (OpenAPI 3.0's), for tool parameters and
//! `response_format: json_schema`.

use portcullis_core::error::InvalidRequest;
use serde_json::{Map, Value};

fn bad(param: impl Into<String>, message: impl Into<String>) -> InvalidRequest {
    InvalidRequest::param(param, message)
}

/// How deep `$ref`s are followed in a schema before it is taken as recursive (Gemini's schemas
/// cannot refer to themselves).
const MAX_SCHEMA_DEPTH: usize = 32;

/// Keywords of Gemini's schema subset (OpenAPI 3.0's) that are kept as they are.
const KEPT: [&str; 15] = [
    "description",
    "title",
    "nullable",
    "enum",
    "required",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
];

/// A JSON Schema converted to Gemini's OpenAPI subset: `$ref`s into `$defs` / `definitions`
/// inlined, `const` as a one-value `enum`, `oneOf` as `anyOf`, a `null` type or member as
/// `nullable`, string formats other than `enum` and `date-time` left out, and keywords Gemini
/// does not know (`additionalProperties`, `strict`, `$schema`, `$id`, `examples`, …) dropped.
pub(super) fn schema(
    v: &Value,
    root: &Value,
    at: &str,
    depth: usize,
) -> Result<Value, InvalidRequest> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(bad(
            at,
            "the schema is recursive or nested too deep: Gemini's schemas cannot refer to \
             themselves",
        ));
    }
    let Some(object) = v.as_object() else {
        return Err(bad(at, format!("`{at}` must be a JSON Schema object")));
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        let target = reference
            .strip_prefix("#/$defs/")
            .map(|name| ("$defs", name))
            .or_else(|| {
                reference
                    .strip_prefix("#/definitions/")
                    .map(|name| ("definitions", name))
            })
            .and_then(|(defs, name)| root.get(defs).and_then(|d| d.get(name)))
            .ok_or_else(|| {
                bad(
                    at,
                    format!("`$ref` `{reference}` does not point into the schema's `$defs`"),
                )
            })?;
        let mut resolved = schema(target, root, at, depth + 1)?;
        // Keywords beside the `$ref` (a description) win over the target's.
        if let (Some(into), Value::Object(here)) = (
            resolved.as_object_mut(),
            schema_without_ref(object, root, at, depth)?,
        ) {
            into.extend(here);
        }
        return Ok(resolved);
    }
    schema_without_ref(object, root, at, depth)
}

fn schema_without_ref(
    object: &Map<String, Value>,
    root: &Value,
    at: &str,
    depth: usize,
) -> Result<Value, InvalidRequest> {
    let mut out = Map::new();
    let mut nullable = false;
    for (key, value) in object {
        match key.as_str() {
            "type" => match value {
                Value::String(_) => {
                    out.insert("type".into(), value.clone());
                }
                Value::Array(types) => {
                    let mut kept = types.iter().filter(|t| t.as_str() != Some("null"));
                    nullable |= kept.clone().count() < types.len();
                    match (kept.next(), kept.next()) {
                        (Some(one), None) => {
                            out.insert("type".into(), one.clone());
                        }
                        (Some(_), Some(_)) => {
                            let any = types
                                .iter()
                                .filter(|t| t.as_str() != Some("null"))
                                .map(|t| serde_json::json!({ "type": t }))
                                .collect();
                            out.insert("anyOf".into(), Value::Array(any));
                        }
                        _ => {}
                    }
                }
                _ => return Err(bad(at, format!("`{at}.type` must be a string or a list"))),
            },
            "const" => {
                out.insert("enum".into(), Value::Array(vec![value.clone()]));
            }
            "format" => {
                let string = match object.get("type") {
                    Some(Value::String(t)) => t == "string",
                    Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
                    _ => false,
                };
                let kept = !string || matches!(value.as_str(), Some("enum" | "date-time"));
                if kept {
                    out.insert("format".into(), value.clone());
                }
            }
            "properties" => {
                let Some(properties) = value.as_object() else {
                    return Err(bad(at, format!("`{at}.properties` must be an object")));
                };
                let mut converted = Map::new();
                for (name, property) in properties {
                    let path = format!("{at}.properties.{name}");
                    converted.insert(name.clone(), schema(property, root, &path, depth + 1)?);
                }
                out.insert("properties".into(), Value::Object(converted));
            }
            "items" => {
                let path = format!("{at}.items");
                out.insert("items".into(), schema(value, root, &path, depth + 1)?);
            }
            "anyOf" | "oneOf" => {
                let Some(members) = value.as_array() else {
                    return Err(bad(at, format!("`{at}.{key}` must be a list")));
                };
                let mut kept = Vec::with_capacity(members.len());
                for (m, member) in members.iter().enumerate() {
                    if member.get("type").and_then(Value::as_str) == Some("null") {
                        nullable = true;
                        continue;
                    }
                    let path = format!("{at}.{key}[{m}]");
                    kept.push(schema(member, root, &path, depth + 1)?);
                }
                if kept.len() == 1 {
                    // `Optional[X]`: X, nullable.
                    if let Some(Value::Object(only)) = kept.pop() {
                        out.extend(only);
                    }
                } else if !kept.is_empty() {
                    out.insert("anyOf".into(), Value::Array(kept));
                }
            }
            "allOf" => {
                let Some([only]) = value.as_array().map(Vec::as_slice) else {
                    return Err(bad(
                        at,
                        format!("`{at}.allOf` with more than one schema has no Gemini equivalent"),
                    ));
                };
                let path = format!("{at}.allOf[0]");
                if let Value::Object(only) = schema(only, root, &path, depth + 1)? {
                    out.extend(only);
                }
            }
            "default" | "example" => {
                out.insert(key.clone(), value.clone());
            }
            key if KEPT.contains(&key) => {
                out.insert(key.to_owned(), value.clone());
            }
            // additionalProperties, strict, $schema, $id, $defs, definitions, examples,
            // exclusiveMinimum, …: not in Gemini's subset, which refuses unknown keywords.
            _ => {}
        }
    }
    if nullable {
        out.insert("nullable".into(), Value::Bool(true));
    }
    // Gemini reads an `enum` only on a string schema (a `const` has no type of its own).
    let strings = out
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|values| values.iter().all(Value::is_string));
    if strings && !out.contains_key("type") && !out.contains_key("anyOf") {
        out.insert("type".into(), Value::from("string"));
    }
    Ok(Value::Object(out))
}
