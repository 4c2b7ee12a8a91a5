//! The [`Check`] trait, what a check answers, and Portkey's `default.*` checks.
//!
//! A check judges one [`HookContext`]: the request before the call, the response after it, or
//! a window of a stream. Most checks answer at once ([`Run::Done`]); the webhook and log
//! checks do I/O and answer later ([`Run::Pending`]). Checks are built from their JSON
//! parameters by [`Loader::check`](crate::Loader::check), which validates every parameter and
//! compiles every pattern once.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use portcullis_core::RequestView;
//! use portcullis_guard::{HookContext, Loader, Phase, RequestType, Run};
//!
//! let loader = Loader::new();
//! let check = loader
//!     .check("default.wordCount", &serde_json::json!({"minWords": 1, "maxWords": 3}), Phase::Before)
//!     .unwrap();
//! let view = RequestView::parse(Bytes::from_static(
//!     br#"{"model":"m","messages":[{"role":"user","content":"one two three four"}]}"#,
//! )).unwrap();
//! let cx = HookContext::before(Arc::new(view), RequestType::ChatComplete);
//! let Run::Done(outcome) = check.run(&cx) else { unreachable!() };
//! assert!(!outcome.verdict);
//! assert_eq!(outcome.data["wordCount"], 4);
//! ```

pub(crate) mod json;
pub(crate) mod params;
pub(crate) mod request;
pub(crate) mod schema;
pub(crate) mod text;
pub(crate) mod webhook;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use crate::context::HookContext;

/// A guardrail check: judges a [`HookContext`], may rewrite it.
///
/// Sync checks answer with [`Run::Done`]; checks that do I/O answer [`Run::Pending`] with a
/// future that owns what it needs. A check never panics on input: what it cannot judge is an
/// [`Outcome::error`] (which passes unless the check has `failOnError`).
pub trait Check: Send + Sync + fmt::Debug + 'static {
    /// Judges `cx`.
    fn run(&self, cx: &HookContext) -> Run;

    /// Whether a failure of this check on any stretch of a stream's text is final, so the
    /// stream guard may judge it on a window as the text flows (a banned pattern, a banned
    /// word, PII). Checks that need the whole answer (counts, JSON, a required pattern) say
    /// `false` and run once the stream has ended.
    fn judges_windows(&self) -> bool {
        false
    }

    /// For checks that [judge windows](Self::judges_windows): whether `window` alone shows
    /// a failure. Called on every streamed event, so it must be cheap: no result data.
    fn fails_window(&self, window: &str) -> bool {
        let _ = window;
        false
    }

    /// Whether the check does I/O (answers [`Run::Pending`]).
    fn is_async(&self) -> bool {
        false
    }
}

/// A future a check answers with later.
pub type CheckFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// What [`Check::run`] answers.
pub enum Run {
    /// The outcome, now.
    Done(Outcome),
    /// The outcome, once the I/O is done.
    Pending(CheckFuture),
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Run::Done(o) => f.debug_tuple("Done").field(o).finish(),
            Run::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// What a check found.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Whether the check passed.
    pub verdict: bool,
    /// Details, in the shape Portkey's plugin gives (echoed in `hook_results`).
    pub data: Value,
    /// Why the check could not judge; an erroring check passes unless `failOnError`.
    pub error: Option<CheckError>,
    /// How the check rewrites what it judged.
    pub transform: Option<Transform>,
}

impl Outcome {
    /// A verdict with its data.
    pub fn verdict(verdict: bool, data: Value) -> Self {
        Self {
            verdict,
            data,
            error: None,
            transform: None,
        }
    }

    /// A check that could not judge (verdict false, the error says why).
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            verdict: false,
            data: Value::Null,
            error: Some(CheckError::new(message)),
            transform: None,
        }
    }

    /// Adds data to an outcome.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// Adds a rewrite.
    pub fn with_transform(mut self, transform: Transform) -> Self {
        self.transform = Some(transform);
        self
    }
}

/// Why a check could not judge: Portkey's `{name, message}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// `Check error` for the checks' own errors.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

impl CheckError {
    /// A `Check error` with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            name: "Check error".into(),
            message: message.into(),
        }
    }
}

/// How a check rewrites what it judged.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// New text for each part of [`HookContext::parts`] (same count, same order): the last
    /// message's text parts before the call, the response's text after it.
    Parts(Vec<String>),
    /// Top-level request keys replaced (before the call).
    Request(Map<String, Value>),
    /// The whole request body replaced (a webhook's `transformedData.request.json`).
    RequestBody(Map<String, Value>),
    /// The whole response body replaced (a webhook's `transformedData.response.json`).
    ResponseBody(Value),
}

/// The UTF-16 length of `s`: what JavaScript's `length` counts. Every character but a
/// continuation byte's starts a unit, and a four-byte one (its first byte `0xF0` or above)
/// takes two: counted over the bytes, without decoding characters.
pub(crate) fn utf16_len(s: &str) -> usize {
    s.bytes()
        .map(|b| usize::from(b & 0xC0 != 0x80) + usize::from(b >= 0xF0))
        .sum()
}

/// The first 100 UTF-16 units of `text`, with `...` when cut (Portkey's `textExcerpt`).
pub(crate) fn excerpt(text: &str) -> String {
    const UNITS: usize = 100;
    // A character takes at least as many bytes as UTF-16 units: a text this short is whole.
    if text.len() <= UNITS {
        return text.to_owned();
    }
    // An ASCII start takes a unit a byte: the cut is at the hundredth byte.
    let cut = if text.as_bytes()[..=UNITS].is_ascii() {
        UNITS
    } else {
        let mut units = 0;
        let cut = text.char_indices().find(|&(_, c)| {
            units += c.len_utf16();
            units > UNITS
        });
        match cut {
            Some((i, _)) => i,
            None => return text.to_owned(),
        }
    };
    let mut out = String::with_capacity(cut + 3);
    out.push_str(&text[..cut]);
    out.push_str("...");
    out
}
