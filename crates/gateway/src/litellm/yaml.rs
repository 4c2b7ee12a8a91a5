//! YAML (or JSON, a subset of YAML) text to a JSON value, as LiteLLM's PyYAML reads it where
//! the two differ in ways a config notices: `<<` merge keys are applied, and mapping keys
//! that are numbers or booleans become strings.

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::config::ConfigError;

/// The most nodes a document may expand to: aliases are copied where they are used, so a
/// small file of nested aliases could otherwise grow without bound.
const MAX_NODES: usize = 1_000_000;

/// Reads the first document of `text`.
pub(super) fn parse(text: &str) -> Result<Value, ConfigError> {
    // JSON first: it is the common case for generated files and its errors are clearer.
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(value);
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        let at = e.marker();
        ConfigError::new(
            "",
            format!(
                "not valid YAML (line {}, column {}): {}",
                at.line(),
                at.col() + 1,
                e.info()
            ),
        )
    })?;
    let mut nodes = 0;
    match docs.into_iter().next() {
        None => Ok(Value::Object(Map::new())),
        Some(doc) => convert(doc, "", &mut nodes),
    }
}

fn convert(y: Yaml, path: &str, nodes: &mut usize) -> Result<Value, ConfigError> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(ConfigError::new(
            path,
            format!("the document expands to more than {MAX_NODES} values (aliases?)"),
        ));
    }
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(n) => Value::Number(n.into()),
        Yaml::Real(text) => real(&text)
            .ok_or_else(|| ConfigError::new(path, format!("`{text}` is not a finite number")))?,
        Yaml::String(s) => Value::String(s),
        Yaml::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{path}[{i}]"), nodes))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(hash) => {
            let mut out = Map::new();
            let mut merged = Vec::new();
            for (k, v) in hash {
                let key = key(k, path)?;
                let at = super::read::join(path, &key);
                if key == "<<" {
                    merged.push(convert(v, &at, nodes)?);
                } else {
                    out.insert(key, convert(v, &at, nodes)?);
                }
            }
            // Merge keys fill in what the mapping does not set itself; the first source wins.
            for source in merged {
                let sources = match source {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                for source in sources {
                    let Value::Object(map) = source else {
                        return Err(ConfigError::new(
                            super::read::join(path, "<<"),
                            "a merge key takes a mapping or a list of mappings",
                        ));
                    };
                    for (k, v) in map {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            Value::Object(out)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(ConfigError::new(path, "an alias to an unknown anchor"));
        }
    })
}

fn real(text: &str) -> Option<Value> {
    let n: f64 = text.parse().ok()?;
    Number::from_f64(n).map(Value::Number)
}

/// A mapping key as a string: PyYAML keeps `1: x` as an integer key, which LiteLLM then
/// compares with strings; a string is what every key of the config is read as.
fn key(k: Yaml, path: &str) -> Result<String, ConfigError> {
    match k {
        Yaml::String(s) => Ok(s),
        Yaml::Integer(n) => Ok(n.to_string()),
        Yaml::Real(s) => Ok(s),
        Yaml::Boolean(b) => Ok(b.to_string()),
        Yaml::Null => Ok("null".to_owned()),
        _ => Err(ConfigError::new(
            path,
            "a mapping key must be a string, number or boolean",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_yaml_with_merge_keys_and_aliases() {
        let v = parse(
            "base: &base\n  api_key: k\n  rpm: 10\nmodel_list:\n  - model_name: a\n    litellm_params:\n      <<: *base\n      rpm: 20\n      weight: 0.5\n",
        )
        .unwrap();
        assert_eq!(
            v["model_list"][0]["litellm_params"],
            json!({"api_key": "k", "rpm": 20, "weight": 0.5})
        );
    }

    #[test]
    fn reads_json_and_reports_yaml_errors_with_a_line() {
        assert_eq!(
            parse(r#"{"a": [1, true]}"#).unwrap(),
            json!({"a": [1, true]})
        );
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err().to_string();
        assert!(err.contains("not valid YAML (line"), "{err}");
        assert_eq!(parse("").unwrap(), json!({}));
        assert_eq!(
            parse("1: x\ntrue: y").unwrap(),
            json!({"1": "x", "true": "y"})
        );
    }
}
