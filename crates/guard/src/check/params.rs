//! Reading a check's `parameters`, with errors that name the parameter.

use portcullis_core::BuildError;
use serde_json::{Map, Value};

/// A check's parameters (an object; `null` or absent reads as empty).
pub(crate) struct Params<'a> {
    map: Option<&'a Map<String, Value>>,
}

fn err(key: &str, message: impl Into<String>) -> BuildError {
    BuildError::new(message).in_key(key)
}

impl<'a> Params<'a> {
    pub(crate) fn new(value: &'a Value) -> Result<Self, BuildError> {
        match value {
            Value::Object(map) => Ok(Self { map: Some(map) }),
            Value::Null => Ok(Self { map: None }),
            _ => Err(BuildError::new("parameters must be an object")),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, BuildError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(err(key, "must be a boolean")),
        }
    }

    pub(crate) fn not(&self) -> Result<bool, BuildError> {
        self.bool("not", false)
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, BuildError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(err(key, "must be a string")),
        }
    }

    pub(crate) fn required_str(&self, key: &str) -> Result<&'a str, BuildError> {
        match self.str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(err(key, "is required (a non-empty string)")),
        }
    }

    /// A number bound: absent takes `default` (the manifest's default, which Portkey's
    /// handlers do not apply: a missing bound there is an error that passes).
    pub(crate) fn number(&self, key: &str, default: f64) -> Result<f64, BuildError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Number(n)) => n.as_f64().ok_or_else(|| err(key, "must be a number")),
            Some(_) => Err(err(key, "must be a number")),
        }
    }

    pub(crate) fn integer(&self, key: &str, default: u64) -> Result<u64, BuildError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| err(key, "must be a non-negative integer")),
            Some(_) => Err(err(key, "must be a non-negative integer")),
        }
    }

    /// An array of strings, or (when `comma` is set) a comma-separated string.
    pub(crate) fn strings(
        &self,
        key: &str,
        comma: bool,
    ) -> Result<Option<Vec<String>>, BuildError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| BuildError::new("must be a string").in_index(i).in_key(key))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Value::String(s)) if comma => Ok(Some(split_commas(s))),
            Some(_) if comma => Err(err(
                key,
                "must be an array of strings or a comma-separated string",
            )),
            Some(_) => Err(err(key, "must be an array of strings")),
        }
    }

    pub(crate) fn required_strings(&self, key: &str) -> Result<Vec<String>, BuildError> {
        match self.strings(key, false)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(err(key, "is required (a non-empty array of strings)")),
        }
    }
}

pub(crate) fn split_commas(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `any`, `all` or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operator {
    Any,
    All,
    None,
}

impl Operator {
    pub(crate) fn parse(params: &Params<'_>, key: &str) -> Result<Self, BuildError> {
        match params.str(key)? {
            Some("any") => Ok(Self::Any),
            Some("all") => Ok(Self::All),
            Some("none") => Ok(Self::None),
            Some(other) => Err(err(
                key,
                format!("must be `any`, `all` or `none`, got `{other}`"),
            )),
            None => Err(err(key, "is required (`any`, `all` or `none`)")),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::All => "all",
            Self::None => "none",
        }
    }

    /// The verdict given how many of `total` items were found.
    pub(crate) fn verdict(self, found: usize, total: usize) -> bool {
        match self {
            Self::Any => found > 0,
            Self::All => found == total,
            Self::None => found == 0,
        }
    }
}
