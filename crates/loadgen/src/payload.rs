//! What goes over the wire: the request the load generator sends, the answers the fake
//! upstream gives, and the checks that a response arrived whole.
//!
//! Both sides are built from the same constants, so a check fails only when a hop lost,
//! cut or mangled something.
//!
//! ```
//! use portcullis_loadgen::payload::{self, Answers};
//!
//! let answers = Answers::new();
//! assert!(payload::check_json(answers.json()).is_ok());
//! let stream: Vec<u8> = answers.events().iter().flat_map(|e| e.to_vec()).collect();
//! assert!(payload::check_stream(&stream).is_ok());
//! assert!(payload::check_stream(&stream[..stream.len() - 8]).is_err());
//! ```

use bytes::Bytes;
use serde_json::{Value, json};

/// The assistant text of every answer.
pub const CONTENT: &str = "Portcullis load run: a fixed answer of a realistic length, long enough to \
    make the body about five hundred bytes, short enough that the hop and not the copy is what \
    the run measures.";

/// Content events in a stream answer (between the role event and the finish event).
pub const CONTENT_EVENTS: usize = 16;

/// Every `data:` event of a stream answer: role, content, finish, usage and `[DONE]`.
pub const STREAM_EVENTS: usize = CONTENT_EVENTS + 4;

/// The model the load generator asks for.
pub const MODEL: &str = "bench-model";

/// Metadata sent on every request (`x-portkey-metadata`), which the all-layers config routes
/// on. Hops that do not know the header pass it on; the upstream ignores it.
pub const METADATA: &str = r#"{"plan":"paid"}"#;

const ID: &str = "chatcmpl-portcullis-bench-0001";
const CREATED: u64 = 1_700_000_000;

/// The request body: a short chat with `stream` set as asked. Streams ask for usage
/// themselves, as current OpenAI clients do, so no hop has to rewrite the body for it.
pub fn request(stream: bool) -> Bytes {
    let mut body = json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello to the load generator."}
        ],
        "temperature": 0.2,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value serialises"))
}

/// The fake upstream's answers, serialised once.
#[derive(Clone, Debug)]
pub struct Answers {
    json: Bytes,
    events: Vec<Bytes>,
}

impl Default for Answers {
    fn default() -> Self {
        Self::new()
    }
}

impl Answers {
    /// Builds the chat completion and the stream events.
    pub fn new() -> Self {
        let usage = json!({"prompt_tokens": 24, "completion_tokens": 41, "total_tokens": 65});
        let json = json!({
            "id": ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": CONTENT, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": usage,
        });
        let chunk = |choices: Value, usage: Option<&Value>| {
            let mut v = json!({
                "id": ID,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "system_fingerprint": "fp_bench",
                "choices": choices,
            });
            if let Some(u) = usage {
                v["usage"] = u.clone();
            }
            event(&serde_json::to_string(&v).expect("a JSON value serialises"))
        };
        let delta = |delta: Value, finish: Value| {
            chunk(
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
                None,
            )
        };
        let mut events = Vec::with_capacity(STREAM_EVENTS);
        events.push(delta(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        ));
        for piece in pieces(CONTENT, CONTENT_EVENTS) {
            events.push(delta(json!({"content": piece}), Value::Null));
        }
        events.push(delta(json!({}), json!("stop")));
        events.push(chunk(json!([]), Some(&usage)));
        events.push(event("[DONE]"));
        debug_assert_eq!(events.len(), STREAM_EVENTS);
        Self {
            json: Bytes::from(serde_json::to_vec(&json).expect("a JSON value serialises")),
            events,
        }
    }

    /// The non-stream answer: a `chat.completion` object.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The stream answer, one `data: …\n\n` event per item.
    pub fn events(&self) -> &[Bytes] {
        &self.events
    }
}

fn event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// Splits `text` into `n` pieces on character boundaries (the last takes the rest).
fn pieces(text: &str, n: usize) -> Vec<&str> {
    let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let step = chars.len().div_ceil(n);
    (0..n)
        .map(|k| {
            let start = chars.get(k * step).copied().unwrap_or(text.len());
            let end = chars.get((k + 1) * step).copied().unwrap_or(text.len());
            if k + 1 == n {
                &text[start..]
            } else {
                &text[start..end]
            }
        })
        .collect()
}

/// Checks a non-stream answer: a `chat.completion` whose first choice carries [`CONTENT`].
pub fn check_json(body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e})"))?;
    if v["object"] != "chat.completion" {
        return Err(format!("object is {}, not chat.completion", v["object"]));
    }
    if v["choices"][0]["message"]["content"] != CONTENT {
        return Err("the answer's content differs from the upstream's".to_owned());
    }
    Ok(())
}

/// Checks a stream answer: exactly [`STREAM_EVENTS`] `data:` events, the last `[DONE]`.
///
/// Events are counted over the whole body, so hops may re-chunk the stream freely.
pub fn check_stream(body: &[u8]) -> Result<(), String> {
    let mut events = 0;
    let mut last: &[u8] = &[];
    for raw in body.split(|&b| b == b'\n') {
        if let Some(data) = raw.strip_prefix(b"data:") {
            events += 1;
            last = data.trim_ascii();
        }
    }
    if last != b"[DONE]" {
        return Err(format!(
            "stream did not end with [DONE] ({events} events, {} bytes)",
            body.len()
        ));
    }
    if events != STREAM_EVENTS {
        return Err(format!(
            "stream has {events} events, the upstream sent {STREAM_EVENTS}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_have_the_advertised_shape() {
        let a = Answers::new();
        let len = a.json().len();
        assert!((450..=650).contains(&len), "JSON answer is {len} bytes");
        assert_eq!(a.events().len(), STREAM_EVENTS);
        let text: String = a.events()[1..=CONTENT_EVENTS]
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_slice(e.strip_prefix(b"data: ").unwrap()).unwrap();
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(text, CONTENT);
        assert!(
            std::str::from_utf8(&a.events()[STREAM_EVENTS - 2])
                .unwrap()
                .contains("\"usage\"")
        );
    }

    #[test]
    fn checks_catch_cut_and_changed_answers() {
        let a = Answers::new();
        assert!(check_json(&a.json()[..a.json().len() - 1]).is_err());
        assert!(check_json(br#"{"object":"chat.completion","choices":[]}"#).is_err());
        let whole: Vec<u8> = a.events().iter().flat_map(|e| e.to_vec()).collect();
        assert!(check_stream(&whole).is_ok());
        // One event lost in the middle, or the end cut off.
        let missing: Vec<u8> = a.events()[..3]
            .iter()
            .chain(&a.events()[4..])
            .flat_map(|e| e.to_vec())
            .collect();
        assert!(check_stream(&missing).is_err());
        let cut: Vec<u8> = a.events()[..STREAM_EVENTS - 1]
            .iter()
            .flat_map(|e| e.to_vec())
            .collect();
        assert!(check_stream(&cut).is_err());
    }

    #[test]
    fn requests_ask_for_what_they_say() {
        let json: Value = serde_json::from_slice(&request(false)).unwrap();
        assert_eq!(json.get("stream"), None);
        let stream: Value = serde_json::from_slice(&request(true)).unwrap();
        assert_eq!(stream["stream"], true);
        assert_eq!(stream["stream_options"]["include_usage"], true);
    }
}
