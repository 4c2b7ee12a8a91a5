//! A strict reader over JSON objects that knows where it is, so every error names its path.

use std::collections::BTreeSet;
use std::fmt;

use portcullis_core::BuildError;
use serde_json::{Map, Value};

/// A config error: where, and what is wrong. It is core's [`BuildError`] with the full path
/// from the config's root, so that a layer builder's error reads as the reader's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(BuildError);

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self(BuildError::at(path, message))
    }

    /// A builder's error, placed below `prefix`, the path of the node it built
    /// (`config.targets[1]` and `targets[0].weight` make `config.targets[1].targets[0].weight`).
    pub fn from_build(prefix: &str, err: BuildError) -> Self {
        Self(err.prefixed(prefix))
    }

    /// Where, e.g. `config.targets[1].weight`.
    pub fn path(&self) -> &str {
        self.0.path()
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        self.0.message()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) type Result<T> = std::result::Result<T, ConfigError>;

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// snake_case to camelCase: `override_params` -> `overrideParams`.
fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads one object: each key once, in snake_case or camelCase; `finish` rejects the rest.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    seen: BTreeSet<&'a str>,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(value: &'a Value, path: &str) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: path.to_owned(),
                seen: BTreeSet::new(),
            }),
            other => Err(ConfigError::new(
                path,
                format!("must be an object, got {}", type_name(other)),
            )),
        }
    }

    /// The value of `key` (or its camelCase spelling) and its path. Both spellings at once is
    /// an error.
    pub(crate) fn get(&mut self, key: &str) -> Result<Option<(&'a Value, String)>> {
        let camel = camel(key);
        let snake_hit = self.map.get_key_value(key);
        let camel_hit = if camel != key {
            self.map.get_key_value(camel.as_str())
        } else {
            None
        };
        match (snake_hit, camel_hit) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                join(&self.path, key),
                format!("given twice, as `{key}` and `{camel}`"),
            )),
            (Some((k, v)), None) | (None, Some((k, v))) => {
                self.seen.insert(k.as_str());
                Ok(Some((v, join(&self.path, key))))
            }
            (None, None) => Ok(None),
        }
    }

    pub(crate) fn str(&mut self, key: &str) -> Result<Option<(&'a str, String)>> {
        match self.get(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((Value::String(s), path)) => Ok(Some((s.as_str(), path))),
            Some((other, path)) => Err(ConfigError::new(
                path,
                format!("must be a string, got {}", type_name(other)),
            )),
        }
    }

    pub(crate) fn u64(&mut self, key: &str) -> Result<Option<(u64, String)>> {
        match self.get(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((v, path)) => match v.as_u64() {
                Some(n) => Ok(Some((n, path))),
                None => Err(ConfigError::new(
                    path,
                    format!("must be a whole number >= 0, got {v}"),
                )),
            },
        }
    }

    pub(crate) fn f64(&mut self, key: &str) -> Result<Option<(f64, String)>> {
        match self.get(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((v, path)) => match v.as_f64() {
                Some(n) => Ok(Some((n, path))),
                None => Err(ConfigError::new(
                    path,
                    format!("must be a number, got {}", type_name(v)),
                )),
            },
        }
    }

    pub(crate) fn bool(&mut self, key: &str) -> Result<Option<(bool, String)>> {
        match self.get(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((Value::Bool(b), path)) => Ok(Some((*b, path))),
            Some((other, path)) => Err(ConfigError::new(
                path,
                format!("must be true or false, got {}", type_name(other)),
            )),
        }
    }

    pub(crate) fn object(&mut self, key: &str) -> Result<Option<(&'a Map<String, Value>, String)>> {
        match self.get(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((Value::Object(m), path)) => Ok(Some((m, path))),
            Some((other, path)) => Err(ConfigError::new(
                path,
                format!("must be an object, got {}", type_name(other)),
            )),
        }
    }

    pub(crate) fn array(&mut self, key: &str) -> Result<Option<(&'a Vec<Value>, String)>> {
        match self.get(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((Value::Array(a), path)) => Ok(Some((a, path))),
            Some((other, path)) => Err(ConfigError::new(
                path,
                format!("must be an array, got {}", type_name(other)),
            )),
        }
    }

    /// Marks `key` as known without reading it (its meaning is checked elsewhere).
    pub(crate) fn has(&mut self, key: &str) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Fails on the first key that was never read.
    pub(crate) fn finish(self, hint: &str) -> Result<()> {
        for key in self.map.keys() {
            if !self.seen.contains(key.as_str()) {
                return Err(ConfigError::new(
                    join(&self.path, key),
                    format!("unknown key{hint}"),
                ));
            }
        }
        Ok(())
    }
}

/// A list of HTTP status codes.
pub(crate) fn status_codes(value: &[Value], path: &str) -> Result<Vec<u16>> {
    value
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_u64() {
            Some(code @ 100..=599) => Ok(code as u16),
            _ => Err(ConfigError::new(
                index(path, i),
                format!("must be an HTTP status code (100 to 599), got {v}"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_case_spellings() {
        assert_eq!(camel("override_params"), "overrideParams");
        assert_eq!(camel("use_retry_after_header"), "useRetryAfterHeader");
        assert_eq!(camel("name"), "name");
    }

    #[test]
    fn reads_either_spelling_once_and_rejects_the_rest() {
        let v = json!({"overrideParams": {"a": 1}, "extra": 1});
        let mut obj = Obj::new(&v, "config").unwrap();
        let (_, path) = obj.object("override_params").unwrap().unwrap();
        assert_eq!(path, "config.override_params");
        let err = obj.finish("").unwrap_err();
        assert_eq!(err.to_string(), "config.extra: unknown key");

        let v = json!({"override_params": {}, "overrideParams": {}});
        let mut obj = Obj::new(&v, "c").unwrap();
        assert!(
            obj.object("override_params")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn type_errors_name_the_path() {
        let v = json!({"weight": "heavy", "attempts": -1});
        let mut obj = Obj::new(&v, "t").unwrap();
        assert_eq!(
            obj.f64("weight").unwrap_err().to_string(),
            "t.weight: must be a number, got a string"
        );
        assert!(
            obj.u64("attempts")
                .unwrap_err()
                .to_string()
                .starts_with("t.attempts: must be a whole number")
        );
    }
}
