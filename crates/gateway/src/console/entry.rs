//! One request as the console shows it: begun when the request arrives (only while a console
//! is connected), finished from the response's facts when its head is ready and from the
//! observer's report when its body ends.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use portcullis_budget::PriceTable;
use portcullis_budget::price::TokenUsage;
use portcullis_core::Body;
use portcullis_core::context::TraceId;
use portcullis_core::facts::{ResponseFacts, Usage};
use portcullis_core::observe::{Observation, Outcome, Report};
use portcullis_guard::pii::PiiScanner;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::Console;

/// Prompts and answers longer than this many characters are cut (Portkey's limit).
const MAX_BODY_CHARS: usize = 100_000;

/// The request body, handed over by the first layer that holds it whole (the slug router),
/// when the console shows bodies.
#[derive(Clone, Debug, Default)]
pub(crate) struct Capture(Arc<OnceLock<Bytes>>);

impl Capture {
    /// Keeps `body` (a reference count, not a copy); the first call wins.
    pub(crate) fn set(&self, body: &Bytes) {
        let _ = self.0.set(body.clone());
    }
}

/// What the console needs from the running config to finish an entry.
#[derive(Clone)]
pub(crate) struct View {
    /// Show prompts, answers and every metadata value.
    pub(crate) log_bodies: bool,
    /// Metadata keys whose values may be shown without `log_bodies`.
    pub(crate) metadata_keys: Arc<[String]>,
    /// Prices, for the cost of a request.
    pub(crate) prices: Arc<PriceTable>,
    /// How many entries a console that opens is shown.
    pub(crate) buffer: usize,
}

/// A request the console is watching.
pub(crate) struct Pending {
    console: Arc<Console>,
    view: View,
    start: Instant,
    time: Duration,
    method: Method,
    path: String,
    metadata: Option<Value>,
    trace: Option<String>,
    capture: Option<Capture>,
}

impl Pending {
    pub(crate) fn begin(
        console: Arc<Console>,
        view: View,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        trace: Option<&TraceId>,
    ) -> (Self, Option<Capture>) {
        let metadata = headers
            .get("x-portkey-metadata")
            .and_then(|v| serde_json::from_slice::<Map<String, Value>>(v.as_bytes()).ok())
            .map(|map| {
                let shown = map
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if view.log_bodies || view.metadata_keys.contains(&k) {
                            v
                        } else {
                            Value::from("<redacted>")
                        };
                        (k, v)
                    })
                    .collect();
                Value::Object(shown)
            });
        let capture = view.log_bodies.then(Capture::default);
        let pending = Self {
            time: console.clock.now(),
            console,
            view,
            start: Instant::now(),
            method: method.clone(),
            path: path.to_owned(),
            metadata,
            trace: trace.map(|t| t.as_str().to_owned()),
            capture: capture.clone(),
        };
        (pending, capture)
    }

    /// Records what the response's head says, and the rest when its body ends.
    pub(crate) fn finish(self, response: &Response<Body>) {
        let facts = ResponseFacts::get(response);
        let provider = facts.and_then(|f| f.provider.as_deref()).map(str::to_owned);
        let mut entry = Entry {
            time: rfc3339(self.time),
            method: self.method.as_str().to_owned(),
            endpoint: self.path,
            status: response.status().as_u16(),
            ttfb: millis(self.start.elapsed()),
            duration: 0.0,
            trace_id: self.trace,
            metadata: self.metadata,
            request_options: [RequestOptions {
                provider: provider.clone(),
            }],
            provider,
            target: None,
            retries: None,
            cache: None,
            guards: None,
            attempts: None,
            request: None,
            stream: None,
            outcome: None,
            finish_reason: None,
            model: None,
            usage: None,
            cost_usd: None,
            response: None,
        };
        if let Some(facts) = facts {
            entry.target = facts.target.map(|t| t.to_string());
            entry.retries = facts.retries.map(|r| r.header_value());
            entry.cache = facts.cache.map(|c| c.as_str());
            entry.guards = Some(
                facts
                    .guards
                    .iter()
                    .map(|g| Guard {
                        id: g.id.to_string(),
                        passed: g.passed,
                        deny: g.deny,
                        explanation: g.explanation.clone(),
                    })
                    .collect(),
            );
            entry.attempts = Some(facts.attempts.with(|records| {
                records
                    .iter()
                    .map(|a| Attempt {
                        target: a.target.to_string(),
                        provider: a.provider.as_deref().map(str::to_owned),
                        outcome: a.outcome.to_string(),
                        ms: millis(a.duration),
                    })
                    .collect()
            }));
        }
        if let Some(body) = self.capture.as_ref().and_then(|c| c.0.get()) {
            entry.request = Some(shown_text(&String::from_utf8_lossy(body)));
        }
        let observation = response.extensions().get::<Observation>().cloned();
        let Self {
            console,
            view,
            start,
            ..
        } = self;
        match observation {
            None => {
                entry.duration = millis(start.elapsed());
                console.publish(&entry, view.buffer);
            }
            Some(observation) => observation.on_report(move |report| {
                entry.add_report(report, &view);
                entry.duration = millis(start.elapsed());
                console.publish(&entry, view.buffer);
            }),
        }
    }
}

/// One request as the console's `log` event carries it (Portkey's `time`, `method`,
/// `endpoint`, `status`, `duration` and `requestOptions`, and ours beside them).
#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    // `id` is put first when it is published.
    time: String,
    method: String,
    endpoint: String,
    status: u16,
    /// Milliseconds to the response head.
    ttfb: f64,
    /// Milliseconds to the end of the body.
    duration: f64,
    trace_id: Option<String>,
    metadata: Option<Value>,
    #[serde(rename = "requestOptions")]
    request_options: [RequestOptions; 1],
    provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guards: Option<Vec<Guard>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<Vec<Attempt>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    /// Present with usage: `null` when the model has no price.
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<String>,
}

#[derive(Debug, Serialize)]
struct RequestOptions {
    provider: Option<String>,
}

#[derive(Debug, Serialize)]
struct Guard {
    id: String,
    passed: bool,
    deny: bool,
    explanation: Option<String>,
}

#[derive(Debug, Serialize)]
struct Attempt {
    target: String,
    provider: Option<String>,
    outcome: String,
    ms: f64,
}

impl Entry {
    fn add_report(&mut self, report: &Report, view: &View) {
        self.stream = Some(report.stream);
        self.outcome = Some(match &report.outcome {
            Outcome::Complete => "complete".to_owned(),
            Outcome::Failed(why) => format!("failed: {why}"),
            Outcome::Cancelled => "cancelled".to_owned(),
        });
        self.finish_reason.clone_from(&report.finish_reason);
        self.model.clone_from(&report.model);
        if let Some(usage) = report.usage {
            self.usage = Some(usage);
            let hit = matches!(self.cache, Some("HIT" | "SEMANTIC HIT"));
            let price = report
                .model
                .as_deref()
                .and_then(|m| view.prices.lookup(self.provider.as_deref(), m));
            self.cost_usd = Some(match price {
                // A cache hit costs nothing.
                _ if hit => Some(0.0),
                Some(price) => {
                    Some(price.cost(&TokenUsage::from_usage(&usage)).micro_usd as f64 / 1e6)
                }
                None => None,
            });
        }
        if view.log_bodies {
            self.response = Some(shown_text(&report.text));
        }
    }
}

/// A prompt or an answer as the console may show it: cut, then with its PII redacted.
fn shown_text(text: &str) -> String {
    let cut = match text.char_indices().nth(MAX_BODY_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    };
    let (mut shown, _) = PiiScanner::all().redact(cut);
    if cut.len() < text.len() {
        shown.push_str("…[truncated]");
    }
    shown
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `2026-12-07T01:02:03.456Z`.
pub(crate) fn rfc3339(unix: Duration) -> String {
    let secs = unix.as_secs();
    let (y, m, d) = portcullis_budget::clock::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_millis(1_796_611_323_456)),
            "2026-12-07T02:42:03.456Z"
        );
    }

    #[test]
    fn shown_text_is_redacted_and_cut() {
        let shown = shown_text("write to jane.doe@example.com please");
        assert!(!shown.contains("jane.doe@example.com"), "{shown}");
        assert!(shown.contains("[EMAIL_1]"), "{shown}");
        let long = "é".repeat(MAX_BODY_CHARS + 5);
        let shown = shown_text(&long);
        assert!(shown.ends_with("…[truncated]"));
        assert_eq!(
            shown.chars().count(),
            MAX_BODY_CHARS + "…[truncated]".chars().count()
        );
    }
}
