//! A strict reader over JSON objects that knows where it is, so every error names its path.
//!
//! Every per-key reader of the config lives here, on [`Obj`]: a section's parser is a list of
//! `obj.kind_of_value("key", ..)?` calls and the checks that tie keys together, and the
//! messages for a wrong type or a value out of range are written once.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

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

/// Resolves `${VAR}` references: the process environment, or a test's own.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

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

/// Reads each item of a list with `read`; a refused item is an error at its index.
pub(crate) fn items<T>(
    values: &[Value],
    path: &str,
    read: impl Fn(&Value) -> std::result::Result<T, String>,
) -> Result<Vec<T>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| read(v).map_err(|message| ConfigError::new(index(path, i), message)))
        .collect()
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

    /// The path of `key` in this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
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
                self.path_of(key),
                format!("given twice, as `{key}` and `{camel}`"),
            )),
            (Some((k, v)), None) | (None, Some((k, v))) => {
                self.seen.insert(k.as_str());
                Ok(Some((v, self.path_of(key))))
            }
            (None, None) => Ok(None),
        }
    }

    /// The value of `key` unless absent or null, as `pick` takes it; `expected` names the
    /// type `pick` wants, for the error when it takes nothing.
    fn typed<T>(
        &mut self,
        key: &str,
        expected: &str,
        pick: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<(T, String)>> {
        match self.get(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((v, path)) => match pick(v) {
                Some(t) => Ok(Some((t, path))),
                None => Err(ConfigError::new(
                    path,
                    format!("must be {expected}, got {}", type_name(v)),
                )),
            },
        }
    }

    pub(crate) fn str(&mut self, key: &str) -> Result<Option<(&'a str, String)>> {
        self.typed(key, "a string", Value::as_str)
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
        self.typed(key, "a number", Value::as_f64)
    }

    pub(crate) fn bool(&mut self, key: &str) -> Result<Option<(bool, String)>> {
        self.typed(key, "true or false", Value::as_bool)
    }

    pub(crate) fn object(&mut self, key: &str) -> Result<Option<(&'a Map<String, Value>, String)>> {
        self.typed(key, "an object", Value::as_object)
    }

    pub(crate) fn array(&mut self, key: &str) -> Result<Option<(&'a Vec<Value>, String)>> {
        self.typed(key, "an array", Value::as_array)
    }

    /// A whole number in `allowed`; `why` says what is wrong with another.
    pub(crate) fn u64_in(
        &mut self,
        key: &str,
        allowed: RangeInclusive<u64>,
        why: impl FnOnce(u64) -> String,
    ) -> Result<Option<u64>> {
        match self.u64(key)? {
            None => Ok(None),
            Some((n, _)) if allowed.contains(&n) => Ok(Some(n)),
            Some((n, path)) => Err(ConfigError::new(path, why(n))),
        }
    }

    /// A whole number in `allowed`, else `must be MIN to MAX, got N`.
    pub(crate) fn range(&mut self, key: &str, allowed: RangeInclusive<u64>) -> Result<Option<u64>> {
        let (min, max) = (*allowed.start(), *allowed.end());
        self.u64_in(key, allowed, |n| format!("must be {min} to {max}, got {n}"))
    }

    /// A duration in milliseconds, more than zero.
    pub(crate) fn positive_ms(&mut self, key: &str) -> Result<Option<Duration>> {
        let ms = self.u64_in(key, 1..=u64::MAX, |_| "must be > 0 (milliseconds)".into())?;
        Ok(ms.map(Duration::from_millis))
    }

    /// One HTTP status.
    pub(crate) fn status(&mut self, key: &str) -> Result<Option<u16>> {
        let code = self.u64_in(key, 100..=599, |n| format!("{n} is not an HTTP status"))?;
        Ok(code.map(|n| n as u16))
    }

    /// A list of HTTP statuses.
    pub(crate) fn status_codes(&mut self, key: &str) -> Result<Option<Vec<u16>>> {
        self.list(key, |v| match v.as_u64() {
            Some(code @ 100..=599) => Ok(code as u16),
            _ => Err(format!("must be an HTTP status code (100 to 599), got {v}")),
        })
    }

    /// A list whose items `read` takes one by one.
    pub(crate) fn list<T>(
        &mut self,
        key: &str,
        read: impl Fn(&Value) -> std::result::Result<T, String>,
    ) -> Result<Option<Vec<T>>> {
        match self.array(key)? {
            None => Ok(None),
            Some((values, path)) => items(values, &path, read).map(Some),
        }
    }

    /// A section of its own, read by `read` unless absent or null.
    pub(crate) fn section<T>(
        &mut self,
        key: &str,
        read: impl FnOnce(&'a Value, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.get(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((v, path)) => read(v, &path).map(Some),
        }
    }

    /// Refuses the first of `keys` that is present, with `message`.
    pub(crate) fn refuse(&mut self, keys: &[&str], message: &str) -> Result<()> {
        for key in keys {
            if self.get(key)?.is_some() {
                return Err(ConfigError::new(self.path_of(key), message));
            }
        }
        Ok(())
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

    #[test]
    fn ranges_and_lists_name_the_value_and_the_item() {
        let v = json!({"n": 11, "ms": 0, "codes": [200, 99], "s": 600});
        let mut obj = Obj::new(&v, "t").unwrap();
        assert_eq!(
            obj.range("n", 0..=10).unwrap_err().to_string(),
            "t.n: must be 0 to 10, got 11"
        );
        assert_eq!(
            obj.positive_ms("ms").unwrap_err().to_string(),
            "t.ms: must be > 0 (milliseconds)"
        );
        assert_eq!(
            obj.status_codes("codes").unwrap_err().to_string(),
            "t.codes[1]: must be an HTTP status code (100 to 599), got 99"
        );
        assert_eq!(
            obj.status("s").unwrap_err().to_string(),
            "t.s: 600 is not an HTTP status"
        );
        assert_eq!(obj.range("absent", 0..=1).unwrap(), None);
    }
}
