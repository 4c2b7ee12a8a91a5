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

use std::any::Any;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::error::InvalidRequest;
use crate::observe::json::{Fields, Reader};

/// A JSON request body, parsed once, with typed access to the fields layers use.
///
/// Field types are checked when parsing, so a view never holds a `model` that is not a
/// string or a `stream` that is not a boolean.
///
/// The body is checked whole in one pass and only `model`, `user`, `stream` and
/// `stream_options` are taken from it; the tree of every field (`messages` and the rest) is
/// built the first time a layer asks for a field beyond those. A gateway that routes on the
/// model and sends the body as it came never builds it. The pass refuses what it is unsure
/// of (a key with escapes, a number a tree might not hold, a field given twice, a field of
/// the wrong type); such a body is parsed whole at once, as before, with the same answers
/// and the same errors.
///
/// A view made by [`RequestView::with_overrides`] shares the parsed object of the view it
/// came from and keeps only the replaced top-level keys of its own: overriding `model` on a
/// long conversation copies no message, and its body is the original's bytes with the
/// replaced values written in, at the places the one pass recorded (up to 16 top-level
/// members; a body with more is read again to find them).
#[derive(Clone, Debug)]
pub struct RequestView {
    bytes: Bytes,
    base: Arc<Base>,
    /// Top-level keys that replace the base's.
    patch: Option<Arc<Map<String, Value>>>,
    stream: bool,
    /// Where the members of `bytes` lie, for a view made by [`RequestView::with_overrides`]
    /// (a view parsed from a body has them in its base).
    members: Option<Arc<[Member]>>,
}

/// One top-level member of a body: its key (the bytes between the quotes) and its value, as
/// byte ranges of the body.
#[derive(Clone, Copy, Debug, Default)]
struct Member {
    key: (u32, u32),
    value: (u32, u32),
}

/// How many top-level members the one pass records for [`RequestView::with_overrides`] (a
/// body with more is read again to splice).
const MEMBERS_MAX: usize = 16;

/// The body a view was first made from, and its fields.
#[derive(Debug)]
struct Base {
    bytes: Bytes,
    /// Every top-level field, built on first use when `taken` holds the ones read so far.
    tree: OnceLock<Map<String, Value>>,
    /// The fields the one pass took; `None` when the tree was built at once.
    taken: Option<Taken>,
    /// Values layers computed from some of the body's fields (see [`RequestView::memo`]).
    memos: Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
}

/// The top-level fields the one pass reads, as the tree would hold them.
#[derive(Debug, Default)]
struct Taken {
    model: Option<Value>,
    user: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    /// The body's members in order, when there are at most [`MEMBERS_MAX`].
    members: [Member; MEMBERS_MAX],
    count: usize,
}

impl Taken {
    fn members(&self) -> Option<&[Member]> {
        self.members.get(..self.count)
    }
}

impl Taken {
    /// The field `key` if it is one the pass reads: `Some(None)` when the body lacks it.
    fn get(&self, key: &str) -> Option<Option<&Value>> {
        Some(
            match key {
                "model" => &self.model,
                "user" => &self.user,
                "stream" => &self.stream,
                "stream_options" => &self.stream_options,
                _ => return None,
            }
            .as_ref(),
        )
    }

    /// Reads a body in one pass, checking it whole; `None` for anything left to serde_json
    /// (malformed JSON included, so that its error is serde_json's).
    fn read(bytes: &[u8]) -> Option<Taken> {
        let mut r = Reader::for_value(bytes);
        let mut taken = Taken::default();
        // A repeated field: a tree keeps the last; left to serde_json rather than matched.
        let mut seen = Fields::default();
        r.object(|r, key| {
            r.peek()?;
            let start = r.offset();
            taken.field(r, key, &mut seen)?;
            taken.record(bytes, key, start, r.offset());
            Some(())
        })?;
        r.end()?;
        Some(taken)
    }

    /// Notes where a member lies; past [`MEMBERS_MAX`], that there are too many.
    fn record(&mut self, body: &[u8], key: &[u8], start: usize, end: usize) {
        let slot = self.members.get_mut(self.count);
        if let Some(slot) = slot.filter(|_| u32::try_from(end).is_ok()) {
            // The key is a slice of the body (the reader hands keys out in place).
            let at = key.as_ptr() as usize - body.as_ptr() as usize;
            *slot = Member {
                key: (at as u32, (at + key.len()) as u32),
                value: (start as u32, end as u32),
            };
            self.count += 1;
        } else {
            // Too many, or a body past 4 GiB: read again to splice.
            self.count = MEMBERS_MAX + 1;
        }
    }

    /// Reads the value of member `key`, keeping it when it is one the view takes.
    fn field(&mut self, r: &mut Reader<'_>, key: &[u8], seen: &mut Fields) -> Option<()> {
        let taken = self;
        match key {
            b"model" => {
                seen.once(0)?;
                taken.model = Some(string_or_null(r)?);
                Some(())
            }
            b"user" => {
                seen.once(1)?;
                taken.user = Some(string_or_null(r)?);
                Some(())
            }
            b"stream" => {
                seen.once(2)?;
                taken.stream = Some(match r.peek()? {
                    b't' => r.skip().map(|()| Value::Bool(true))?,
                    b'f' => r.skip().map(|()| Value::Bool(false))?,
                    b'n' => r.skip().map(|()| Value::Null)?,
                    _ => return None,
                });
                Some(())
            }
            b"messages" => {
                seen.once(3)?;
                matches!(r.peek()?, b'[' | b'n').then_some(())?;
                r.skip()
            }
            b"stream_options" => {
                seen.once(4)?;
                matches!(r.peek()?, b'{' | b'n').then_some(())?;
                // A small object: read into a value of its own.
                taken.stream_options = Some(serde_json::from_slice(r.value_bytes()?).ok()?);
                Some(())
            }
            _ => r.skip(),
        }
    }
}

/// A string or `null`, as a value.
fn string_or_null(r: &mut Reader<'_>) -> Option<Value> {
    match r.peek()? {
        b'n' => r.skip().map(|()| Value::Null),
        b'"' => Some(Value::String(r.string()?.text()?.into_owned())),
        _ => None,
    }
}

impl Base {
    fn tree(&self) -> &Map<String, Value> {
        self.tree.get_or_init(|| {
            // The one pass refuses whatever serde_json might: this parse does not fail.
            serde_json::from_slice(&self.bytes).unwrap_or_else(|err| {
                debug_assert!(
                    false,
                    "a body read whole in one pass failed to parse: {err}"
                );
                Map::new()
            })
        })
    }

    fn get(&self, key: &str) -> Option<&Value> {
        match self.taken.as_ref().and_then(|t| t.get(key)) {
            Some(taken) => taken,
            None => self.tree().get(key),
        }
    }
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

/// A field whose type is checked: its name, what it must be, the test.
type Checked = (&'static str, &'static str, fn(&Value) -> bool);

/// The fields layers read whose type is checked.
const CHECKED: [Checked; 5] = [
    ("model", "a string", Value::is_string),
    ("user", "a string", Value::is_string),
    ("stream", "a boolean", Value::is_boolean),
    ("messages", "an array", Value::is_array),
    ("stream_options", "an object", Value::is_object),
];

/// The type checks of the fields layers read, on `get`.
fn check<'a>(get: impl Fn(&str) -> Option<&'a Value>) -> Result<(), InvalidRequest> {
    for (field, what, ok) in CHECKED {
        expect(get(field), field, what, ok)?;
    }
    Ok(())
}

/// [`check`] of a patch, by walking its entries (a handful, against a lookup per checked
/// field); when one is wrong, [`check`] names the first in its order.
fn check_patch(patch: &Map<String, Value>) -> Result<(), InvalidRequest> {
    let wrong = patch.iter().any(|(key, value)| {
        CHECKED
            .iter()
            .any(|(field, _, ok)| key == field && !value.is_null() && !ok(value))
    });
    if wrong {
        check(|k| patch.get(k))
    } else {
        Ok(())
    }
}

impl RequestView {
    /// Parses a request body. Fails, with a message for the client, when the body is not
    /// JSON, not an object, or has `model`, `user`, `stream`, `messages` or `stream_options`
    /// of the wrong type.
    pub fn parse(bytes: Bytes) -> Result<Self, InvalidRequest> {
        match Taken::read(&bytes) {
            Some(taken) => {
                let stream = taken.stream.as_ref().and_then(Value::as_bool) == Some(true);
                Ok(Self {
                    bytes: bytes.clone(),
                    base: Arc::new(Base {
                        bytes,
                        tree: OnceLock::new(),
                        taken: Some(taken),
                        memos: Mutex::default(),
                    }),
                    patch: None,
                    stream,
                    members: None,
                })
            }
            None => Self::parse_whole(bytes),
        }
    }

    /// Parses a body into its tree at once: what [`RequestView::parse`] does with a body its
    /// one pass leaves to serde_json.
    fn parse_whole(bytes: Bytes) -> Result<Self, InvalidRequest> {
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
        check(|k| object.get(k))?;
        let stream = object.get("stream").and_then(Value::as_bool) == Some(true);
        Ok(Self {
            bytes: bytes.clone(),
            base: Arc::new(Base {
                bytes,
                tree: OnceLock::from(object),
                taken: None,
                memos: Mutex::default(),
            }),
            patch: None,
            stream,
            members: None,
        })
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
                    .tree()
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
    /// `override_params` merge). The new view shares this one's parsed object; its body is
    /// this one's bytes with the replaced values written in place and the new keys after
    /// them (the same JSON object as the merge; the order of keys is the body's own), or, for
    /// a body the one pass left to serde_json, the merge serialised once from borrowed
    /// values. Fails, like [`RequestView::parse`], when a field ends up with the wrong type.
    pub fn with_overrides(&self, params: &Map<String, Value>) -> Result<Self, InvalidRequest> {
        let mut patch = self.patch.as_deref().cloned().unwrap_or_default();
        for (k, v) in params {
            patch.insert(k.clone(), v.clone());
        }
        self.overridden(Arc::new(patch), params)
    }

    /// [`with_overrides`](Self::with_overrides) with parameters held in an [`Arc`] (a layer's,
    /// the same for every request): the first override of a body shares them as its patch
    /// instead of copying every key and value.
    pub(crate) fn with_shared_overrides(
        &self,
        params: &Arc<Map<String, Value>>,
    ) -> Result<Self, InvalidRequest> {
        match &self.patch {
            None => self.overridden(params.clone(), params),
            Some(_) => self.with_overrides(params),
        }
    }

    /// The view with `patch` (the fields replaced since the body was parsed, `params` the
    /// last of them) over this one's base.
    fn overridden(
        &self,
        patch: Arc<Map<String, Value>>,
        params: &Map<String, Value>,
    ) -> Result<Self, InvalidRequest> {
        // The base's fields were checked when it was parsed; the replaced ones are checked here
        // (by walking the patch: a handful of entries, against five lookups by name).
        check_patch(&patch)?;
        let stream = match patch.get("stream") {
            Some(v) => v.as_bool() == Some(true),
            None => self.base.get("stream").and_then(Value::as_bool) == Some(true),
        };
        let mut view = Self {
            bytes: Bytes::new(),
            base: self.base.clone(),
            patch: Some(patch),
            stream,
            members: None,
        };
        let spliced = match self.base.taken.as_ref() {
            None => None,
            Some(taken) => match self.members.as_deref().or_else(|| {
                // A view parsed from a body: its base recorded where the members lie.
                self.patch.is_none().then(|| taken.members()).flatten()
            }) {
                Some(members) => Some(splice_members(&self.bytes, members, params)),
                None => spliced(&self.bytes, params).map(|bytes| (bytes, None)),
            },
        };
        view.bytes = match spliced {
            Some((bytes, members)) => {
                view.members = members;
                bytes
            }
            None => {
                // Sized for the body it replaces: growing the buffer from empty copied the
                // body several times over.
                let mut bytes = Vec::with_capacity(self.bytes.len() + 64);
                serde_json::to_writer(&mut bytes, &Entries(&view))
                    .expect("a JSON object serialises");
                bytes.into()
            }
        };
        Ok(view)
    }
    /// A value `compute`d from the body as it was parsed (before any override), once: every
    /// view of that body (this one, and those [`with_overrides`](Self::with_overrides) made
    /// from it) gets the same value. A layer that reads fields an override may replace asks
    /// [`replaced`](Self::replaced) and reads those from the view itself.
    ///
    /// One value per type: `T` should be a type of the caller's own, so that no other layer
    /// keeps a value of it.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use portcullis_core::RequestView;
    ///
    /// #[derive(Clone)]
    /// struct Chars(usize);
    /// let count = |v: &RequestView| Chars(v.get("messages").map_or(0, |m| m.to_string().len()));
    ///
    /// let view = RequestView::parse(Bytes::from_static(
    ///     br#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#,
    /// )).unwrap();
    /// assert_eq!(view.memo(count).0, 32);
    /// // Every view of the body shares it, computed from the body as parsed.
    /// let other = serde_json::json!({"model": "b", "messages": []});
    /// let o = view.with_overrides(other.as_object().unwrap()).unwrap();
    /// assert_eq!(o.memo(|_| Chars(0)).0, 32);
    /// assert!(o.replaced("messages") && !o.replaced("user"));
    /// ```
    pub fn memo<T>(&self, compute: impl FnOnce(&RequestView) -> T) -> T
    where
        T: Clone + Send + Sync + 'static,
    {
        let kept = self
            .base
            .memos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find_map(|m| m.downcast_ref::<T>().cloned());
        if let Some(value) = kept {
            return value;
        }
        let value = match self.patch {
            None => compute(self),
            // Computed from the body as parsed, whichever view asks first.
            Some(_) => compute(&RequestView {
                bytes: self.base.bytes.clone(),
                base: self.base.clone(),
                patch: None,
                stream: self.base.get("stream").and_then(Value::as_bool) == Some(true),
                members: None,
            }),
        };
        let mut memos = self
            .base
            .memos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !memos.iter().any(|m| m.is::<T>()) {
            memos.push(Arc::new(value.clone()));
        }
        value
    }

    /// Whether an override replaced (or added) the top-level field `key` in this view.
    pub fn replaced(&self, key: &str) -> bool {
        self.patch.as_ref().is_some_and(|p| p.contains_key(key))
    }

    /// The top-level fields overrides replaced (or added) in this view: for a layer that asks
    /// [`replaced`](Self::replaced) of many fields, one walk over the few replaced.
    pub fn replaced_keys(&self) -> impl Iterator<Item = &str> {
        self.patch.iter().flat_map(|p| p.keys().map(String::as_str))
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

/// `body`, whose top-level `members` lie where they say, with the values of `params` written
/// over their own and the keys it lacks added at its end: the bytes [`spliced`] writes, without
/// reading the body again; and where the new body's members lie.
fn splice_members(
    body: &[u8],
    members: &[Member],
    params: &Map<String, Value>,
) -> (Bytes, Option<Arc<[Member]>>) {
    let range = |(a, b): (u32, u32)| a as usize..b as usize;
    let mut out = Vec::with_capacity(body.len() + 32 * params.len() + 2);
    let mut placed = Vec::with_capacity(members.len() + params.len());
    let mut write = |out: &mut Vec<u8>, key: &[u8], value: Result<&[u8], &Value>| {
        if out.len() > 1 {
            out.push(b',');
        }
        out.push(b'"');
        let key_at = out.len();
        out.extend_from_slice(key);
        let key_end = out.len();
        out.extend_from_slice(b"\":");
        let value_at = out.len();
        match value {
            Ok(raw) => out.extend_from_slice(raw),
            Err(value) => serde_json::to_writer(&mut *out, value).expect("a JSON value serialises"),
        }
        placed.push(Member {
            key: (key_at as u32, key_end as u32),
            value: (value_at as u32, out.len() as u32),
        });
    };
    out.push(b'{');
    // A layer's parameters are a handful: compared by their bytes, not looked up by name
    // (which would take each key as text first).
    let param = |key: &[u8]| match params.len() {
        0..=8 => params
            .iter()
            .find(|(k, _)| k.as_bytes() == key)
            .map(|(_, v)| v),
        _ => std::str::from_utf8(key).ok().and_then(|k| params.get(k)),
    };
    for m in members {
        let key = &body[range(m.key)];
        // Keys come plain (the reader refuses escaped ones): written back as they were.
        match param(key) {
            Some(value) => write(&mut out, key, Err(value)),
            None => write(&mut out, key, Ok(&body[range(m.value)])),
        }
    }
    for (key, value) in params {
        if !members
            .iter()
            .any(|m| &body[range(m.key)] == key.as_bytes())
        {
            // A new key is written as JSON writes it (it may need escapes).
            if out.len() > 1 {
                out.push(b',');
            }
            let key_at = out.len();
            serde_json::to_writer(&mut out, key).expect("a string serialises");
            let key_end = out.len();
            out.push(b':');
            let value_at = out.len();
            serde_json::to_writer(&mut out, value).expect("a JSON value serialises");
            placed.push(Member {
                // Between the quotes, when it needed no escapes; else the next splice reads.
                key: (key_at as u32 + 1, key_end as u32 - 1),
                value: (value_at as u32, out.len() as u32),
            });
        }
    }
    out.push(b'}');
    let members = (placed.len() <= MEMBERS_MAX
        && u32::try_from(out.len()).is_ok()
        && params
            .keys()
            .all(|k| !k.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)))
    .then(|| placed.into());
    (out.into(), members)
}

/// `body` (a JSON object the one pass read) with the top-level values of `params` written
/// over its own and the keys it lacks added at its end: copied, not parsed and serialised
/// again. `None` when `body` is not read here (the caller serialises the merge instead).
fn spliced(body: &[u8], params: &Map<String, Value>) -> Option<Bytes> {
    // Which of `params` the body already had, by their place in `params` (a mask, not a list:
    // no allocation per override); more than 64 overrides are left to the caller.
    if params.len() > 64 {
        return None;
    }
    let mut written = 0u64;
    let mut out = Vec::with_capacity(body.len() + 32 * params.len() + 2);
    out.push(b'{');
    let mut r = Reader::for_value(body);
    let mut first = true;
    r.object(|r, key| {
        let raw = r.value_bytes()?;
        if !first {
            out.push(b',');
        }
        first = false;
        // Keys come plain (the reader refuses escaped ones): written back as they were.
        out.push(b'"');
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        let name = std::str::from_utf8(key).ok()?;
        match params
            .iter()
            .enumerate()
            .find(|(_, (k, _))| k.as_str() == name)
        {
            Some((at, (_, value))) => {
                serde_json::to_writer(&mut out, value).ok()?;
                written |= 1 << at;
            }
            None => out.extend_from_slice(raw),
        }
        Some(())
    })?;
    r.end()?;
    for (at, (key, value)) in params.iter().enumerate() {
        if written & (1 << at) != 0 {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, key).ok()?;
        out.push(b':');
        serde_json::to_writer(&mut out, value).ok()?;
    }
    out.push(b'}');
    Some(out.into())
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
    use proptest::prelude::*;

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
    fn the_usual_request_never_builds_its_tree() {
        let v = parse(
            r#"{"model":"bench-model","messages":[{"role":"user","content":"hi \"there\""}],"stream":true,"stream_options":{"include_usage":true},"user":"u-1","n":1}"#,
        )
        .unwrap();
        assert_eq!(v.model(), Some("bench-model"));
        assert_eq!(v.user(), Some("u-1"));
        assert!(v.stream() && v.include_usage());
        assert_eq!(v.param(&["model"]).unwrap(), "bench-model");
        let params = serde_json::json!({"model": "bench-large", "max_tokens": 256});
        let o = v.with_overrides(params.as_object().unwrap()).unwrap();
        let params = serde_json::json!({"model": "bench-small"});
        let oo = o.with_overrides(params.as_object().unwrap()).unwrap();
        assert_eq!(oo.model(), Some("bench-small"));
        assert_eq!(v.replaced_keys().count(), 0);
        assert_eq!(
            oo.replaced_keys().collect::<Vec<_>>(),
            ["max_tokens", "model"]
        );
        assert!(oo.replaced("max_tokens") && !oo.replaced("messages"));
        assert!(v.base.tree.get().is_none(), "no tree was built");
        // The bodies are the original's bytes with the values written in.
        assert_eq!(
            std::str::from_utf8(oo.bytes()).unwrap(),
            r#"{"model":"bench-small","messages":[{"role":"user","content":"hi \"there\""}],"stream":true,"stream_options":{"include_usage":true},"user":"u-1","n":1,"max_tokens":256}"#
        );
        // A field beyond the ones read builds it, once.
        assert_eq!(oo.messages().unwrap().len(), 1);
        assert_eq!(oo.get("max_tokens").unwrap(), 256);
        assert!(v.base.tree.get().is_some());
    }

    /// A request as clients write it, or not: the fields layers read of any type, now and
    /// then given twice or with escaped keys, other fields of any shape, bytes broken.
    fn request() -> impl Strategy<Value = (Vec<u8>, Value)> {
        use crate::observe::testjson::{J, Style, mutation, value};
        let key = prop::sample::select(vec![
            "model",
            "user",
            "stream",
            "messages",
            "stream_options",
            "n",
            "max_tokens",
            "é",
        ]);
        let typed = prop_oneof![
            Just(J::Str("gpt-4o".into())),
            Just(J::Bool(true)),
            Just(J::Null),
            Just(J::Arr(vec![J::Obj(vec![(
                "role".into(),
                J::Str("user".into())
            )])])),
            Just(J::Obj(vec![("include_usage".into(), J::Bool(true))])),
            value(),
        ];
        let entries = prop::collection::vec((key.prop_map(str::to_owned), typed), 0..7);
        let params = prop::collection::vec(
            (
                prop::sample::select(vec!["model", "stream", "max_tokens", "n", "x"]),
                prop_oneof![
                    Just(Value::from("m-2")),
                    Just(Value::from(true)),
                    Just(Value::from(64)),
                    Just(Value::Null),
                    Just(Value::from("yes")),
                ],
            ),
            0..3,
        )
        .prop_map(|p| Value::Object(p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
        (entries, Style::any(), mutation(), params).prop_map(|(entries, style, broken, params)| {
            let mut bytes = style.write(&J::Obj(entries));
            broken.apply(&mut bytes);
            (bytes, params)
        })
    }

    fn outcome(view: &Result<RequestView, InvalidRequest>) -> Result<Value, String> {
        let v = view
            .as_ref()
            .map_err(|e| format!("{:?} {}", e.param, e.message))?;
        let fields: Map<String, Value> = v.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
        Ok(serde_json::json!({
            "model": v.model(), "user": v.user(), "stream": v.stream(),
            "include_usage": v.include_usage(), "messages": v.messages().map(<[Value]>::len),
            "model_param": v.param(&["model"]), "fields": fields,
            "sent": serde_json::from_slice::<Value>(v.bytes()).ok(),
        }))
    }

    proptest! {
        #![proptest_config(crate::observe::testjson::config())]

        /// The one pass and the whole parse answer alike: the same fields, the same errors,
        /// the same bodies after overrides.
        #[test]
        fn the_one_pass_reads_as_the_whole_parse((bytes, params) in request()) {
            let bytes = Bytes::from(bytes);
            let fast = RequestView::parse(bytes.clone());
            let whole = RequestView::parse_whole(bytes);
            prop_assert_eq!(outcome(&fast), outcome(&whole));
            if let (Ok(fast), Ok(whole)) = (fast, whole) {
                let params = params.as_object().unwrap();
                let (fast, whole) = (fast.with_overrides(params), whole.with_overrides(params));
                prop_assert_eq!(outcome(&fast), outcome(&whole));
            }
        }

        /// Overrides shared from a layer's `Arc` answer as copied ones do, as a body's first
        /// override (which shares them) and as a second one; the patch's check by walking it
        /// answers as the check by lookups.
        #[test]
        fn shared_overrides_answer_as_copied_ones((bytes, params) in request()) {
            let params = params.as_object().unwrap();
            let err = |r: Result<(), InvalidRequest>| r.map_err(|e| format!("{:?} {}", e.param, e.message));
            prop_assert_eq!(err(check_patch(params)), err(check(|k| params.get(k))));
            let Ok(view) = RequestView::parse(Bytes::from(bytes)) else {
                return Ok(());
            };
            let shared = Arc::new(params.clone());
            let (copied, first) = (view.with_overrides(params), view.with_shared_overrides(&shared));
            prop_assert_eq!(outcome(&copied), outcome(&first));
            if let (Ok(copied), Ok(first)) = (copied, first) {
                prop_assert!(Arc::ptr_eq(first.patch.as_ref().unwrap(), &shared));
                let second = serde_json::json!({"model": "m-3", "n": 2});
                let second = Arc::new(second.as_object().unwrap().clone());
                prop_assert_eq!(
                    outcome(&copied.with_overrides(&second)),
                    outcome(&first.with_shared_overrides(&second))
                );
            }
        }

        /// Splicing where the one pass found the members writes the bytes that reading the
        /// body again wrote, and so does a second splice over the first one's members.
        #[test]
        fn splices_by_the_members_write_what_reading_again_wrote((bytes, params) in request()) {
            let Ok(view) = RequestView::parse(Bytes::from(bytes)) else {
                return Ok(());
            };
            if view.base.taken.is_none() {
                // Parsed whole: both ways serialise the merge.
                return Ok(());
            }
            let params = params.as_object().unwrap();
            let more = serde_json::json!({"model": "m-3", "extra": [1, {"a": "é"}], "n": 2});
            let more = more.as_object().unwrap();
            let again = spliced(view.bytes(), params).and_then(|b| spliced(&b, more));
            let Ok(once) = view.with_overrides(params) else {
                return Ok(());
            };
            let Ok(twice) = once.with_overrides(more) else {
                return Ok(());
            };
            if let Some(again) = again {
                prop_assert_eq!(
                    String::from_utf8_lossy(twice.bytes()),
                    String::from_utf8_lossy(&again)
                );
            }
            // More than a handful of parameters: looked up by name.
            let mut many = params.clone();
            for i in 0..8 {
                many.insert(format!("p{i}"), Value::from(i));
            }
            many.insert("n".into(), Value::from(5));
            if let (Ok(over), Some(again)) = (view.with_overrides(&many), spliced(view.bytes(), &many)) {
                prop_assert_eq!(
                    String::from_utf8_lossy(over.bytes()),
                    String::from_utf8_lossy(&again)
                );
            }
        }
    }

    #[test]
    fn a_memo_is_the_parsed_bodys_whichever_view_asks_first() {
        #[derive(Clone, Debug, PartialEq)]
        struct Seen(String);
        let messages = |v: &RequestView| Seen(v.get("messages").unwrap().to_string());
        let v = parse(r#"{"model":"a","messages":[1]}"#).unwrap();
        let replaced = serde_json::json!({"messages": [2]});
        let o = v.with_overrides(replaced.as_object().unwrap()).unwrap();
        // Asked first by a view that replaced the field: still the parsed body's.
        assert_eq!(o.memo(messages), Seen("[1]".into()));
        assert_eq!(v.memo(|_| Seen("again".into())), Seen("[1]".into()));
        assert!(o.replaced("messages"));
        assert!(!o.replaced("model") && !v.replaced("messages"));
        // One value per type.
        assert_eq!(v.memo(|v| v.model().unwrap().len()), 1);
        assert_eq!(o.memo(|_| 7usize), 1);
    }

    #[test]
    fn a_parsed_body_records_its_members_for_splicing() {
        let v = parse(r#" {"model" : "a", "messages":[{"role":"user","content":"hi"}] ,"n":1} "#)
            .unwrap();
        let members = v.base.taken.as_ref().unwrap().members().unwrap();
        let text = |r: (u32, u32)| &v.bytes()[r.0 as usize..r.1 as usize];
        let seen: Vec<(&[u8], &[u8])> = members
            .iter()
            .map(|m| (text(m.key), text(m.value)))
            .collect();
        assert_eq!(
            seen,
            [
                (&b"model"[..], &br#""a""#[..]),
                (b"messages", br#"[{"role":"user","content":"hi"}]"#),
                (b"n", b"1"),
            ]
        );
        // More members than are recorded: splicing reads the body again, to the same bytes.
        let many: String = (0..MEMBERS_MAX + 1)
            .map(|i| format!(r#""k{i}":{i},"#))
            .collect();
        let body = format!(r#"{{{many}"model":"a"}}"#);
        let v = RequestView::parse(Bytes::from(body)).unwrap();
        assert!(v.base.taken.as_ref().unwrap().members().is_none());
        let params = serde_json::json!({"model": "b"});
        let o = v.with_overrides(params.as_object().unwrap()).unwrap();
        assert_eq!(o.model(), Some("b"));
        assert!(o.bytes().ends_with(br#""model":"b"}"#));
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
