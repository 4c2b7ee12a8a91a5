//! The request span (OpenTelemetry GenAI attributes) and the metrics of one request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use http::{Request, Response, StatusCode, header};
use portcullis_core::attempts::Attempts;
use portcullis_core::context::{AttemptBudget, Caller, Metadata, TraceId};
use portcullis_core::error::to_http_error;
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_core::observe::{Observation, Outcome, Report};
use portcullis_core::{Body, BoxError};
use tokio::time::Instant;
use tracing::Span;
use tracing::field::{Empty, Field, FieldSet, Value};

use crate::body::FirstFrame;
use crate::layer::Shared;
use crate::meter::{RequestLabels, Series, is_fallback};
use crate::service::is_event_stream;
use crate::trace::Traceparent;

/// The span's target: filter on it to keep or drop the request spans.
pub const SPAN_TARGET: &str = "portcullis_tag";

/// Whether request spans record their results ([`record_span_results`]).
static SPAN_RESULTS: AtomicBool = AtomicBool::new(true);

/// Whether request spans record their results: everything recorded after a span opens
/// (`otel.name`, status, provider, target, usage, model, finish reasons, attempts, guards,
/// cache status, errors, metadata, API key name). On by default, for an OpenTelemetry
/// exporter or any layer that reads spans. A process whose only reader of spans is a text log
/// that shows them as the context of the events inside a request (the gateway binary without
/// `server.otlp_endpoint`) turns it off: the span keeps its opening fields (operation, model,
/// address, trace id) for that context, at a tenth of the cost.
///
/// A process-wide switch rather than a probe of the subscriber (`tracing::enabled!` on a
/// target of its own): with per-layer filters, a probe that a filter refuses leaves that
/// refusal in tracing-subscriber's thread-local filter state, and the next event on the
/// thread whose callsite skips the check is dropped (tokio-rs/tracing#2519): the gateway
/// lost a log line that way.
pub fn record_span_results(on: bool) {
    SPAN_RESULTS.store(on, Ordering::Relaxed);
}

/// Whether `span`'s results are recorded (see [`record_span_results`]).
pub(crate) fn records_results(span: &Span) -> bool {
    !span.is_disabled() && SPAN_RESULTS.load(Ordering::Relaxed)
}

/// The GenAI operation of an endpoint path.
fn operation(path: &str) -> &'static str {
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions")
        || path.ends_with("/messages")
        || path.ends_with("/responses")
    {
        "chat"
    } else if path.ends_with("/completions") {
        "text_completion"
    } else if path.ends_with("/embeddings") {
        "embeddings"
    } else {
        "generate_content"
    }
}

/// The host the client addressed, without the port.
fn server_address<B>(req: &Request<B>) -> Option<&str> {
    let host = req.uri().host().or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })?;
    // `[::1]:8080`, `example.com:8080`, `example.com`
    let host = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.split(':').next().unwrap_or(host),
    };
    (!host.is_empty()).then_some(host)
}

/// Opens the span of a request, bound to its trace (see the `otlp` module, with the `otlp`
/// feature); it is entered while the inner service works and closed once the response body
/// has reported (or at the response head when nothing observes the body).
pub(crate) fn request_span<B>(
    req: &Request<B>,
    model: Option<&str>,
    trace: &TraceId,
    parent: Option<&Traceparent>,
) -> Span {
    let op = operation(req.uri().path());
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "gen_ai.request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        gen_ai.operation.name = op,
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.provider.name = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.response.finish_reasons = Empty,
        error.type = Empty,
        server.address = server_address(req),
        http.response.status_code = Empty,
        portcullis.trace_id = trace.as_str(),
        portcullis.target = Empty,
        portcullis.cache_status = Empty,
        portcullis.guards = Empty,
        portcullis.attempt_count = Empty,
        portcullis.attempts = Empty,
        portcullis.api_key = Empty,
        portcullis.metadata = Empty,
    );
    if records_results(&span) {
        // Semantic conventions: "{gen_ai.operation.name} {gen_ai.request.model}".
        match model {
            Some(model) => {
                let mut name = String::with_capacity(op.len() + 1 + model.len());
                name.push_str(op);
                name.push(' ');
                name.push_str(model);
                span.record("otel.name", name)
            }
            None => span.record("otel.name", op),
        };
    }
    #[cfg(feature = "otlp")]
    if !span.is_disabled() {
        crate::otlp::bind(&span, trace, parent);
    }
    #[cfg(not(feature = "otlp"))]
    let _ = parent;
    span
}

/// Guard verdicts as a span shows them: `id:pass`, `id:fail` or `id:deny`, comma-separated.
fn guard_verdicts(guards: &[portcullis_core::facts::GuardResult]) -> String {
    let mut out = String::new();
    for g in guards {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&g.id);
        out.push_str(match (g.passed, g.deny) {
            (true, _) => ":pass",
            (false, false) => ":fail",
            (false, true) => ":deny",
        });
    }
    out
}

/// The request span's fields recorded once it is open, found once.
///
/// `Span::record` looks its field up by name in the span's field set and dispatches to every
/// layer, per field; a response records up to eleven. With the fields at hand, the ones known
/// together go in one `record_all`: one dispatch, and one append to the text log layer's
/// formatted fields, which read exactly as the one-by-one records did.
struct LateFields {
    set: &'static FieldSet,
    status_code: Field,
    provider: Field,
    target: Field,
    cache_status: Field,
    guards: Field,
    attempt_count: Field,
    attempts: Field,
    response_model: Field,
    input_tokens: Field,
    output_tokens: Field,
    finish_reasons: Field,
}

static LATE_FIELDS: OnceLock<Option<LateFields>> = OnceLock::new();

impl LateFields {
    /// The fields of `span`, a request span from [`request_span`]; `None` when it is disabled
    /// (nothing records it).
    fn of(span: &Span) -> Option<&'static LateFields> {
        let metadata = span.metadata()?;
        let late = LATE_FIELDS
            .get_or_init(|| Self::find(metadata.fields()))
            .as_ref()?;
        // Every request span comes from the one callsite in `request_span`.
        debug_assert!(late.status_code.callsite() == metadata.callsite());
        Some(late)
    }

    fn find(set: &'static FieldSet) -> Option<LateFields> {
        let field = |name: &str| set.field(name);
        Some(LateFields {
            set,
            status_code: field("http.response.status_code")?,
            provider: field("gen_ai.provider.name")?,
            target: field("portcullis.target")?,
            cache_status: field("portcullis.cache_status")?,
            guards: field("portcullis.guards")?,
            attempt_count: field("portcullis.attempt_count")?,
            attempts: field("portcullis.attempts")?,
            response_model: field("gen_ai.response.model")?,
            input_tokens: field("gen_ai.usage.input_tokens")?,
            output_tokens: field("gen_ai.usage.output_tokens")?,
            finish_reasons: field("gen_ai.response.finish_reasons")?,
        })
    }
}

/// What a span shows of a metadata value whose key is not allowed in logs.
pub(crate) const REDACTED: &str = "<redacted>";

/// The value of metadata key `key` as spans show it: the value itself only for a key in
/// `allowed`.
pub(crate) fn loggable<'a>(key: &str, value: &'a str, allowed: &[String]) -> &'a str {
    if allowed.iter().any(|k| k == key) {
        value
    } else {
        REDACTED
    }
}

/// Records what the request says about itself: its metadata (values only for keys in
/// `allowed`) and caller.
pub(crate) fn record_request(
    span: &Span,
    metadata: &Metadata,
    caller: &Caller,
    allowed: &[String],
    results: bool,
) {
    if !results {
        return;
    }
    if !metadata.is_empty() {
        span.record("portcullis.metadata", metadata_json(metadata, allowed));
        #[cfg(feature = "otlp")]
        crate::otlp::record_metadata(span, metadata, allowed);
    }
    if let Some(key) = &caller.api_key {
        span.record("portcullis.api_key", &**key);
    }
}

/// The metadata as a JSON object (values only for keys in `allowed`), written directly: what
/// a `serde_json::Map` of the same pairs would serialise to (the keys come sorted from the
/// metadata's map), without a `String` and a `Value` per entry.
fn metadata_json(metadata: &Metadata, allowed: &[String]) -> String {
    let mut json = Vec::with_capacity(16 * metadata.len() + 2);
    json.push(b'{');
    for (i, (key, value)) in metadata.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        push_json_str(&mut json, key);
        json.push(b':');
        push_json_str(&mut json, loggable(key, value, allowed));
    }
    json.push(b'}');
    String::from_utf8(json).expect("JSON of strings is UTF-8")
}

/// `value` as a JSON string, escaped as serde_json escapes it.
fn push_json_str(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("a string serialises to a Vec");
}

/// The attempts of a request whose span is recorded: those of the budget an outer layer gave
/// it (seen even when the request ends in an error), else, later, those its response names.
pub(crate) fn attempts_of<B>(req: &Request<B>, results: bool) -> Option<Attempts> {
    if !results {
        return None;
    }
    req.extensions()
        .get::<AttemptBudget>()
        .map(AttemptBudget::attempts)
}

/// Records the request's upstream attempts: their number and each one, compactly
/// (`targets[0]/a:503:12ms,targets[1]/b:200:20ms`).
fn record_attempts(span: &Span, attempts: &Attempts) {
    let count = attempts.len();
    if count > 0 {
        span.record("portcullis.attempt_count", int(count as u64));
        span.record("portcullis.attempts", tracing::field::display(attempts));
    }
}

/// What one request carries from its call to its end.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    start: Instant,
    span: Span,
    /// Whether the span's results are recorded ([`records_results`]).
    results: bool,
    labels: RequestLabels,
    /// The attempts of an outer budget, when the span is recorded.
    attempts: Option<Attempts>,
}

impl Pending {
    pub(crate) fn new(
        shared: Arc<Shared>,
        start: Instant,
        span: Span,
        results: bool,
        labels: RequestLabels,
        attempts: Option<Attempts>,
    ) -> Self {
        Self {
            shared,
            start,
            span,
            results,
            labels,
            attempts,
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records a response: its head now, its body when the observer reports.
    pub(crate) fn respond(self, response: Response<Body>) -> Response<Body> {
        let status = response.status();
        let facts = ResponseFacts::get(&response);
        let provider = facts.and_then(|f| f.provider.as_deref());
        let target = facts.and_then(|f| f.target);
        let retries = facts.and_then(|f| f.retries);
        let series = self
            .shared
            .meter
            .series(&self.labels, provider, target, status);

        series.requests().increment(1);
        match retries {
            Some(Retries::Made(n)) if n > 0 => series.retries().increment(u64::from(n)),
            Some(Retries::Exhausted) => series.retries_exhausted().increment(1),
            _ => {}
        }
        if is_fallback(target) {
            series.fallbacks().increment(1);
        }
        if let Some(counter) = facts.and_then(|f| f.cache).and_then(|c| series.cache(c)) {
            counter.increment(1);
        }

        let span = self.span;
        let results = self.results;
        if let Some(late) = LateFields::of(&span).filter(|_| results) {
            let status_code = i64::from(status.as_u16());
            let target = target.map(|t| t.to_string());
            let cache = facts.and_then(|f| f.cache).map(|c| c.as_str());
            let guards = facts
                .map(|f| &f.guards)
                .filter(|g| !g.is_empty())
                .map(|g| guard_verdicts(g));
            let attempts = self
                .attempts
                .as_ref()
                .or(facts.map(|f| &f.attempts))
                .filter(|a| !a.is_empty());
            let attempt_count = attempts.map(|a| int(a.len() as u64));
            let attempts = attempts.map(tracing::field::display);
            // One dispatch for the lot, in the order they were recorded one by one.
            span.record_all(&late.set.value_set(&[
                (&late.status_code, Some(&status_code as &dyn Value)),
                (&late.provider, provider.as_ref().map(|v| v as &dyn Value)),
                (&late.target, target.as_ref().map(|v| v as &dyn Value)),
                (&late.cache_status, cache.as_ref().map(|v| v as &dyn Value)),
                (&late.guards, guards.as_ref().map(|v| v as &dyn Value)),
                (
                    &late.attempt_count,
                    attempt_count.as_ref().map(|v| v as &dyn Value),
                ),
                (&late.attempts, attempts.as_ref().map(|v| v as &dyn Value)),
            ]));
        }
        let start = self.start;
        match response.extensions().get::<Observation>().cloned() {
            Some(observation) => {
                let response = if is_event_stream(&response) {
                    let series = series.clone();
                    response.map(|body| Body::boxed(FirstFrame::new(body, start, series)))
                } else {
                    response
                };
                observation.on_report(move |report| {
                    finish_report(span, results, start, &series, status, report);
                });
                response
            }
            None => {
                series.duration().record(start.elapsed().as_secs_f64());
                if results && status.as_u16() >= 400 {
                    record_error(&span, status, status.as_str());
                }
                response
            }
        }
    }

    /// Records an error from the inner service: the answer it will become.
    pub(crate) fn fail(self, err: &BoxError) {
        let answer = to_http_error(err);
        self.error(answer.status(), &answer.body().kind);
    }

    /// Records a request that was dropped before it was answered: status 499 (nginx's "client
    /// closed request"), as no answer was given.
    pub(crate) fn cancelled(self) {
        let status = StatusCode::from_u16(499).expect("499 is a valid status");
        let series = self.shared.meter.series(&self.labels, None, None, status);
        series.requests().increment(1);
        series.duration().record(self.start.elapsed().as_secs_f64());
        if self.results {
            self.span.record("error.type", "cancelled");
            if let Some(attempts) = &self.attempts {
                record_attempts(&self.span, attempts);
            }
        }
    }

    /// Records an answer of the tag layer's own, with its error type.
    pub(crate) fn error(self, status: StatusCode, kind: &str) {
        let series = self.shared.meter.series(&self.labels, None, None, status);
        series.requests().increment(1);
        series.duration().record(self.start.elapsed().as_secs_f64());
        if self.results {
            self.span
                .record("http.response.status_code", i64::from(status.as_u16()));
            record_error(&self.span, status, kind);
            if let Some(attempts) = &self.attempts {
                record_attempts(&self.span, attempts);
            }
        }
    }
}

/// Records `error.type`, and an error status for server errors (a 4xx is the client's
/// doing: OpenTelemetry leaves a server span's status unset for it).
fn record_error(span: &Span, status: StatusCode, kind: &str) {
    span.record("error.type", kind);
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `error.type` of an error body (`{"error":{"type":…}}`), if it has one.
fn error_type(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kind = v.get("error")?.get("type")?.as_str()?;
    Some(kind.to_owned())
}

/// Records the end of a response body, then closes the span.
fn finish_report(
    span: Span,
    results: bool,
    start: Instant,
    series: &Series,
    status: StatusCode,
    report: &Report,
) {
    series.duration().record(start.elapsed().as_secs_f64());
    if let Some(usage) = report.usage {
        series.input_tokens().increment(usage.prompt_tokens);
        series.output_tokens().increment(usage.completion_tokens);
    }
    let Some(late) = LateFields::of(&span).filter(|_| results) else {
        return;
    };
    let model = report.model.as_deref();
    // As i64: OpenTelemetry has no unsigned integers (a u64 would be exported as text).
    let input = report.usage.map(|u| int(u.prompt_tokens));
    let output = report.usage.map(|u| int(u.completion_tokens));
    // A JSON array of one string, written directly.
    let reasons = report.finish_reason.as_deref().map(|reason| {
        let mut reasons = Vec::with_capacity(reason.len() + 4);
        reasons.push(b'[');
        push_json_str(&mut reasons, reason);
        reasons.push(b']');
        String::from_utf8(reasons).expect("JSON of strings is UTF-8")
    });
    if model.is_some() || input.is_some() || reasons.is_some() {
        span.record_all(&late.set.value_set(&[
            (
                &late.response_model,
                model.as_ref().map(|v| v as &dyn Value),
            ),
            (&late.input_tokens, input.as_ref().map(|v| v as &dyn Value)),
            (
                &late.output_tokens,
                output.as_ref().map(|v| v as &dyn Value),
            ),
            (
                &late.finish_reasons,
                reasons.as_ref().map(|v| v as &dyn Value),
            ),
        ]));
    }
    if status.as_u16() >= 400 {
        let kind = report.body.as_deref().and_then(error_type);
        record_error(&span, status, kind.as_deref().unwrap_or(status.as_str()));
    } else {
        match &report.outcome {
            Outcome::Complete => {}
            Outcome::Failed(_) => {
                span.record("error.type", "stream_failed");
                span.record("otel.status_code", "ERROR");
            }
            Outcome::Cancelled => {
                span.record("error.type", "cancelled");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_follow_the_path() {
        assert_eq!(operation("/v1/chat/completions"), "chat");
        assert_eq!(operation("/v1/completions"), "text_completion");
        assert_eq!(operation("/openai/v1/embeddings/"), "embeddings");
        assert_eq!(operation("/v1/messages"), "chat");
        assert_eq!(operation("/v1/images/generations"), "generate_content");
    }

    #[test]
    fn server_address_drops_the_port() {
        let req = |host: &str| Request::get("/").header("host", host).body(()).unwrap();
        assert_eq!(server_address(&req("gw.example:8080")), Some("gw.example"));
        assert_eq!(server_address(&req("[::1]:8080")), Some("::1"));
        assert_eq!(server_address(&req("gw.example")), Some("gw.example"));
        let absolute = Request::get("http://api.example/v1").body(()).unwrap();
        assert_eq!(server_address(&absolute), Some("api.example"));
    }

    #[test]
    fn metadata_json_is_what_serde_json_writes() {
        let metadata = Metadata::new(
            [
                ("plan", "paid"),
                ("team", "a\"b\\c\u{1}é"),
                ("_user", "u-1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let allowed = ["plan".to_owned(), "team".to_owned()];
        let map: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_owned(), loggable(k, v, &allowed).into()))
            .collect();
        assert_eq!(
            metadata_json(&metadata, &allowed),
            serde_json::Value::Object(map).to_string()
        );
        assert!(metadata_json(&metadata, &allowed).contains(REDACTED));
        let mut reasons = Vec::new();
        push_json_str(&mut reasons, "sto\"p");
        assert_eq!(reasons, br#""sto\"p""#);
    }

    #[test]
    fn error_types_come_from_openai_bodies() {
        assert_eq!(
            error_type(br#"{"error":{"type":"rate_limit_error","message":"x"}}"#).as_deref(),
            Some("rate_limit_error")
        );
        assert_eq!(error_type(b"not json"), None);
    }
}
