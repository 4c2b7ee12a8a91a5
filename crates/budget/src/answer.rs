//! The layer's own answers: 402 over a budget, 429 over a rate limit, 503 when the store
//! fails closed, 400 for an unpriced model; and the `x-ratelimit-*` headers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use portcullis_core::Body;
use portcullis_core::error::ErrorBody;
use serde_json::json;

use crate::clock;
use crate::policy::{Measure, RateKind, RateRule};
use crate::store::{Standing, StoreError};

/// The header naming the budgets over their alert threshold.
pub const ALERT_HEADER: HeaderName = HeaderName::from_static("x-portcullis-budget-alert");
/// The header naming the policy of a refusal.
pub const POLICY_HEADER: HeaderName = HeaderName::from_static("x-portcullis-limit-policy");
/// The header naming the scope of a refusal (`api_key=…,metadata._user=…`).
pub const SCOPE_HEADER: HeaderName = HeaderName::from_static("x-portcullis-limit-scope");

/// Why the layer refused a request; also kept in the refusal's response extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A budget has no room for the request's reservation (402).
    Budget {
        /// The policy.
        policy: Arc<str>,
        /// The scope.
        scope: Arc<str>,
        /// Cost or tokens.
        measure: Measure,
        /// The window's name.
        window: String,
        /// The hard limit.
        limit: u64,
        /// What the request would have reserved.
        requested: u64,
        /// Where the budget stands.
        standing: Standing,
        /// When the window resets, unix seconds.
        resets_at: Option<u64>,
    },
    /// A rate rule has no room (429).
    Rate {
        /// The policy.
        policy: Arc<str>,
        /// The scope.
        scope: Arc<str>,
        /// The rule.
        rule: RateRule,
        /// Where the bucket stands.
        standing: Standing,
    },
}

fn amount(measure: Measure, value: u64) -> String {
    match measure {
        Measure::Cost => format!("{:.6} USD", value as f64 / 1e6),
        Measure::Tokens => format!("{value} tokens"),
    }
}

fn scope_text(scope: &str) -> &str {
    if scope.is_empty() {
        "all requests"
    } else {
        scope
    }
}

/// Seconds, rounded up, at least 1.
fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// A duration as OpenAI writes `x-ratelimit-reset-*`: `20ms`, `1s`, `6m0s`, `1h2m3s`.
pub fn reset_text(d: Duration) -> String {
    ResetText::new(d)
        .as_bytes()
        .iter()
        .copied()
        .map(char::from)
        .collect()
}

/// [`reset_text`] written on the stack: every admitted request's rate headers carry one, made
/// without a `String` or the formatting machinery.
struct ResetText {
    /// `u64::MAX` hours and two-digit minutes and seconds fit with room to spare.
    buf: [u8; 40],
    len: usize,
}

impl ResetText {
    fn new(d: Duration) -> Self {
        let mut text = Self {
            buf: [0; 40],
            len: 0,
        };
        if d < Duration::from_secs(1) {
            text.number(d.as_millis() as u64);
            text.push(b"ms");
            return text;
        }
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        if h > 0 {
            text.number(h);
            text.push(b"h");
        }
        if h > 0 || m > 0 {
            text.number(m);
            text.push(b"m");
        }
        text.number(s);
        text.push(b"s");
        text
    }

    fn number(&mut self, mut n: u64) {
        let start = self.len;
        loop {
            self.buf[self.len] = b'0' + (n % 10) as u8;
            self.len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf[start..self.len].reverse();
    }

    fn push(&mut self, unit: &[u8]) {
        self.buf[self.len..self.len + unit.len()].copy_from_slice(unit);
        self.len += unit.len();
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The `x-ratelimit-*` names of requests and of tokens: limit, remaining, reset.
const REQUEST_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKEN_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

pub(crate) fn rate_headers(
    headers: &mut HeaderMap,
    kind: RateKind,
    value: u64,
    standing: &Standing,
) {
    // Names made at compile time, not checked again on every request.
    let [limit, remaining, reset] = match kind {
        RateKind::Requests => REQUEST_HEADERS,
        RateKind::Tokens => TOKEN_HEADERS,
    };
    // The three values share one buffer (two allocations: the bytes and their shared
    // header), not two allocations for each value.
    let mut digits = [0u8; 20];
    let reset_text = ResetText::new(standing.reset_after.unwrap_or_default());
    let mut text = Vec::with_capacity(64);
    text.extend_from_slice(portcullis_core::digits::decimal(value, &mut digits).as_bytes());
    let limit_end = text.len();
    text.extend_from_slice(
        portcullis_core::digits::decimal(standing.remaining, &mut digits).as_bytes(),
    );
    let remaining_end = text.len();
    text.extend_from_slice(reset_text.as_bytes());
    let text = Bytes::from(text);
    let piece = |range: std::ops::Range<usize>| {
        HeaderValue::from_maybe_shared(text.slice(range)).expect("digits and units")
    };
    headers.insert(limit, piece(0..limit_end));
    headers.insert(remaining, piece(limit_end..remaining_end));
    headers.insert(reset, piece(remaining_end..text.len()));
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn name_headers(headers: &mut HeaderMap, policy: &str, scope: &str) {
    if let Ok(v) = HeaderValue::from_str(policy) {
        headers.insert(POLICY_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(scope) {
        headers.insert(SCOPE_HEADER, v);
    }
}

impl Refusal {
    /// The message for the client.
    pub fn message(&self) -> String {
        match self {
            Refusal::Budget {
                policy,
                scope,
                measure,
                window,
                limit,
                requested,
                standing,
                resets_at,
            } => {
                let resets = resets_at.map_or_else(
                    || "it does not reset".to_owned(),
                    |at| format!("it resets at {}", clock::format_utc(at)),
                );
                format!(
                    "budget '{policy}' ({window}) exceeded for {}: {} spent and {} reserved of {}, \
                     this request needs up to {}; {resets}",
                    scope_text(scope),
                    amount(*measure, standing.used),
                    amount(*measure, standing.reserved),
                    amount(*measure, *limit),
                    amount(*measure, *requested),
                )
            }
            Refusal::Rate {
                policy,
                scope,
                rule,
                standing,
            } => format!(
                "rate limit '{policy}' ({} {} {}) reached for {}; retry in {}",
                rule.value(),
                rule.kind().as_str(),
                match rule.unit() {
                    crate::policy::RateUnit::Minute => "a minute",
                    crate::policy::RateUnit::Hour => "an hour",
                    crate::policy::RateUnit::Day => "a day",
                },
                scope_text(scope),
                reset_text(standing.retry_after.unwrap_or_default()),
            ),
        }
    }

    /// The HTTP answer: 402 `budget_exceeded` or 429 `rate_limit_error`, an OpenAI-style
    /// body with a `limit` object beside the usual fields, and the headers.
    pub fn into_response(self) -> Response<Body> {
        let message = self.message();
        let mut response = match &self {
            Refusal::Budget {
                policy,
                scope,
                measure,
                window,
                limit,
                standing,
                resets_at,
                requested,
            } => {
                let body = json!({"error": {
                    "message": message,
                    "type": "budget_exceeded",
                    "param": &**policy,
                    "code": "budget_exceeded",
                    "limit": {
                        "policy": &**policy,
                        "scope": &**scope,
                        "type": match measure { Measure::Cost => "cost", Measure::Tokens => "tokens" },
                        "unit": match measure { Measure::Cost => "micro_usd", Measure::Tokens => "tokens" },
                        "window": window,
                        "credit_limit": limit,
                        "used": standing.used,
                        "reserved": standing.reserved,
                        "requested": requested,
                        "resets_at": resets_at.map(clock::format_utc),
                    }
                }});
                let mut response = json_response(StatusCode::PAYMENT_REQUIRED, body);
                name_headers(response.headers_mut(), policy, scope);
                if let Some(wait) = standing.retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(whole_secs(wait)));
                }
                response
            }
            Refusal::Rate {
                policy,
                scope,
                rule,
                standing,
            } => {
                let wait = standing.retry_after.unwrap_or(Duration::from_secs(1));
                let body = json!({"error": {
                    "message": message,
                    "type": "rate_limit_error",
                    "param": &**policy,
                    "code": "rate_limit_exceeded",
                    "limit": {
                        "policy": &**policy,
                        "scope": &**scope,
                        "type": rule.kind().as_str(),
                        "unit": rule.unit().as_str(),
                        "value": rule.value(),
                        "remaining": standing.remaining,
                        "retry_after_ms": wait.as_millis() as u64,
                    }
                }});
                let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, body);
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_secs(wait)));
                rate_headers(headers, rule.kind(), rule.value(), standing);
                name_headers(headers, policy, scope);
                response
            }
        };
        response.extensions_mut().insert(self);
        response
    }
}

pub(crate) fn store_unavailable(error: &StoreError) -> Response<Body> {
    let body = ErrorBody::new(
        "service_unavailable",
        format!("limits cannot be checked now ({error}); try again shortly"),
    )
    .code("limit_store_unavailable");
    let mut response = portcullis_core::error::response(StatusCode::SERVICE_UNAVAILABLE, body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    response
}

pub(crate) fn unpriced(model: &str, policy: &str) -> Response<Body> {
    let body = ErrorBody::new(
        "invalid_request_error",
        format!(
            "model '{model}' has no price, and the cost budget '{policy}' applies to this \
             request; ask the operator to price it"
        ),
    )
    .param("model")
    .code("model_not_priced");
    portcullis_core::error::response(StatusCode::BAD_REQUEST, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first version, with the formatting machinery.
    fn formatted(d: Duration) -> String {
        if d < Duration::from_secs(1) {
            return format!("{}ms", d.as_millis());
        }
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        match (h, m) {
            (0, 0) => format!("{s}s"),
            (0, _) => format!("{m}m{s}s"),
            _ => format!("{h}h{m}m{s}s"),
        }
    }

    proptest::proptest! {
        #[test]
        fn reset_text_is_written_as_it_was_formatted(
            secs in proptest::prop_oneof![0u64..5, 0u64..200_000, 0..u64::MAX / 2],
            nanos in proptest::prop_oneof![0u32..1, 0u32..1_000_000_000],
        ) {
            let d = Duration::new(secs, nanos);
            proptest::prop_assert_eq!(reset_text(d), formatted(d));
        }
    }

    #[test]
    fn rate_headers_are_named_and_written_as_before() {
        let standing = Standing {
            remaining: 7,
            reset_after: Some(Duration::from_millis(61_500)),
            ..Standing::default()
        };
        for (kind, unit) in [
            (RateKind::Requests, "requests"),
            (RateKind::Tokens, "tokens"),
        ] {
            let mut headers = HeaderMap::new();
            rate_headers(&mut headers, kind, 100, &standing);
            assert_eq!(headers.len(), 3);
            assert_eq!(headers[format!("x-ratelimit-limit-{unit}")], "100");
            assert_eq!(headers[format!("x-ratelimit-remaining-{unit}")], "7");
            assert_eq!(headers[format!("x-ratelimit-reset-{unit}")], "1m2s");
        }
        // The longest values: twenty digits each, and a reset in hours.
        let standing = Standing {
            remaining: u64::MAX,
            reset_after: Some(Duration::from_secs(u64::MAX)),
            ..Standing::default()
        };
        let mut headers = HeaderMap::new();
        rate_headers(&mut headers, RateKind::Tokens, u64::MAX, &standing);
        assert_eq!(headers["x-ratelimit-limit-tokens"], u64::MAX.to_string());
        assert_eq!(
            headers["x-ratelimit-remaining-tokens"],
            u64::MAX.to_string()
        );
        assert_eq!(
            headers["x-ratelimit-reset-tokens"],
            reset_text(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn reset_text_reads_like_openai() {
        assert_eq!(reset_text(Duration::from_millis(20)), "20ms");
        assert_eq!(reset_text(Duration::from_secs(1)), "1s");
        assert_eq!(reset_text(Duration::from_millis(1500)), "2s");
        assert_eq!(reset_text(Duration::from_secs(360)), "6m0s");
        assert_eq!(reset_text(Duration::from_secs(3723)), "1h2m3s");
    }
}
