//! Reading LiteLLM's sections: `os.environ/NAME` resolved where a value is read, every key
//! accounted for, and what is not understood reported with its path.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{Diagnostic, Severity};
use crate::config::ConfigError;

pub(super) type Result<T> = std::result::Result<T, ConfigError>;

/// LiteLLM's reference to an environment variable.
const ENV_PREFIX: &str = "os.environ/";

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// One import: the environment and the diagnostics so far.
pub(super) struct Ctx<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `environment_variables` of the file: LiteLLM exports them before reading the rest.
    file_env: Map<String, Value>,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            file_env: Map::new(),
            diagnostics: Vec::new(),
        }
    }

    pub(super) fn set_file_env(&mut self, vars: Map<String, Value>) {
        self.file_env = vars;
    }

    pub(super) fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            path: path.into(),
            message: message.into(),
            severity: Severity::Warning,
        });
    }

    /// A variable: the file's `environment_variables` first, as LiteLLM exports them.
    pub(super) fn var(&self, name: &str) -> Option<String> {
        match self.file_env.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => (self.env)(name),
            Some(other) => Some(other.to_string()),
        }
    }

    /// Whether `name` comes from the process (so the printed config may refer to it).
    fn is_process_var(&self, name: &str) -> bool {
        !self.file_env.contains_key(name)
    }

    /// `v` with every `os.environ/NAME` string replaced by the variable's value.
    pub(super) fn resolve(&self, v: &Value, path: &str) -> Result<Value> {
        Ok(match v {
            Value::String(s) => match s.strip_prefix(ENV_PREFIX) {
                Some(name) => Value::String(self.required(name, path)?),
                None => v.clone(),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.resolve(item, &index(path, i)))
                    .collect::<Result<_>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, item)| Ok((k.clone(), self.resolve(item, &join(path, k))?)))
                    .collect::<Result<_>>()?,
            ),
            other => other.clone(),
        })
    }

    fn required(&self, name: &str, path: &str) -> Result<String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::new(
                path,
                format!("`{ENV_PREFIX}{name}` does not name an environment variable"),
            ));
        }
        // Never the value in a message: only its name.
        self.var(name).ok_or_else(|| {
            ConfigError::new(path, format!("environment variable {name} is not set"))
        })
    }

    /// A secret or endpoint for a field the Portcullis config substitutes itself (`api_key`,
    /// `base_url`, gateway keys): `os.environ/NAME` becomes `${NAME}` so the printed config
    /// holds no secret the file did not; the variable must be set now all the same. Returns
    /// the text for the config and the value it stands for.
    pub(super) fn secret(&self, v: &Value, path: &str) -> Result<(String, String)> {
        let Value::String(s) = v else {
            return Err(ConfigError::new(
                path,
                format!("must be a string, got {}", type_name(v)),
            ));
        };
        if let Some(name) = s.strip_prefix(ENV_PREFIX) {
            let value = self.required(name, path)?;
            if self.is_process_var(name) {
                return Ok((format!("${{{name}}}"), value));
            }
            return literal(value, path);
        }
        literal(s.clone(), path)
    }
}

/// A literal for a field the Portcullis config substitutes: `${` would be read as a variable.
fn literal(s: String, path: &str) -> Result<(String, String)> {
    if s.contains("${") {
        return Err(ConfigError::new(
            path,
            "contains `${`, which the Portcullis config reads as a variable: use `os.environ/NAME`",
        ));
    }
    Ok((s.clone(), s))
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// What an unread key of a section is: an error when ignoring it could change an answer, a
/// cost or who may call, else a warning.
#[derive(Clone, Copy)]
pub(super) enum Unknown {
    Error,
    Warning,
}

/// One mapping of the file, read key by key.
pub(super) struct Section<'v> {
    map: Option<&'v Map<String, Value>>,
    pub(super) path: String,
    seen: BTreeSet<&'v str>,
}

impl<'v> Section<'v> {
    /// A mapping at `path`; absent or null reads as empty.
    pub(super) fn new(v: Option<&'v Value>, path: &str) -> Result<Self> {
        let map = match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                return Err(ConfigError::new(
                    path,
                    format!("must be a mapping, got {}", type_name(other)),
                ));
            }
        };
        Ok(Self {
            map,
            path: path.to_owned(),
            seen: BTreeSet::new(),
        })
    }

    pub(super) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value of `key` (null reads as absent) and its path.
    pub(super) fn raw(&mut self, key: &str) -> Option<(&'v Value, String)> {
        let (k, v) = self.map?.get_key_value(key)?;
        self.seen.insert(k.as_str());
        (!v.is_null()).then(|| (v, self.path_of(key)))
    }

    /// The value of `key` with `os.environ/` resolved.
    pub(super) fn value(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Option<(Value, String)>> {
        match self.raw(key) {
            None => Ok(None),
            Some((v, path)) => {
                Ok(Some((ctx.resolve(v, &path)?, path)).filter(|(v, _)| !v.is_null()))
            }
        }
    }

    pub(super) fn str(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Option<(String, String)>> {
        match self.value(ctx, key)? {
            None => Ok(None),
            Some((Value::String(s), path)) => Ok(Some((s, path))),
            Some((v, path)) => Err(ConfigError::new(
                path,
                format!("must be a string, got {}", type_name(&v)),
            )),
        }
    }

    /// A number; a string of one is read too (an `os.environ/` value is always a string).
    pub(super) fn num(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Option<(f64, String)>> {
        match self.value(ctx, key)? {
            None => Ok(None),
            Some((v, path)) => {
                let n = match &v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                match n.filter(|n| n.is_finite() && *n >= 0.0) {
                    Some(n) => Ok(Some((n, path))),
                    None => Err(ConfigError::new(
                        path,
                        format!("must be a number >= 0, got {v}"),
                    )),
                }
            }
        }
    }

    /// A whole number.
    pub(super) fn whole(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Option<(u64, String)>> {
        match self.num(ctx, key)? {
            None => Ok(None),
            Some((n, path)) if n.fract() == 0.0 && n <= 9e15 => Ok(Some((n as u64, path))),
            Some((n, path)) => Err(ConfigError::new(
                path,
                format!("must be a whole number, got {n}"),
            )),
        }
    }

    /// A boolean; `"true"` and `"false"` (any case, as LiteLLM reads them) too.
    pub(super) fn bool(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Option<(bool, String)>> {
        match self.value(ctx, key)? {
            None => Ok(None),
            Some((Value::Bool(b), path)) => Ok(Some((b, path))),
            Some((Value::String(s), path)) if s.eq_ignore_ascii_case("true") => {
                Ok(Some((true, path)))
            }
            Some((Value::String(s), path)) if s.eq_ignore_ascii_case("false") => {
                Ok(Some((false, path)))
            }
            Some((v, path)) => Err(ConfigError::new(
                path,
                format!("must be true or false, got {v}"),
            )),
        }
    }

    /// Marks `key` read and, when present, reports it with `message` at `severity`.
    pub(super) fn report(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &str,
        severity: Unknown,
        message: &str,
    ) -> Result<()> {
        if let Some((_, path)) = self.raw(key) {
            match severity {
                Unknown::Error => return Err(ConfigError::new(path, message)),
                Unknown::Warning => ctx.warn(path, message),
            }
        }
        Ok(())
    }

    /// Every key not read yet, reported at `severity` with `why`.
    pub(super) fn finish(self, ctx: &mut Ctx<'_>, severity: Unknown, why: &str) -> Result<()> {
        let Some(map) = self.map else {
            return Ok(());
        };
        for key in map.keys() {
            if self.seen.contains(key.as_str()) {
                continue;
            }
            let path = join(&self.path, key);
            let message = format!("not understood by the importer: {why}");
            match severity {
                Unknown::Error => return Err(ConfigError::new(path, message)),
                Unknown::Warning => ctx.warn(path, message),
            }
        }
        Ok(())
    }
}
