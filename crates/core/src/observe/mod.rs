//! Observing responses as they stream: usage, assembled text, and one report at the end.
//!
//! [`observe_response`] wraps a response body in an [`ObservedBody`] and puts an
//! [`Observation`] in the response's extensions. Chunks reach the client as they arrive; the
//! observer reads them on the way through:
//!
//! - for a JSON body it keeps the chunks (shared with what went to the client; joined once at
//!   the end when there were several) and reads `usage` there;
//! - for a `text/event-stream` body it reads each event's `choices[].delta.content` (or
//!   `text`), `finish_reason` and `usage`, and forwards whole events only, holding back an
//!   event that has not ended yet. Each event's JSON is read in one pass over its bytes,
//!   without a serde parse; serde_json reads only what that pass leaves (escaped keys,
//!   repeated fields, values of unexpected types), to the same result;
//! - it reports exactly once: at the end, on a transport error, or when the body is dropped
//!   early (the client went away), with whatever text it assembled.
//!
//! A stream that breaks (transport error, or an end without `[DONE]` or a finish reason)
//! reaches the client as an SSE error event in the OpenAI error shape, then the end: never
//! as a clean end. Layers that need the outcome (metrics, budgets, the cache) register with
//! [`Observation::on_report`].
//!
//! ```
//! use http_body_util::BodyExt;
//! use portcullis_core::observe::{observe_response, Observation, Outcome};
//! use portcullis_core::Body;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let upstream = http::Response::builder()
//!     .header("content-type", "text/event-stream")
//!     .body(Body::from(
//!         "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\
//!          data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n\
//!          data: [DONE]\n\n",
//!     ))
//!     .unwrap();
//! let response = observe_response(upstream);
//! let observation = response.extensions().get::<Observation>().unwrap().clone();
//! response.into_body().collect().await.unwrap();
//! let report = observation.report().unwrap();
//! assert_eq!(report.outcome, Outcome::Complete);
//! assert_eq!(report.text, "Hi");
//! assert_eq!(report.usage.unwrap().total_tokens, 4);
//! # }
//! ```

mod body;
mod chunk;
/// The strict one-pass JSON reader behind the observer and the request view, for any layer
/// that reads a few values of a body without building a tree.
pub mod json;
mod layer;
mod sse;
mod start;
#[cfg(test)]
pub(crate) mod testjson;

use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;

pub use self::body::{ObservedBody, Options, observe_response, observe_response_with};
pub use self::layer::{Observe, ObserveLayer, ResponseFuture};
pub use self::sse::{find_newline, lines};
pub use self::start::{NotStarted, Started, event_carries_content, started};

use crate::facts::Usage;

/// How an observed body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The whole body was delivered (a stream ended with `[DONE]` or a finish reason).
    Complete,
    /// The body broke: a transport error, a stream cut short, or an error event upstream.
    Failed(String),
    /// The body was dropped before its end: the client went away.
    Cancelled,
}

/// What the observer saw of one response body, reported once.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The response status.
    pub status: StatusCode,
    /// Whether the body was a Server-Sent Events stream.
    pub stream: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Token usage, from the JSON body or the stream's usage event.
    pub usage: Option<Usage>,
    /// The generated text of choice 0: streamed deltas assembled, or the message content of
    /// a JSON body. Partial when the outcome is not [`Outcome::Complete`].
    pub text: String,
    /// The finish reason of choice 0.
    pub finish_reason: Option<String>,
    /// The model the upstream reported.
    pub model: Option<String>,
    /// A JSON body, whole (not kept for streams, nor past the observer's size cap).
    pub body: Option<Bytes>,
    /// Bytes that reached the client.
    pub bytes: u64,
    /// Stream events seen.
    pub events: u32,
}

type Callback = Box<dyn FnOnce(&Report) + Send>;

enum Slot {
    Waiting(Vec<Callback>),
    Done(Arc<Report>),
}

/// A handle to the report of one observed body, kept in the response's extensions.
///
/// Clones share the report. Callbacks registered before the end run when it comes (on the
/// task that polled or dropped the body); registered after, they run at once.
#[derive(Clone)]
pub struct Observation {
    slot: Arc<Mutex<Slot>>,
}

impl Observation {
    fn new() -> Self {
        Self {
            slot: Arc::new(Mutex::new(Slot::Waiting(Vec::new()))),
        }
    }

    /// Runs `f` with the report once there is one.
    pub fn on_report(&self, f: impl FnOnce(&Report) + Send + 'static) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *slot {
            Slot::Waiting(callbacks) => callbacks.push(Box::new(f)),
            Slot::Done(report) => {
                let report = report.clone();
                drop(slot);
                f(&report);
            }
        }
    }

    /// The report, if the body has ended.
    pub fn report(&self) -> Option<Arc<Report>> {
        match &*self.slot.lock().unwrap_or_else(|e| e.into_inner()) {
            Slot::Done(report) => Some(report.clone()),
            Slot::Waiting(_) => None,
        }
    }

    fn finish(&self, report: Report) {
        let report = Arc::new(report);
        let callbacks = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *slot, Slot::Done(report.clone())) {
                Slot::Waiting(callbacks) => callbacks,
                // Reported already: keep the first report.
                Slot::Done(first) => {
                    *slot = Slot::Done(first);
                    return;
                }
            }
        };
        for callback in callbacks {
            callback(&report);
        }
    }
}

impl fmt::Debug for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observation")
            .field("report", &self.report())
            .finish()
    }
}
