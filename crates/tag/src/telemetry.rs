//! The request span (OpenTelemetry GenAI attributes) and the metrics of one request.

use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use portcullis_core::attempts::Attempts;
use portcullis_core::context::{AttemptBudget, Caller, Metadata, TraceId};
use portcullis_core::error::to_http_error;
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_core::observe::{Observation, Outcome, Report};
use portcullis_core::{Body, BoxError};
use tokio::time::Instant;
use tracing::Span;
use tracing::field::Empty;

use crate::body::FirstFrame;
use crate::layer::Shared;
use crate::meter::{RequestLabels, Series, is_fallback};
use crate::service::is_event_stream;
use crate::trace::Traceparent;

/// The span's target: filter on it to keep or drop the request spans.
pub const SPAN_TARGET: &str = "portcullis_tag";

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
    if !span.is_disabled() {
        // Semantic conventions: "{gen_ai.operation.name} {gen_ai.request.model}".
        match model {
            Some(model) => span.record("otel.name", format!("{op} {model}")),
            None => span.record("otel.name", op),
        };
        #[cfg(feature = "otlp")]
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
) {
    if span.is_disabled() {
        return;
    }
    if !metadata.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_owned(), loggable(k, v, allowed).into()))
            .collect();
        span.record(
            "portcullis.metadata",
            serde_json::Value::Object(map).to_string(),
        );
        #[cfg(feature = "otlp")]
        crate::otlp::record_metadata(span, metadata, allowed);
    }
    if let Some(key) = &caller.api_key {
        span.record("portcullis.api_key", &**key);
    }
}

/// The attempts of a request whose span is recorded: those of the budget an outer layer gave
/// it (seen even when the request ends in an error), else, later, those its response names.
pub(crate) fn attempts_of<B>(req: &Request<B>, span: &Span) -> Option<Attempts> {
    if span.is_disabled() {
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
    labels: RequestLabels,
    /// The attempts of an outer budget, when the span is recorded.
    attempts: Option<Attempts>,
}

impl Pending {
    pub(crate) fn new(
        shared: Arc<Shared>,
        start: Instant,
        span: Span,
        labels: RequestLabels,
        attempts: Option<Attempts>,
    ) -> Self {
        Self {
            shared,
            start,
            span,
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
        if !span.is_disabled() {
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if let Some(provider) = provider {
                span.record("gen_ai.provider.name", provider);
            }
            if let Some(target) = target {
                span.record("portcullis.target", target.to_string());
            }
            if let Some(cache) = facts.and_then(|f| f.cache) {
                span.record("portcullis.cache_status", cache.as_str());
            }
            if let Some(guards) = facts.map(|f| &f.guards).filter(|g| !g.is_empty()) {
                span.record("portcullis.guards", guard_verdicts(guards));
            }
            match &self.attempts {
                Some(attempts) => record_attempts(&span, attempts),
                None => {
                    if let Some(facts) = facts {
                        record_attempts(&span, &facts.attempts);
                    }
                }
            }
        }
        let start = self.start;
        match response.extensions().get::<Observation>().cloned() {
            Some(observation) => {
                let response = if is_event_stream(&response) {
                    let series = series.clone();
                    response.map(|body| Body::new(FirstFrame::new(body, start, series)))
                } else {
                    response
                };
                observation.on_report(move |report| {
                    finish_report(span, start, &series, status, report);
                });
                response
            }
            None => {
                series.duration().record(start.elapsed().as_secs_f64());
                if status.as_u16() >= 400 {
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
        if !self.span.is_disabled() {
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
        if !self.span.is_disabled() {
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
fn finish_report(span: Span, start: Instant, series: &Series, status: StatusCode, report: &Report) {
    series.duration().record(start.elapsed().as_secs_f64());
    if let Some(usage) = report.usage {
        series.input_tokens().increment(usage.prompt_tokens);
        series.output_tokens().increment(usage.completion_tokens);
    }
    if span.is_disabled() {
        return;
    }
    if let Some(model) = &report.model {
        span.record("gen_ai.response.model", model.as_str());
    }
    if let Some(usage) = report.usage {
        // As i64: OpenTelemetry has no unsigned integers (a u64 would be exported as text).
        span.record("gen_ai.usage.input_tokens", int(usage.prompt_tokens));
        span.record("gen_ai.usage.output_tokens", int(usage.completion_tokens));
    }
    if let Some(reason) = &report.finish_reason {
        span.record(
            "gen_ai.response.finish_reasons",
            serde_json::Value::from(vec![reason.as_str()]).to_string(),
        );
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
    fn error_types_come_from_openai_bodies() {
        assert_eq!(
            error_type(br#"{"error":{"type":"rate_limit_error","message":"x"}}"#).as_deref(),
            Some("rate_limit_error")
        );
        assert_eq!(error_type(b"not json"), None);
    }
}
