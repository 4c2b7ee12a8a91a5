//! A cached answer, and how it is replayed in the shape the client asked for.
//!
//! An entry keeps what the client was sent: a JSON body whole, or a stream's events as they
//! went out (with the usage-only event and `[DONE]` marked). A hit replays it:
//!
//! - stream asked, stream stored: the same events, byte for byte; the usage event only when
//!   the client asked for it with `stream_options.include_usage` (made from the stored usage
//!   when the stored stream had none);
//! - JSON asked, JSON stored: the same body;
//! - stream asked, JSON stored: the completion as chunks (role and content, tool calls, the
//!   finish reason, usage when asked), then `[DONE]`;
//! - JSON asked, stream stored: the chunks assembled into one completion.
//!
//! ```
//! use portcullis_cache::entry::{Entry, Shape};
//!
//! let json = br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}"#;
//! let entry = Entry::from_json(bytes::Bytes::from_static(json), None, 0);
//! let replay = entry.replay_bytes(Shape::Stream { include_usage: false });
//! let text = String::from_utf8(replay).unwrap();
//! assert!(text.contains(r#""content":"Hi""#));
//! assert!(text.ends_with("data: [DONE]\n\n"));
//! ```

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use portcullis_core::facts::Usage;
use portcullis_core::{Body, BoxError};
use serde_json::{Map, Value, json};

/// How an entry's answer was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON body.
    Json,
    /// Server-sent events.
    Sse,
}

/// What an event of a stored stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A chunk with choices.
    Chunk,
    /// The usage-only chunk (`"choices": []` with `usage`).
    Usage,
    /// `data: [DONE]`.
    Done,
}

/// The shape a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One JSON body.
    Json,
    /// A stream, with the usage chunk or not.
    Stream {
        /// `stream_options.include_usage`.
        include_usage: bool,
    },
}

/// A cached answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// How it was stored.
    pub format: Format,
    /// The JSON body, or the stream's bytes.
    pub body: Bytes,
    /// For streams: each event's byte range in `body`, and its kind.
    pub events: Vec<(u32, u32, EventKind)>,
    /// The usage the answer reported.
    pub usage: Option<Usage>,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at_ms: u64,
}

impl Entry {
    /// An entry of a JSON body.
    pub fn from_json(body: Bytes, usage: Option<Usage>, stored_at_ms: u64) -> Self {
        Self {
            format: Format::Json,
            body,
            events: Vec::new(),
            usage,
            stored_at_ms,
        }
    }

    /// An entry of a stream's bytes as they went to the client, cut into its events.
    pub fn from_stream(body: Bytes, usage: Option<Usage>, stored_at_ms: u64) -> Self {
        let events = split_events(&body)
            .into_iter()
            .map(|(start, end)| {
                let kind = event_kind(&body[start..end]);
                (start as u32, end as u32, kind)
            })
            .collect();
        Self {
            format: Format::Sse,
            body,
            events,
            usage,
            stored_at_ms,
        }
    }

    /// The bytes it holds: its body and its events' records.
    pub fn weight(&self) -> usize {
        self.body.len() + self.events.len() * 12
    }

    /// The answer as the response a client that asked for `shape` gets.
    pub fn to_response(&self, shape: Shape) -> Response<Body> {
        let (content_type, body) = match shape {
            Shape::Json => ("application/json", self.json_body()),
            Shape::Stream { .. } => {
                let frames = self.stream_frames(shape);
                let mut r = Response::new(Body::boxed(Frames { frames }));
                set_type(&mut r, "text/event-stream");
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                return r;
            }
        };
        let mut r = Response::new(Body::full(body));
        set_type(&mut r, content_type);
        r
    }

    /// The replayed body as bytes (tests and docs; [`to_response`](Self::to_response) streams).
    pub fn replay_bytes(&self, shape: Shape) -> Vec<u8> {
        match shape {
            Shape::Json => self.json_body().to_vec(),
            Shape::Stream { .. } => self.stream_frames(shape).into_iter().flatten().collect(),
        }
    }

    fn json_body(&self) -> Bytes {
        match self.format {
            Format::Json => self.body.clone(),
            Format::Sse => assemble(self),
        }
    }

    fn stream_frames(&self, shape: Shape) -> VecDeque<Bytes> {
        let include_usage = matches!(
            shape,
            Shape::Stream {
                include_usage: true
            }
        );
        match self.format {
            Format::Sse => {
                let mut frames = VecDeque::with_capacity(self.events.len() + 1);
                let had_usage = self.events.iter().any(|e| e.2 == EventKind::Usage);
                for &(start, end, kind) in &self.events {
                    let event = self.body.slice(start as usize..end as usize);
                    match kind {
                        EventKind::Usage if !include_usage => {}
                        EventKind::Done if include_usage && !had_usage => {
                            if let Some(chunk) = self.usage_chunk() {
                                frames.push_back(chunk);
                            }
                            frames.push_back(event);
                        }
                        _ => frames.push_back(event),
                    }
                }
                frames
            }
            Format::Json => {
                json_to_chunks(&self.body, include_usage.then_some(self.usage).flatten())
            }
        }
    }

    /// A usage chunk made from the stored usage, with the id, created and model of the
    /// stream's first chunk.
    fn usage_chunk(&self) -> Option<Bytes> {
        let usage = self.usage?;
        let first = self
            .events
            .iter()
            .find(|e| e.2 == EventKind::Chunk)
            .and_then(|&(s, e, _)| event_json(&self.body[s as usize..e as usize]));
        let mut chunk = Map::new();
        if let Some(first) = &first {
            for k in ["id", "object", "created", "model", "system_fingerprint"] {
                if let Some(v) = first.get(k) {
                    chunk.insert(k.into(), v.clone());
                }
            }
        }
        chunk.insert("choices".into(), Value::Array(Vec::new()));
        chunk.insert("usage".into(), usage_json(usage));
        Some(sse_event(&Value::Object(chunk)))
    }
}

fn set_type(r: &mut Response<Body>, content_type: &'static str) {
    *r.status_mut() = StatusCode::OK;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    })
}

fn sse_event(v: &Value) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    out.put_slice(b"data: ");
    serde_json::to_writer((&mut out).writer(), v).expect("JSON serialises");
    out.put_slice(b"\n\n");
    out.freeze()
}

/// Each event's `[start, end)` in `body`, the blank line included.
fn split_events(body: &[u8]) -> Vec<(usize, usize)> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\n' {
            // A line ending followed by another line ending (`\n\n` or `\n\r\n`) ends an event.
            let next = &body[i + 1..];
            let blank = if next.starts_with(b"\n") {
                Some(i + 2)
            } else if next.starts_with(b"\r\n") {
                Some(i + 3)
            } else {
                None
            };
            if let Some(end) = blank {
                events.push((start, end));
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    if start < body.len() {
        events.push((start, body.len()));
    }
    events
}

/// The data of an event, its `data:` lines joined.
fn event_data(event: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    data
}

fn event_json(event: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&event_data(event)).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn event_kind(event: &[u8]) -> EventKind {
    let data = event_data(event);
    if data.trim_ascii() == b"[DONE]" {
        return EventKind::Done;
    }
    match serde_json::from_slice::<Value>(&data) {
        Ok(v)
            if v.get("usage").is_some_and(|u| !u.is_null())
                && v.get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty) =>
        {
            EventKind::Usage
        }
        _ => EventKind::Chunk,
    }
}

/// A chat (or text) completion as the chunks a stream of it would have sent.
fn json_to_chunks(body: &[u8], usage: Option<Usage>) -> VecDeque<Bytes> {
    let mut frames = VecDeque::new();
    let Ok(Value::Object(completion)) = serde_json::from_slice::<Value>(body) else {
        frames.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        return frames;
    };
    let text_completion =
        completion.get("object").and_then(Value::as_str) == Some("text_completion");
    let mut head = Map::new();
    for k in ["id", "created", "model", "system_fingerprint"] {
        if let Some(v) = completion.get(k) {
            head.insert(k.into(), v.clone());
        }
    }
    head.insert(
        "object".into(),
        Value::from(if text_completion {
            "text_completion"
        } else {
            "chat.completion.chunk"
        }),
    );
    let chunk = |choices: Value| {
        let mut c = head.clone();
        c.insert("choices".into(), choices);
        sse_event(&Value::Object(c))
    };
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, choice) in choices.iter().enumerate() {
        let index = choice
            .get("index")
            .cloned()
            .unwrap_or_else(|| Value::from(i));
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        if text_completion {
            let text = choice
                .get("text")
                .cloned()
                .unwrap_or_else(|| Value::from(""));
            frames.push_back(chunk(
                json!([{"index": index, "text": text, "finish_reason": finish}]),
            ));
            continue;
        }
        let message = choice.get("message").and_then(Value::as_object);
        let mut delta = Map::new();
        delta.insert("role".into(), Value::from("assistant"));
        if let Some(content) = message
            .and_then(|m| m.get("content"))
            .filter(|c| !c.is_null())
        {
            delta.insert("content".into(), content.clone());
        }
        if let Some(refusal) = message
            .and_then(|m| m.get("refusal"))
            .filter(|c| !c.is_null())
        {
            delta.insert("refusal".into(), refusal.clone());
        }
        if let Some(Value::Array(calls)) = message.and_then(|m| m.get("tool_calls")) {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(j, call)| {
                    let mut c = call.as_object().cloned().unwrap_or_default();
                    c.insert("index".into(), Value::from(j));
                    Value::Object(c)
                })
                .collect();
            delta.insert("tool_calls".into(), Value::Array(calls));
        }
        frames.push_back(chunk(
            json!([{"index": index, "delta": delta, "finish_reason": null}]),
        ));
        frames.push_back(chunk(
            json!([{"index": index, "delta": {}, "finish_reason": finish}]),
        ));
    }
    if let Some(u) = usage {
        let mut c = head.clone();
        c.insert("choices".into(), Value::Array(Vec::new()));
        c.insert("usage".into(), usage_json(u));
        frames.push_back(sse_event(&Value::Object(c)));
    }
    frames.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

/// A stored stream's chunks as one completion.
fn assemble(entry: &Entry) -> Bytes {
    #[derive(Default)]
    struct Choice {
        content: Option<String>,
        text: Option<String>,
        refusal: Option<String>,
        tool_calls: Vec<Map<String, Value>>,
        finish: Value,
    }
    let mut head = Map::new();
    let mut choices: Vec<(u64, Choice)> = Vec::new();
    let mut text_completion = false;
    let mut usage = entry.usage.map(usage_json);
    for &(s, e, kind) in &entry.events {
        if kind == EventKind::Done {
            continue;
        }
        let Some(chunk) = event_json(&entry.body[s as usize..e as usize]) else {
            continue;
        };
        if head.is_empty() {
            for k in ["id", "created", "model", "system_fingerprint"] {
                if let Some(v) = chunk.get(k) {
                    head.insert(k.into(), v.clone());
                }
            }
            text_completion =
                chunk.get("object").and_then(Value::as_str) == Some("text_completion");
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
        for c in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let at = match choices.iter().position(|(i, _)| *i == index) {
                Some(at) => at,
                None => {
                    choices.push((index, Choice::default()));
                    choices.len() - 1
                }
            };
            let choice = &mut choices[at].1;
            if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
                choice.finish = f.clone();
            }
            if let Some(t) = c.get("text").and_then(Value::as_str) {
                choice.text.get_or_insert_with(String::new).push_str(t);
            }
            let Some(delta) = c.get("delta") else {
                continue;
            };
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                choice.content.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(t) = delta.get("refusal").and_then(Value::as_str) {
                choice.refusal.get_or_insert_with(String::new).push_str(t);
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let i = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                while choice.tool_calls.len() <= i {
                    choice.tool_calls.push(Map::new());
                }
                let slot = &mut choice.tool_calls[i];
                for k in ["id", "type"] {
                    if let Some(v) = call.get(k).filter(|v| !v.is_null()) {
                        slot.insert(k.into(), v.clone());
                    }
                }
                if let Some(f) = call.get("function") {
                    let func = slot
                        .entry("function")
                        .or_insert_with(|| json!({"name": "", "arguments": ""}));
                    for k in ["name", "arguments"] {
                        if let Some(part) = f.get(k).and_then(Value::as_str) {
                            let old = func[k].as_str().unwrap_or("").to_owned();
                            func[k] = Value::from(old + part);
                        }
                    }
                }
            }
        }
    }
    let choices: Vec<Value> = choices
        .into_iter()
        .map(|(index, c)| {
            if text_completion {
                return json!({"index": index, "text": c.text.unwrap_or_default(), "finish_reason": c.finish});
            }
            let mut message = Map::new();
            message.insert("role".into(), Value::from("assistant"));
            message.insert(
                "content".into(),
                c.content.map_or(Value::Null, Value::from),
            );
            if let Some(r) = c.refusal {
                message.insert("refusal".into(), Value::from(r));
            }
            if !c.tool_calls.is_empty() {
                message.insert(
                    "tool_calls".into(),
                    Value::Array(c.tool_calls.into_iter().map(Value::Object).collect()),
                );
            }
            json!({"index": index, "message": message, "finish_reason": c.finish})
        })
        .collect();
    head.insert(
        "object".into(),
        Value::from(if text_completion {
            "text_completion"
        } else {
            "chat.completion"
        }),
    );
    head.insert("choices".into(), Value::Array(choices));
    if let Some(u) = usage {
        head.insert("usage".into(), u);
    }
    serde_json::to_vec(&Value::Object(head))
        .expect("JSON serialises")
        .into()
}

/// A body of frames sent one by one (a replayed stream: one frame per event, as it came).
struct Frames {
    frames: VecDeque<Bytes>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.frames.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.frames.iter().map(|f| f.len() as u64).sum())
    }
}

/// Entries in bytes, for stores outside the process: a small header, then the body,
/// LZ4-compressed past `compress_above` bytes.
pub mod codec {
    use super::*;

    const MAGIC: &[u8; 4] = b"PCE1";
    const COMPRESSED: u8 = 1;
    const SSE: u8 = 2;
    const USAGE: u8 = 4;

    /// Encodes `entry`.
    pub fn encode(entry: &Entry, compress_above: usize) -> Vec<u8> {
        let compress = entry.body.len() > compress_above;
        let mut flags = 0;
        if compress {
            flags |= COMPRESSED;
        }
        if entry.format == Format::Sse {
            flags |= SSE;
        }
        if entry.usage.is_some() {
            flags |= USAGE;
        }
        let mut out = Vec::with_capacity(entry.body.len() / if compress { 3 } else { 1 } + 64);
        out.extend_from_slice(MAGIC);
        out.push(flags);
        out.extend_from_slice(&entry.stored_at_ms.to_le_bytes());
        if let Some(u) = entry.usage {
            for n in [u.prompt_tokens, u.completion_tokens, u.total_tokens] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        out.extend_from_slice(&(entry.events.len() as u32).to_le_bytes());
        for &(s, e, kind) in &entry.events {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.push(match kind {
                EventKind::Chunk => 0,
                EventKind::Usage => 1,
                EventKind::Done => 2,
            });
        }
        if compress {
            out.extend_from_slice(&lz4_flex::compress_prepend_size(&entry.body));
        } else {
            out.extend_from_slice(&entry.body);
        }
        out
    }

    /// Decodes what [`encode`] wrote; `None` for anything else (a foreign or damaged value
    /// is a miss, never an answer).
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return None;
        }
        let flags = r.take(1)?[0];
        let stored_at_ms = r.u64()?;
        let usage = if flags & USAGE != 0 {
            Some(Usage {
                prompt_tokens: r.u64()?,
                completion_tokens: r.u64()?,
                total_tokens: r.u64()?,
            })
        } else {
            None
        };
        let n = r.u32()? as usize;
        if n > r.0.len() / 9 {
            return None;
        }
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, e) = (r.u32()?, r.u32()?);
            let kind = match r.take(1)?[0] {
                0 => EventKind::Chunk,
                1 => EventKind::Usage,
                2 => EventKind::Done,
                _ => return None,
            };
            events.push((s, e, kind));
        }
        let body: Bytes = if flags & COMPRESSED != 0 {
            lz4_flex::decompress_size_prepended(r.0).ok()?.into()
        } else {
            Bytes::copy_from_slice(r.0)
        };
        if events
            .iter()
            .any(|&(s, e, _)| s > e || e as usize > body.len())
        {
            return None;
        }
        Some(Entry {
            format: if flags & SSE != 0 {
                Format::Sse
            } else {
                Format::Json
            },
            body,
            events,
            usage,
            stored_at_ms,
        })
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }
        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n\
        data: [DONE]\n\n";

    fn usage() -> Usage {
        Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            total_tokens: 5,
        }
    }

    #[test]
    fn a_stream_replays_byte_for_byte_with_its_usage_event_when_asked() {
        let e = Entry::from_stream(Bytes::from_static(STREAM.as_bytes()), Some(usage()), 1);
        assert_eq!(
            e.events.iter().map(|e| e.2).collect::<Vec<_>>(),
            [
                EventKind::Chunk,
                EventKind::Chunk,
                EventKind::Usage,
                EventKind::Done
            ]
        );
        let with = e.replay_bytes(Shape::Stream {
            include_usage: true,
        });
        assert_eq!(String::from_utf8(with).unwrap(), STREAM);
        let without = String::from_utf8(e.replay_bytes(Shape::Stream {
            include_usage: false,
        }))
        .unwrap();
        assert!(!without.contains("usage"));
        assert!(without.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_stream_without_usage_event_gets_one_made_from_the_stored_usage() {
        let body: String = STREAM
            .split("\n\n")
            .filter(|e| !e.contains("\"usage\""))
            .map(|e| format!("{e}\n\n"))
            .filter(|e| e != "\n\n")
            .collect();
        let e = Entry::from_stream(Bytes::from(body), Some(usage()), 1);
        let out = String::from_utf8(e.replay_bytes(Shape::Stream {
            include_usage: true,
        }))
        .unwrap();
        assert!(out.contains(r#""choices":[],"#), "{out}");
        assert!(out.contains(r#""total_tokens":5"#), "{out}");
        assert!(out.find("usage").unwrap() < out.find("[DONE]").unwrap());
    }

    #[test]
    fn a_stream_assembles_into_one_completion() {
        let e = Entry::from_stream(Bytes::from_static(STREAM.as_bytes()), Some(usage()), 1);
        let v: Value = serde_json::from_slice(&e.replay_bytes(Shape::Json)).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], "c1");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 5);
    }

    #[test]
    fn streamed_tool_calls_assemble_by_index() {
        let stream = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"t0\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n\
            data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}},{\"index\":1,\"id\":\"t1\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n\
            data: [DONE]\n\n";
        let e = Entry::from_stream(Bytes::from_static(stream.as_bytes()), None, 1);
        let v: Value = serde_json::from_slice(&e.replay_bytes(Shape::Json)).unwrap();
        let calls = &v["choices"][0]["message"]["tool_calls"];
        assert_eq!(calls[0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(calls[1]["function"]["name"], "g");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        // And back to a stream: each call keeps its index.
        let json = Entry::from_json(e.replay_bytes(Shape::Json).into(), None, 1);
        let out = String::from_utf8(json.replay_bytes(Shape::Stream {
            include_usage: false,
        }))
        .unwrap();
        assert!(out.contains(r#""index":1"#), "{out}");
        assert!(out.contains(r#""finish_reason":"tool_calls""#), "{out}");
    }

    #[test]
    fn a_json_completion_streams_as_chunks_with_usage_when_asked() {
        let body = br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let e = Entry::from_json(Bytes::from_static(body), Some(usage()), 1);
        let out = String::from_utf8(e.replay_bytes(Shape::Stream {
            include_usage: true,
        }))
        .unwrap();
        let events: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 4, "{out}");
        assert!(events[0].contains(r#""object":"chat.completion.chunk""#));
        assert!(events[1].contains(r#""finish_reason":"stop""#));
        assert!(events[2].contains(r#""choices":[]"#) && events[2].contains(r#""total_tokens":5"#));
        assert_eq!(events[3], "data: [DONE]");
        assert_eq!(e.replay_bytes(Shape::Json), body);
    }

    #[test]
    fn the_codec_round_trips_and_refuses_garbage() {
        let big = STREAM.repeat(20);
        for (body, stream) in [
            (STREAM.to_owned(), true),
            (big, true),
            ("{\"a\":1}".into(), false),
        ] {
            let e = if stream {
                Entry::from_stream(Bytes::from(body), Some(usage()), 42)
            } else {
                Entry::from_json(Bytes::from(body), None, 42)
            };
            let bytes = codec::encode(&e, 1024);
            assert_eq!(codec::decode(&bytes).as_ref(), Some(&e));
        }
        let long = Entry::from_stream(Bytes::from(STREAM.repeat(20)), None, 1);
        assert!(
            codec::encode(&long, 1024).len() < long.body.len() / 2,
            "compressed"
        );
        assert_eq!(codec::decode(b""), None);
        assert_eq!(codec::decode(b"PCE1\x00"), None);
        let mut bad = codec::encode(&long, usize::MAX);
        bad.truncate(40);
        assert_eq!(codec::decode(&bad), None);
    }
}
