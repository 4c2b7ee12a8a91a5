//! The answers hooks give: 446 with `hook_results`, 246 and 200 bodies with `hook_results`,
//! the SSE error event that cuts a stream; and where verdicts are recorded.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use portcullis_core::Body;
use portcullis_core::error::ErrorBody;
use portcullis_core::facts::{GuardResult, ResponseFacts};
use serde_json::{Value, json};

use crate::context::Phase;
use crate::hook::HookResult;

/// Portkey's status for a denying hook that failed.
pub const DENIED: u16 = 446;
/// Portkey's status for a 200 whose hooks failed without denying ("Hooks failed").
pub const HOOKS_FAILED: u16 = 246;

const DENIED_MESSAGE: &str = "The guardrail checks defined in the config failed. You can find more information in the `hook_results` object.";

/// `{"before_request_hooks": […], "after_request_hooks": […]}`.
pub fn hook_results_json(before: &[HookResult], after: &[HookResult]) -> Value {
    json!({
        "before_request_hooks": before.iter().map(HookResult::to_json).collect::<Vec<_>>(),
        "after_request_hooks": after.iter().map(HookResult::to_json).collect::<Vec<_>>(),
    })
}

fn denied_body() -> ErrorBody {
    ErrorBody::new("hooks_failed", DENIED_MESSAGE)
}

/// The 446 answer: an OpenAI error of type `hooks_failed` plus `hook_results`.
pub(crate) fn denied(before: &[HookResult], after: &[HookResult]) -> Response<Body> {
    let mut json: Value = serde_json::from_slice(&denied_body().to_json()).expect("error JSON");
    json["hook_results"] = hook_results_json(before, after);
    let mut response = Response::new(Body::from(serde_json::to_vec(&json).expect("JSON")));
    *response.status_mut() = StatusCode::from_u16(DENIED).expect("446 is a status");
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    record_facts(response.extensions_mut(), before.iter().chain(after));
    response
}

/// The SSE event that ends a stream a hook denied: the 446 error and the results.
pub(crate) fn denied_event(before: &[HookResult], after: &[HookResult]) -> Bytes {
    let mut json: Value = serde_json::from_slice(&denied_body().to_json()).expect("error JSON");
    json["hook_results"] = hook_results_json(before, after);
    sse(&json)
}

/// A `data: {"hook_results": …}` event.
pub(crate) fn results_event(before: &[HookResult], after: &[HookResult]) -> Bytes {
    sse(&json!({"hook_results": hook_results_json(before, after)}))
}

fn sse(json: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    serde_json::to_writer(&mut out, json).expect("JSON");
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// Adds each hook's verdict to the response's facts.
pub(crate) fn record_facts<'a>(
    extensions: &mut http::Extensions,
    results: impl Iterator<Item = &'a HookResult>,
) {
    let facts = extensions.get_or_insert_default::<ResponseFacts>();
    facts.guards.extend(results.map(guard_result));
}

/// A hook's verdict in core's terms.
pub fn guard_result(r: &HookResult) -> GuardResult {
    let failed = r.failed_checks();
    GuardResult {
        id: Arc::clone(&r.id),
        passed: r.verdict,
        deny: r.deny,
        explanation: (!failed.is_empty()).then(|| format!("failed checks: {}", failed.join(", "))),
    }
}

/// Logs and counts each verdict.
pub(crate) fn report(phase: Phase, results: &[HookResult]) {
    for r in results {
        let failed = r.failed_checks();
        tracing::info!(
            target: "portcullis_guard",
            hook = &*r.id,
            phase = phase.as_str(),
            kind = r.kind.as_str(),
            verdict = r.verdict,
            deny = r.deny,
            is_async = r.is_async,
            transformed = r.transformed,
            failed = %failed.join(","),
            execution_ms = r.execution_time,
            "guardrail verdict"
        );
        metrics::counter!(
            "portcullis_guard_verdicts_total",
            "hook" => r.id.to_string(),
            "phase" => phase.as_str(),
            "verdict" => if r.verdict { "pass" } else if r.deny { "deny" } else { "fail" },
        )
        .increment(1);
    }
}
