//! What counts as a failure: [`Classify`] and its default [`DefaultClassifier`].

use http::{HeaderMap, StatusCode};
use portcullis_core::BoxError;
use portcullis_core::error::ErrorClass;
#[cfg(doc)]
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
        match ErrorClass::of(error) {
            ErrorClass::Answer(status) if Self::failing(status) => Outcome::Failure,
            ErrorClass::Failure => Outcome::Failure,
            // Nothing reached the target, or its answer was not a failure.
            ErrorClass::Answer(_)
            | ErrorClass::Refused(_)
            | ErrorClass::Unavailable
            | ErrorClass::AttemptsExhausted => Outcome::Ignored,
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

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::error::{
        AttemptsExhausted, GuardDenied, Unavailable, UpstreamError, UpstreamErrorKind,
    };

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
}
