//! [`Plan`]: what the fake upstream answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

/// Default assistant text of generated answers.
pub const DEFAULT_CONTENT: &str = "Hello from the fake upstream.";
/// Default `(prompt_tokens, completion_tokens)` of generated answers.
pub const DEFAULT_USAGE: (u64, u64) = (12, 7);

/// How a stream answer ends early (see [`Plan::break_after`] and
/// [`Plan::end_without_done`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Abort the connection mid-body after this many content events.
    Break(usize),
    /// End the body cleanly after this many content events.
    End(usize),
}

/// What the fake upstream does with the requests that reach it.
///
/// Builder style: start from [`Plan::ok`] (or `Plan::default()`, the same)
/// and chain modifiers. Clones share the request counter used by
/// [`Plan::fail_first`] and [`Plan::disconnect_first`].
///
/// Order of evaluation for each request: the request is recorded, the
/// counter is bumped, [`delay`](Plan::delay) is waited, then
/// [`disconnect`](Plan::disconnect), then forced errors
/// ([`status`](Plan::status), [`fail_first`](Plan::fail_first)), then the
/// [`body`](Plan::body) override, then the normal generated answer.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub(crate) status: Option<StatusCode>,
    pub(crate) fail_first: Option<(usize, StatusCode)>,
    pub(crate) disconnect_first: Option<usize>,
    pub(crate) delay: Duration,
    pub(crate) chunk_delay: Duration,
    pub(crate) retry_after: Option<HeaderValue>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) cut: Option<Cut>,
    pub(crate) content: Option<String>,
    pub(crate) usage: Option<(u64, u64)>,
    pub(crate) always_stream_usage: bool,
    pub(crate) body: Option<serde_json::Value>,
    pub(crate) seen: Arc<AtomicUsize>,
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status)
        .unwrap_or_else(|e| panic!("Plan: invalid HTTP status {status}: {e}"))
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value)
        .unwrap_or_else(|e| panic!("Plan: invalid header value {value:?}: {e}"))
}

impl Plan {
    /// Normal `200` OpenAI answers (the default plan).
    pub fn ok() -> Plan {
        Plan::default()
    }

    /// Always answer `status` with an OpenAI error body.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status_code(status));
        self
    }

    /// The first `n` requests reaching this plan (counted across clones) get
    /// `status` with an OpenAI error body; later ones get the normal answer.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code.
    pub fn fail_first(mut self, n: usize, status: u16) -> Self {
        self.fail_first = Some((n, status_code(status)));
        self
    }

    /// Wait `d` (with `tokio::time::sleep`, so virtual under
    /// `tokio::time::pause`) before sending the response headers.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Wait `d` between the events of stream answers.
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = d;
        self
    }

    /// Add `retry-after: v` to error answers forced by [`Plan::status`] or
    /// [`Plan::fail_first`].
    ///
    /// # Panics
    /// If `v` is not a valid header value.
    pub fn retry_after(mut self, v: &str) -> Self {
        self.retry_after = Some(header_value(v));
        self
    }

    /// Add the header `name: value` to every answer of this plan.
    ///
    /// # Panics
    /// If `name` or `value` is not valid in an HTTP header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("Plan: invalid header name {name:?}: {e}"));
        self.headers.push((name, header_value(value)));
        self
    }

    /// Close the connection without any response, for every request.
    pub fn disconnect(mut self) -> Self {
        self.disconnect_first = Some(usize::MAX);
        self
    }

    /// Close the connection without any response for the first `n` requests
    /// reaching this plan (counted across clones); later ones are answered.
    pub fn disconnect_first(mut self, n: usize) -> Self {
        self.disconnect_first = Some(n);
        self
    }

    /// Stream answers: send the role event (chat only) plus `n` content
    /// events, then abort the connection mid-body (no terminating chunk, no
    /// finish event, no `[DONE]`).
    pub fn break_after(mut self, n: usize) -> Self {
        self.cut = Some(Cut::Break(n));
        self
    }

    /// Stream answers: send the role event (chat only) plus `n` content
    /// events, then end the body cleanly with no finish event and no
    /// `[DONE]`.
    pub fn end_without_done(mut self, n: usize) -> Self {
        self.cut = Some(Cut::End(n));
        self
    }

    /// The assistant text (default [`DEFAULT_CONTENT`]).
    pub fn content(mut self, text: &str) -> Self {
        self.content = Some(text.to_owned());
        self
    }

    /// The usage numbers reported (default [`DEFAULT_USAGE`]).
    pub fn usage(mut self, prompt: u64, completion: u64) -> Self {
        self.usage = Some((prompt, completion));
        self
    }

    /// Send the usage chunk in streams even when the request did not ask
    /// for it with `"stream_options": {"include_usage": true}`.
    pub fn always_stream_usage(mut self) -> Self {
        self.always_stream_usage = true;
        self
    }

    /// Answer `200` with exactly this JSON body (never streamed), whatever
    /// the path or request, instead of the generated answer.
    pub fn body(mut self, v: serde_json::Value) -> Self {
        self.body = Some(v);
        self
    }

    /// How many requests reached this plan (or any of its clones) so far.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    pub(crate) fn next_index(&self) -> usize {
        self.seen.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn content_text(&self) -> &str {
        self.content.as_deref().unwrap_or(DEFAULT_CONTENT)
    }

    pub(crate) fn usage_numbers(&self) -> (u64, u64) {
        self.usage.unwrap_or(DEFAULT_USAGE)
    }
}
