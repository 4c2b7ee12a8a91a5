//! The parse-once view of a JSON request.
//!
//! The edge parses the body once into a [`RequestView`] and stores it in the request's
//! extensions behind an `Arc`; every later layer reads it from there instead of parsing again.
//!
//! ```
//! use bytes::Bytes;
//! use portcullis_core::RequestView;
//!
//! let view = RequestView::parse(Bytes::from_static(
//!     br#"{"model":"gpt-4o-mini","stream":true,"response_format":{"type":"json_object"},
//!         "messages":[{"role":"user","content":"hi"}]}"#,
//! ))
//! .unwrap();
//! assert_eq!(view.model(), Some("gpt-4o-mini"));
//! assert!(view.stream());
//! assert_eq!(view.param(&["response_format", "type"]).unwrap(), "json_object");
//! assert_eq!(view.messages().unwrap().len(), 1);
//! ```

use std::sync::Arc;

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::error::InvalidRequest;

/// A JSON request body, parsed once, with typed access to the fields layers use.
///
/// Field types are checked when parsing, so a view never holds a `model` that is not a
/// string or a `stream` that is not a boolean.
///
/// A view made by [`RequestView::with_overrides`] shares the parsed object of the view it
/// came from and keeps only the replaced top-level keys of its own: overriding `model` on a
/// long conversation copies no message.
#[derive(Clone, Debug)]
pub struct RequestView {
    bytes: Bytes,
    base: Arc<Map<String, Value>>,
    /// Top-level keys that replace the base's.
    patch: Option<Arc<Map<String, Value>>>,
    stream: bool,
}

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

fn expect(
    value: Option<&Value>,
    field: &str,
    what: &str,
    ok: fn(&Value) -> bool,
) -> Result<(), InvalidRequest> {
    match value {
        Some(v) if !v.is_null() && !ok(v) => Err(InvalidRequest::param(
            field,
            format!("`{field}` must be {what}, got {}", json_type(v)),
        )),
        _ => Ok(()),
    }
}

impl RequestView {
    /// Parses a request body. Fails, with a message for the client, when the body is not
    /// JSON, not an object, or has `model`, `user`, `stream`, `messages` or `stream_options`
    /// of the wrong type.
    pub fn parse(bytes: Bytes) -> Result<Self, InvalidRequest> {
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| InvalidRequest::new(format!("request body is not valid JSON: {e}")))?;
        let object = match value {
            Value::Object(object) => object,
            other => {
                return Err(InvalidRequest::new(format!(
                    "request body must be a JSON object, got {}",
                    json_type(&other)
                )));
            }
        };
        Self::checked(bytes, object)
    }

    fn checked(bytes: Bytes, object: Map<String, Value>) -> Result<Self, InvalidRequest> {
        let mut view = Self {
            bytes,
            base: Arc::new(object),
            patch: None,
            stream: false,
        };
        view.check()?;
        Ok(view)
    }

    fn check(&mut self) -> Result<(), InvalidRequest> {
        expect(self.get("model"), "model", "a string", Value::is_string)?;
        expect(self.get("user"), "user", "a string", Value::is_string)?;
        expect(self.get("stream"), "stream", "a boolean", Value::is_boolean)?;
        expect(
            self.get("messages"),
            "messages",
            "an array",
            Value::is_array,
        )?;
        expect(
            self.get("stream_options"),
            "stream_options",
            "an object",
            Value::is_object,
        )?;
        self.stream = self.get("stream").and_then(Value::as_bool).unwrap_or(false);
        Ok(())
    }

    /// The top-level field `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.patch.as_deref().and_then(|p| p.get(key)) {
            Some(v) => Some(v),
            None => self.base.get(key),
        }
    }

    /// Every top-level field: the replaced ones first, then the rest in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        let patch = self.patch.as_deref();
        patch
            .into_iter()
            .flatten()
            .chain(
                self.base
                    .iter()
                    .filter(move |(k, _)| !patch.is_some_and(|p| p.contains_key(k.as_str()))),
            )
            .map(|(k, v)| (k.as_str(), v))
    }

    /// A view over a body built from `object` (serialised once), with the same type checks
    /// as [`RequestView::parse`].
    pub fn from_object(object: Map<String, Value>) -> Result<Self, InvalidRequest> {
        let bytes = Bytes::from(serde_json::to_vec(&object).expect("a JSON object serialises"));
        Self::checked(bytes, object)
    }

    /// This request with the top-level keys of `params` replacing its own (Portkey's shallow
    /// `override_params` merge): the body is serialised once, from borrowed values, and the
    /// new view shares this one's parsed object. Fails, like [`RequestView::parse`], when a
    /// field ends up with the wrong type.
    pub fn with_overrides(&self, params: &Map<String, Value>) -> Result<Self, InvalidRequest> {
        let mut patch = self.patch.as_deref().cloned().unwrap_or_default();
        for (k, v) in params {
            patch.insert(k.clone(), v.clone());
        }
        let mut view = Self {
            bytes: Bytes::new(),
            base: self.base.clone(),
            patch: Some(Arc::new(patch)),
            stream: false,
        };
        view.check()?;
        // Sized for the body it replaces: growing the buffer from empty copied the body
        // several times over.
        let mut bytes = Vec::with_capacity(self.bytes.len() + 64);
        serde_json::to_writer(&mut bytes, &Entries(&view)).expect("a JSON object serialises");
        view.bytes = bytes.into();
        Ok(view)
    }

    /// The raw body the view was parsed from.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// `model`, if present.
    pub fn model(&self) -> Option<&str> {
        self.get("model").and_then(Value::as_str)
    }

    /// `stream`, `false` when absent.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// `stream_options.include_usage`, `false` when absent.
    pub fn include_usage(&self) -> bool {
        self.get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `user`, if present.
    pub fn user(&self) -> Option<&str> {
        self.get("user").and_then(Value::as_str)
    }

    /// `messages`, if present.
    pub fn messages(&self) -> Option<&[Value]> {
        self.get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
    }

    /// The value at a path of keys below the top level; a segment that is a number indexes
    /// into an array (`["messages", "0", "role"]`). This is what `params.*` conditions read.
    pub fn param<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.get(first.as_ref())?;
        for segment in rest {
            let segment = segment.as_ref();
            value = match value {
                Value::Object(map) => map.get(segment)?,
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// Serialises a view's fields as one JSON object, values borrowed.
struct Entries<'a>(&'a RequestView);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.0.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &'static str) -> Result<RequestView, InvalidRequest> {
        RequestView::parse(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn reads_the_fields_layers_use() {
        let v = parse(
            r#"{"model":"m","user":"u","stream":true,"stream_options":{"include_usage":true},
                "messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(v.model(), Some("m"));
        assert_eq!(v.user(), Some("u"));
        assert!(v.stream());
        assert!(v.include_usage());
        assert_eq!(v.param(&["messages", "0", "role"]).unwrap(), "user");
        assert_eq!(v.param(&["messages", "x"]), None);
        assert_eq!(v.param(&["model", "deeper"]), None);
        assert_eq!(v.param::<&str>(&[]), None);
    }

    #[test]
    fn overrides_share_the_base_and_serialise_once() {
        let v =
            parse(r#"{"model":"a","messages":[{"role":"user","content":"hi"}],"n":1}"#).unwrap();
        let params = serde_json::json!({"model": "b", "stream": true});
        let o = v.with_overrides(params.as_object().unwrap()).unwrap();
        assert_eq!(o.model(), Some("b"));
        assert!(o.stream());
        assert_eq!(o.messages().unwrap().len(), 1);
        let sent: Value = serde_json::from_slice(o.bytes()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"model":"b","stream":true,"messages":[{"role":"user","content":"hi"}],"n":1})
        );
        // Overrides of overrides keep merging.
        let params = serde_json::json!({"n": 2});
        let oo = o.with_overrides(params.as_object().unwrap()).unwrap();
        assert_eq!(oo.model(), Some("b"));
        assert_eq!(oo.get("n").unwrap(), 2);
        let bad = serde_json::json!({"stream": "yes"});
        assert_eq!(
            v.with_overrides(bad.as_object().unwrap())
                .unwrap_err()
                .param
                .as_deref(),
            Some("stream")
        );
    }

    #[test]
    fn absent_fields_have_defaults() {
        let v = parse(r#"{"stream":null}"#).unwrap();
        assert_eq!(v.model(), None);
        assert!(!v.stream());
        assert!(!v.include_usage());
        assert!(v.messages().is_none());
    }

    #[test]
    fn malformed_json_says_where() {
        let e = parse(r#"{"model": "#).unwrap_err();
        assert!(
            e.message.starts_with("request body is not valid JSON"),
            "{e}"
        );
        assert!(e.message.contains("line 1"), "{e}");
    }

    #[test]
    fn non_object_names_the_type() {
        assert_eq!(
            parse("[1,2]").unwrap_err().message,
            "request body must be a JSON object, got an array"
        );
        assert_eq!(
            parse("\"x\"").unwrap_err().message,
            "request body must be a JSON object, got a string"
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (body, param) in [
            (r#"{"model":1}"#, "model"),
            (r#"{"stream":"yes"}"#, "stream"),
            (r#"{"user":{}}"#, "user"),
            (r#"{"messages":"hi"}"#, "messages"),
            (r#"{"stream_options":true}"#, "stream_options"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
            assert!(e.message.starts_with(&format!("`{param}` must be")), "{e}");
        }
    }
}
