//! [`BuildError`]: a condition or router that cannot be built, with the position at fault.

use std::fmt;

/// A condition, or a router, that cannot be built: what is wrong and where.
///
/// The path names the position in the JSON that was given, in the config's own terms, e.g.
/// `conditions[1].query.$or[0]."params.model".$regex` (keys that are not plain words are
/// quoted). [`Condition::compile`](crate::Condition::compile) reports paths relative to the
/// query; the router's builder prefixes them with `conditions[i].query`.
///
/// ```
/// use portcullis_route::Condition;
///
/// let err = Condition::compile(&serde_json::json!({"$or": [{"params.model": {"$regex": "("}}]}))
///     .unwrap_err();
/// assert_eq!(err.path(), r#"$or[0]."params.model".$regex"#);
/// assert!(err.message().starts_with("invalid regex"));
/// assert!(err.to_string().starts_with(r#"$or[0]."params.model".$regex: invalid regex"#));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    path: String,
    message: String,
}

impl BuildError {
    /// An error at the root of what was being built.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            message: message.into(),
        }
    }

    /// The position at fault, e.g. `conditions[0].then`; empty for the root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, placed below `prefix` (a path such as `strategy` or
    /// `targets[2].strategy`), for callers that build routers out of a larger document.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.path = join(prefix, &self.path);
        }
        self
    }

    /// The same error, placed below the object key `key`.
    pub(crate) fn in_key(mut self, key: &str) -> Self {
        self.path = join(&key_segment(key), &self.path);
        self
    }

    /// The same error, placed below the array index `index`.
    pub(crate) fn in_index(mut self, index: usize) -> Self {
        self.path = join(&format!("[{index}]"), &self.path);
        self
    }
}

/// `outer` then `inner`: a dot between them unless `inner` starts with an index.
fn join(outer: &str, inner: &str) -> String {
    if inner.is_empty() {
        outer.to_owned()
    } else if inner.starts_with('[') {
        format!("{outer}{inner}")
    } else {
        format!("{outer}.{inner}")
    }
}

/// A key as written in a path: bare when it is a plain word (`query`, `$or`), quoted otherwise
/// (`"params.model"`), so a dotted field name never reads as two levels.
fn key_segment(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'-'));
    if plain {
        key.to_owned()
    } else {
        serde_json::to_string(key).expect("a string serialises")
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_the_config() {
        let e = BuildError::new("bad")
            .in_key("$regex")
            .in_key("params.model")
            .in_index(0)
            .in_key("$or")
            .in_key("query")
            .in_index(1)
            .prefixed("conditions");
        assert_eq!(
            e.path(),
            r#"conditions[1].query.$or[0]."params.model".$regex"#
        );
        assert_eq!(
            e.to_string(),
            r#"conditions[1].query.$or[0]."params.model".$regex: bad"#
        );
    }

    #[test]
    fn root_errors_have_no_path() {
        let e = BuildError::new("no targets");
        assert_eq!(e.path(), "");
        assert_eq!(e.to_string(), "no targets");
        assert_eq!(e.clone().prefixed("").path(), "");
        assert_eq!(e.prefixed("strategy").to_string(), "strategy: no targets");
    }

    #[test]
    fn odd_keys_are_quoted_and_escaped() {
        let e = BuildError::new("x").in_key("").in_index(2).in_index(0);
        assert_eq!(e.path(), r#"[0][2]."""#);
        let e = BuildError::new("x").in_key("a \"b\"");
        assert_eq!(e.path(), r#""a \"b\"""#);
    }
}
