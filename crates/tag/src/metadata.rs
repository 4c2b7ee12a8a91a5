//! Request metadata from a header: a JSON object of string values, within limits.
//!
//! ```
//! use portcullis_tag::metadata::{MetadataLimits, parse_metadata};
//!
//! let limits = MetadataLimits::default();
//! let map = parse_metadata(br#"{"team":"search","_user":"u-1"}"#, &limits).unwrap();
//! assert_eq!(map["team"], "search");
//!
//! let err = parse_metadata(br#"{"team":7}"#, &limits).unwrap_err();
//! assert_eq!(err.key(), Some("team"));
//! assert_eq!(err.to_string(), "the value of key `team` must be a string, got a number");
//! ```

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;

use serde_json::Value;

/// The most keys a request's metadata may have by default.
pub const DEFAULT_MAX_KEYS: usize = 32;
/// The longest key or value by default, in characters.
pub const DEFAULT_MAX_LEN: usize = 128;

/// Limits on the metadata one request may carry.
///
/// They bound what every later layer and every exporter handles per request (metric labels,
/// span attributes, log lines, budget and cache keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetadataLimits {
    /// The most keys (default 32).
    pub max_keys: usize,
    /// The longest key, in characters (default 128).
    pub max_key_len: usize,
    /// The longest value, in characters (default 128).
    pub max_value_len: usize,
}

impl Default for MetadataLimits {
    fn default() -> Self {
        Self {
            max_keys: DEFAULT_MAX_KEYS,
            max_key_len: DEFAULT_MAX_LEN,
            max_value_len: DEFAULT_MAX_LEN,
        }
    }
}

impl MetadataLimits {
    /// Sets the most keys.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Sets the longest key, in characters.
    pub fn max_key_len(mut self, chars: usize) -> Self {
        self.max_key_len = chars;
        self
    }

    /// Sets the longest value, in characters.
    pub fn max_value_len(mut self, chars: usize) -> Self {
        self.max_value_len = chars;
        self
    }
}

/// Metadata that is not a JSON object of strings within the limits (answered 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidMetadata {
    message: String,
    key: Option<String>,
}

impl InvalidMetadata {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            key: None,
        }
    }

    fn at(key: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            key: Some(key.to_owned()),
        }
    }

    /// The key at fault, when one is.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for InvalidMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for InvalidMetadata {}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `s` is longer than `max` characters (bytes first: most strings are ASCII).
fn too_long(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// A key as it is quoted in a message: at most 40 characters of it.
fn quoted(key: &str) -> String {
    match key.char_indices().nth(40) {
        Some((end, _)) => format!("`{}…`", &key[..end]),
        None => format!("`{key}`"),
    }
}

/// Parses a metadata header value: a JSON object whose values are all strings, with at most
/// `limits.max_keys` keys and keys and values no longer than the limits.
///
/// The error says which key is at fault, when one is.
pub fn parse_metadata(
    value: &[u8],
    limits: &MetadataLimits,
) -> Result<BTreeMap<String, String>, InvalidMetadata> {
    match read_plain(value, limits) {
        Some(map) => Ok(map),
        None => parse_whole(value, limits),
    }
}

/// The usual header, read in one pass with core's strict reader: an object of strings within
/// the limits, keys plain ASCII (the last of a repeated key counts, as in the tree). Anything
/// else is `None`, and read whole, where the errors are worded.
fn read_plain(value: &[u8], limits: &MetadataLimits) -> Option<BTreeMap<String, String>> {
    let mut r = portcullis_core::observe::json::Reader::new(value);
    let mut map = BTreeMap::new();
    r.object(|r, key| {
        let key = std::str::from_utf8(key).ok()?;
        let text = r.string()?.text()?;
        if too_long(key, limits.max_key_len) || too_long(&text, limits.max_value_len) {
            return None;
        }
        map.insert(key.to_owned(), text.into_owned());
        Some(())
    })?;
    r.end()?;
    (map.len() <= limits.max_keys).then_some(map)
}

/// [`parse_metadata`] through a JSON tree: every header the one pass does not take, and the
/// wording of every error.
fn parse_whole(
    value: &[u8],
    limits: &MetadataLimits,
) -> Result<BTreeMap<String, String>, InvalidMetadata> {
    let value: Value = serde_json::from_slice(value)
        .map_err(|e| InvalidMetadata::new(format!("metadata is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(InvalidMetadata::new(format!(
            "metadata must be a JSON object of strings, got {}",
            json_type(&value)
        )));
    };
    if object.len() > limits.max_keys {
        return Err(InvalidMetadata::new(format!(
            "metadata has {} keys; at most {} are allowed",
            object.len(),
            limits.max_keys
        )));
    }
    let mut map = BTreeMap::new();
    for (key, value) in object {
        if too_long(&key, limits.max_key_len) {
            return Err(InvalidMetadata::at(
                &key,
                format!(
                    "metadata key {} is longer than {} characters",
                    quoted(&key),
                    limits.max_key_len
                ),
            ));
        }
        let value = match value {
            Value::String(s) => s,
            other => {
                return Err(InvalidMetadata::at(
                    &key,
                    format!(
                        "the value of key {} must be a string, got {}",
                        quoted(&key),
                        json_type(&other)
                    ),
                ));
            }
        };
        if too_long(&value, limits.max_value_len) {
            return Err(InvalidMetadata::at(
                &key,
                format!(
                    "the value of key {} is longer than {} characters",
                    quoted(&key),
                    limits.max_value_len
                ),
            ));
        }
        map.insert(key, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// The one pass reads what the tree reads: the same map, or the tree's error.
        #[test]
        fn the_one_pass_reads_headers_as_the_tree_does(
            members in prop::collection::vec(
                (
                    prop::sample::select(vec!["plan", "user", "a", "\\u0061", "é", "k"]),
                    prop::sample::select(vec![
                        "\"free\"", "\"\"", "\"a\\nb\"", "\"\\u00e9\"", "\"é\"", "1", "null",
                        "{}", "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
                    ]),
                ),
                0..6,
            ),
            ws in prop::sample::select(vec!["", " ", "\n "]),
            max_keys in 0usize..5,
        ) {
            let body: Vec<String> =
                members.iter().map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}")).collect();
            let header = format!("{ws}{{{}}}{ws}", body.join(","));
            let limits = MetadataLimits { max_keys, max_value_len: 64, ..MetadataLimits::default() };
            let ours = parse_metadata(header.as_bytes(), &limits).map_err(|e| e.to_string());
            let tree = parse_whole(header.as_bytes(), &limits).map_err(|e| e.to_string());
            prop_assert_eq!(ours, tree);
        }
    }

    fn parse(s: &str) -> Result<BTreeMap<String, String>, InvalidMetadata> {
        parse_metadata(s.as_bytes(), &MetadataLimits::default())
    }

    #[test]
    fn the_usual_header_is_read_in_one_pass() {
        let limits = MetadataLimits::default();
        let map = read_plain(br#" {"plan":"free","user":"a\nb","plan":"paid"} "#, &limits).unwrap();
        assert_eq!(
            map["plan"], "paid",
            "the last of a repeated key, as in the tree"
        );
        assert_eq!(map["user"], "a\nb");
        for refused in [r#"{"n":1}"#, r#"{"\u0061":"x"}"#, r#"{"é":"x"}"#, "[]", "{"] {
            assert!(
                read_plain(refused.as_bytes(), &limits).is_none(),
                "{refused}"
            );
        }
    }

    #[test]
    fn reads_an_object_of_strings() {
        let m = parse(r#"{"a":"1","b":""}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["b"], "");
        assert!(parse("{}").unwrap().is_empty());
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        assert_eq!(
            parse("[]").unwrap_err().to_string(),
            "metadata must be a JSON object of strings, got an array"
        );
        assert!(
            parse("{nope")
                .unwrap_err()
                .to_string()
                .starts_with("metadata is not valid JSON")
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn names_the_key_with_a_wrong_value() {
        for (body, what) in [
            (r#"{"k":null}"#, "null"),
            (r#"{"k":true}"#, "a boolean"),
            (r#"{"k":{}}"#, "an object"),
            (r#"{"k":["x"]}"#, "an array"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.key(), Some("k"), "{body}");
            assert!(e.to_string().ends_with(what), "{e}");
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let limits = MetadataLimits::default().max_value_len(3);
        let ok = parse_metadata("{\"k\":\"\u{e9}\u{e9}\u{e9}\"}".as_bytes(), &limits);
        assert!(ok.is_ok(), "3 characters, 6 bytes");
        let e = parse_metadata("{\"k\":\"\u{e9}\u{e9}\u{e9}\u{e9}\"}".as_bytes(), &limits);
        assert_eq!(e.unwrap_err().key(), Some("k"));
    }

    #[test]
    fn quotes_long_keys_briefly() {
        let key = "k".repeat(200);
        let e = parse(&format!(r#"{{"{key}":"v"}}"#)).unwrap_err();
        assert_eq!(e.key(), Some(key.as_str()));
        assert!(
            e.to_string().contains(&format!("`{}…`", "k".repeat(40))),
            "{e}"
        );
    }
}
