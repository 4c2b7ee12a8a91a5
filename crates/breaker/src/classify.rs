//! What counts as a failure: [`Classify`], its default [`DefaultClassifier`], and the
//! upstream's `Retry-After`.

use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode, header};
use portcullis_core::BoxError;
use portcullis_core::error::{
    AttemptsExhausted, BodyTooLarge, BudgetExceeded, GuardDenied, HttpError, InvalidRequest,
    RateLimited, Unavailable,
};

/// What one call tells about the health of its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The target answered: counts as a success (and closes a half-open circuit).
    Success,
    /// The target failed: counts towards opening the circuit (and re-opens a half-open one).
    Failure,
    /// Says nothing about the target (a refusal made before reaching it, a cancelled call):
    /// not counted; a probe that ends so frees its place for another.
    Ignored,
}

/// Decides whether a response or an error is a failure of the target.
///
/// Implement it for a type, or pass a closure `Fn(StatusCode) -> bool` (true: a failure),
/// which classifies responses by status and errors like [`DefaultClassifier`].
///
/// ```
/// use http::StatusCode;
/// use portcullis_breaker::{Classify, Outcome};
///
/// // Portkey's default: only statuses above 500 are failures.
/// let above_500 = |status: StatusCode| status.as_u16() > 500;
/// assert_eq!(above_500.classify_response(StatusCode::BAD_GATEWAY, &Default::default()), Outcome::Failure);
/// assert_eq!(above_500.classify_response(StatusCode::INTERNAL_SERVER_ERROR, &Default::default()), Outcome::Success);
/// ```
pub trait Classify: Send + Sync + 'static {
    /// Classifies a response by its status and headers.
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome;

    /// Classifies an error of the inner service; by default as [`DefaultClassifier`] does.
    fn classify_error(&self, error: &BoxError) -> Outcome {
        DefaultClassifier.classify_error(error)
    }
}

/// The default classifier.
///
/// - Responses: `429` and every `5xx` are failures; anything else (2xx, 3xx, other 4xx: the
///   upstream answered, the client was at fault) is a success. A streamed 2xx is judged by
///   its status alone; the body is not awaited.
/// - Errors: transport failures and timeouts are failures. [`Unavailable`] (an inner circuit
///   or balancer with nothing to offer) and the refusals Portcullis layers make before
///   reaching any upstream ([`InvalidRequest`], [`BodyTooLarge`], [`RateLimited`],
///   [`BudgetExceeded`], [`GuardDenied`], [`AttemptsExhausted`]) are ignored. An [`HttpError`] is judged by its
///   status: a failure status fails, anything else is ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl DefaultClassifier {
    fn failing(status: StatusCode) -> bool {
        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
    }
}

impl Classify for DefaultClassifier {
    fn classify_response(&self, status: StatusCode, _headers: &HeaderMap) -> Outcome {
        if Self::failing(status) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    fn classify_error(&self, error: &BoxError) -> Outcome {
        if let Some(e) = error.downcast_ref::<HttpError>() {
            return if Self::failing(e.status()) {
                Outcome::Failure
            } else {
                Outcome::Ignored
            };
        }
        let local = error.is::<Unavailable>()
            || error.is::<InvalidRequest>()
            || error.is::<BodyTooLarge>()
            || error.is::<RateLimited>()
            || error.is::<BudgetExceeded>()
            || error.is::<GuardDenied>()
            || error.is::<AttemptsExhausted>();
        if local {
            Outcome::Ignored
        } else {
            Outcome::Failure
        }
    }
}

impl<F> Classify for F
where
    F: Fn(StatusCode) -> bool + Send + Sync + 'static,
{
    fn classify_response(&self, status: StatusCode, _headers: &HeaderMap) -> Outcome {
        if self(status) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

/// The wait an upstream asked for: `retry-after-ms` or `x-ms-retry-after-ms` (milliseconds),
/// else `retry-after` in seconds (fractions accepted). The HTTP-date form is not read.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    static MS: [HeaderName; 2] = [
        HeaderName::from_static("retry-after-ms"),
        HeaderName::from_static("x-ms-retry-after-ms"),
    ];
    for name in &MS {
        if let Some(wait) = headers.get(name).and_then(|v| seconds(v.as_bytes(), 1e-3)) {
            return Some(wait);
        }
    }
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| seconds(v.as_bytes(), 1.0))
}

/// A non-negative number of `unit` seconds, as a duration (absurd values are clamped).
fn seconds(value: &[u8], unit: f64) -> Option<Duration> {
    let n: f64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    // About 31 years: far past any cap, and never a panic in from_secs_f64.
    Some(Duration::from_secs_f64((n * unit).min(1e9)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::error::{UpstreamError, UpstreamErrorKind};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn statuses() {
        let c = DefaultClassifier;
        let h = HeaderMap::new();
        for (status, outcome) in [
            (200, Outcome::Success),
            (400, Outcome::Success),
            (404, Outcome::Success),
            (429, Outcome::Failure),
            (500, Outcome::Failure),
            (503, Outcome::Failure),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(c.classify_response(status, &h), outcome, "{status}");
        }
    }

    #[test]
    fn errors() {
        let c = DefaultClassifier;
        let transport: BoxError = UpstreamError::new(UpstreamErrorKind::Connect, "refused").into();
        assert_eq!(c.classify_error(&transport), Outcome::Failure);
        let other: BoxError = "boom".into();
        assert_eq!(c.classify_error(&other), Outcome::Failure);
        let open: BoxError = Unavailable {
            message: "circuit open".into(),
            retry_after: None,
        }
        .into();
        assert_eq!(c.classify_error(&open), Outcome::Ignored);
        let denied: BoxError = GuardDenied {
            message: "no".into(),
        }
        .into();
        assert_eq!(c.classify_error(&denied), Outcome::Ignored);
        // Nothing was sent to the target: it says nothing about its health.
        let spent: BoxError = AttemptsExhausted { limit: 10 }.into();
        assert_eq!(c.classify_error(&spent), Outcome::Ignored);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1.5")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2"), ("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            None
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
