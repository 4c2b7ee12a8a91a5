//! [`BuildError`]: a layer, policy or router that cannot be built, with the position at fault.
//!
//! Every Portcullis builder that checks its settings fails with this one type. Its path names
//! the setting in the config's own terms, so a config loader prefixes the path of the node it
//! was building and reports the whole position:
//!
//! ```
//! use portcullis_core::BuildError;
//!
//! let err = BuildError::at("targets[1].weight", "must be >= 0");
//! assert_eq!(err.to_string(), "targets[1].weight: must be >= 0");
//! let err = err.prefixed("config");
//! assert_eq!(err.path(), "config.targets[1].weight");
//! assert_eq!(err.message(), "must be >= 0");
//! ```

use std::fmt;

/// Something that cannot be built: what is wrong and where.
///
/// The path names the position in what was given, in the config's own terms, e.g.
/// `targets[1].weight`, `attempts`, or `conditions[1].query.$or[0]."params.model".$regex`
/// (keys that are not plain words are quoted). It is relative to what the builder was
/// given; a caller that builds out of a larger document places it with
/// [`prefixed`](Self::prefixed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    path: String,
    message: String,
}

impl BuildError {
    /// An error at the root of what was being built.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            message: message.into(),
        }
    }

    /// An error at `path`, a position already written as a path (`targets[1].weight`).
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
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
    /// `config.targets[2].retry`), for callers that build out of a larger document.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.path = join(prefix, &self.path);
        }
        self
    }

    /// The same error, placed below the object key `key`.
    pub fn in_key(mut self, key: &str) -> Self {
        self.path = join(&key_segment(key), &self.path);
        self
    }

    /// The same error, placed below the array index `index`.
    pub fn in_index(mut self, index: usize) -> Self {
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
    fn prefixes_join_paths_and_indices() {
        let e = BuildError::at("targets[1].weight", "must be >= 0").prefixed("config");
        assert_eq!(e.to_string(), "config.targets[1].weight: must be >= 0");
        let e = BuildError::at("[2]", "x").prefixed("config.targets");
        assert_eq!(e.path(), "config.targets[2]");
        let e = BuildError::at("attempts", "too many").prefixed("config.retry");
        assert_eq!(e.path(), "config.retry.attempts");
    }

    #[test]
    fn odd_keys_are_quoted_and_escaped() {
        let e = BuildError::new("x").in_key("").in_index(2).in_index(0);
        assert_eq!(e.path(), r#"[0][2]."""#);
        let e = BuildError::new("x").in_key("a \"b\"");
        assert_eq!(e.path(), r#""a \"b\"""#);
    }
}
