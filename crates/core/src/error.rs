//! OpenAI-style error bodies, the typed errors layers raise, and their HTTP mapping.
//!
//! Every refusal and every failure a client sees has the body OpenAI clients parse:
//! `{"error":{"message":…,"type":…,"param":…,"code":…}}`. Inside a stack, transport failures
//! travel as [`BoxError`] holding one of the small types below; [`error_response`] turns any of
//! them into the response with the right status (unknown errors become 500).
//!
//! ```
//! use portcullis_core::error::{error_response, UpstreamTimeout, TimeoutPhase};
//! use std::time::Duration;
//!
//! let err: portcullis_core::BoxError =
//!     UpstreamTimeout::new(TimeoutPhase::Response, Duration::from_secs(30)).into();
//! let response = error_response(&err);
//! assert_eq!(response.status(), 504);
//! ```

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::{Body, BoxError};

/// The `error` object of an OpenAI-style error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// Human-readable message.
    pub message: String,
    /// Error class, e.g. `invalid_request_error`, `timeout_error`, `upstream_error`.
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A machine-readable code, e.g. `request_too_large`.
    pub code: Option<Cow<'static, str>>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a ErrorBody,
}

impl ErrorBody {
    /// An error body of class `kind` with `message`.
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: kind.into(),
            param: None,
            code: None,
        }
    }

    /// Sets the code.
    pub fn code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the param.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The full JSON document, `{"error":{…}}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope { error: self }).expect("error body serialises")
    }

    /// The full JSON document as one Server-Sent Event, `data: {"error":{…}}` and a blank
    /// line: how a stream that cannot go on tells OpenAI's clients why, before it ends.
    pub fn to_sse_event(&self) -> bytes::Bytes {
        let json = self.to_json();
        let mut event = Vec::with_capacity(json.len() + 8);
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(&json);
        event.extend_from_slice(b"\n\n");
        event.into()
    }
}

/// An error that already knows its HTTP answer: status, OpenAI-style body and, for 429/503,
/// how long to wait. Layers outside core return it (boxed) for outcomes that have an HTTP
/// meaning of their own.
#[derive(Clone, Debug)]
pub struct HttpError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<Duration>,
}

impl HttpError {
    /// An error answered with `status` and `body`.
    pub fn new(status: StatusCode, body: ErrorBody) -> Self {
        Self {
            status,
            body,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` to the answer (rounded up to whole seconds).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The status of the answer.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error body of the answer.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }

    /// The wait advertised in `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The HTTP response for this error.
    pub fn to_response(&self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.body.to_json()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.body.message, self.status)
    }
}

impl StdError for HttpError {}

/// Builds an error response: `status` with an OpenAI-style body.
pub fn response(status: StatusCode, body: ErrorBody) -> Response<Body> {
    HttpError::new(status, body).to_response()
}

macro_rules! typed_errors {
    ($($ty:ty),* $(,)?) => {
        /// The HTTP answer for an error raised inside a stack.
        ///
        /// Recognises [`HttpError`] and every typed error of this module; anything else is a
        /// 500 `internal_error` whose message is the error's display text.
        pub fn error_response(err: &BoxError) -> Response<Body> {
            to_http_error(err).to_response()
        }

        /// The [`HttpError`] for an error raised inside a stack (see [`error_response`]).
        pub fn to_http_error(err: &BoxError) -> HttpError {
            if let Some(e) = err.downcast_ref::<HttpError>() {
                return e.clone();
            }
            $(
                if let Some(e) = err.downcast_ref::<$ty>() {
                    return HttpError::from(e);
                }
            )*
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorBody::new("internal_error", err.to_string()).code("internal_error"),
            )
        }
    };
}

typed_errors!(
    BodyTooLarge,
    InvalidRequest,
    RequestTimeout,
    UpstreamTimeout,
    UpstreamError,
    RateLimited,
    Unavailable,
    BudgetExceeded,
    GuardDenied,
    AttemptsExhausted,
);

/// What an error raised inside a stack says about the target it came from: the one list of
/// Portcullis's own refusals, read by retry, fallback and the circuit breaker alike.
///
/// ```
/// use portcullis_core::BoxError;
/// use portcullis_core::error::{AttemptsExhausted, ErrorClass, GuardDenied};
///
/// let denied: BoxError = GuardDenied { message: "no".into() }.into();
/// assert_eq!(ErrorClass::of(&denied), ErrorClass::Refused(http::StatusCode::from_u16(446).unwrap()));
/// let spent: BoxError = AttemptsExhausted { limit: 3 }.into();
/// assert_eq!(ErrorClass::of(&spent), ErrorClass::AttemptsExhausted);
/// let other: BoxError = "connection reset".into();
/// assert_eq!(ErrorClass::of(&other), ErrorClass::Failure);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// An [`HttpError`]: an HTTP answer carried as an error, judged by its status.
    Answer(StatusCode),
    /// A refusal a Portcullis layer made before reaching any target, with its status:
    /// [`InvalidRequest`] 400, [`BudgetExceeded`] 402, [`BodyTooLarge`] 413, [`RateLimited`]
    /// 429, [`GuardDenied`] 446. It says nothing about the target's health.
    Refused(StatusCode),
    /// [`Unavailable`]: an inner circuit or balancer had no target to offer.
    Unavailable,
    /// [`AttemptsExhausted`]: the request's whole budget of upstream attempts is spent, so any
    /// other try would be refused too. Final.
    AttemptsExhausted,
    /// Anything else (a transport failure, a timeout, an error of unknown type): the target
    /// failed.
    Failure,
}

impl ErrorClass {
    /// Classifies `err` by its type (a few downcasts, no allocation).
    pub fn of(err: &BoxError) -> Self {
        if let Some(e) = err.downcast_ref::<HttpError>() {
            return Self::Answer(e.status());
        }
        let refused = if err.is::<InvalidRequest>() {
            StatusCode::BAD_REQUEST
        } else if err.is::<BudgetExceeded>() {
            StatusCode::PAYMENT_REQUIRED
        } else if err.is::<BodyTooLarge>() {
            StatusCode::PAYLOAD_TOO_LARGE
        } else if err.is::<RateLimited>() {
            StatusCode::TOO_MANY_REQUESTS
        } else if err.is::<GuardDenied>() {
            StatusCode::from_u16(GUARD_DENIED_STATUS).expect("446 is a valid status")
        } else if err.is::<Unavailable>() {
            return Self::Unavailable;
        } else if err.is::<AttemptsExhausted>() {
            return Self::AttemptsExhausted;
        } else {
            return Self::Failure;
        };
        Self::Refused(refused)
    }

    /// The HTTP status of an [`Answer`](Self::Answer) or a [`Refused`](Self::Refused).
    pub fn status(&self) -> Option<StatusCode> {
        match *self {
            Self::Answer(status) | Self::Refused(status) => Some(status),
            Self::Unavailable | Self::AttemptsExhausted | Self::Failure => None,
        }
    }
}

/// The request body is larger than the edge's limit (413).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTooLarge {
    /// The limit, in bytes.
    pub limit: usize,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body is larger than the limit of {} bytes",
            self.limit
        )
    }
}

impl StdError for BodyTooLarge {}

impl From<&BodyTooLarge> for HttpError {
    fn from(e: &BodyTooLarge) -> Self {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorBody::new("invalid_request_error", e.to_string()).code("request_too_large"),
        )
    }
}

/// The request is malformed: not JSON, not an object, a field of the wrong type (400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRequest {
    /// What is wrong, for the client.
    pub message: String,
    /// The field at fault, if one is.
    pub param: Option<String>,
}

impl InvalidRequest {
    /// An invalid-request error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: None,
        }
    }

    /// An invalid-request error about the field `param`.
    pub fn param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for InvalidRequest {}

impl From<&InvalidRequest> for HttpError {
    fn from(e: &InvalidRequest) -> Self {
        let mut body = ErrorBody::new("invalid_request_error", e.message.clone());
        body.param = e.param.clone();
        HttpError::new(StatusCode::BAD_REQUEST, body)
    }
}

/// The request did not complete within the time the caller allowed (`request_timeout`): 408
/// with `type: "timeout_error"`, as Portkey answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeout {
    /// The time allowed.
    pub after: Duration,
}

impl fmt::Display for RequestTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request timed out after {} ms", self.after.as_millis())
    }
}

impl StdError for RequestTimeout {}

impl From<&RequestTimeout> for HttpError {
    fn from(e: &RequestTimeout) -> Self {
        HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorBody::new("timeout_error", e.to_string()).code("request_timeout"),
        )
    }
}

/// Which wait of an upstream call ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Opening the connection (TCP and TLS).
    Connect,
    /// Waiting for the response headers.
    Response,
    /// Waiting for the next chunk of a response body.
    Idle,
}

impl TimeoutPhase {
    fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connecting to",
            TimeoutPhase::Response => "waiting for a response from",
            TimeoutPhase::Idle => "waiting for the next chunk from",
        }
    }
}

/// The upstream did not answer in time (504).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamTimeout {
    /// The wait that ran out.
    pub phase: TimeoutPhase,
    /// How long it was.
    pub after: Duration,
}

impl UpstreamTimeout {
    /// A timeout in `phase` after `after`.
    pub fn new(phase: TimeoutPhase, after: Duration) -> Self {
        Self { phase, after }
    }
}

impl fmt::Display for UpstreamTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {} ms {} the upstream",
            self.after.as_millis(),
            self.phase.as_str()
        )
    }
}

impl StdError for UpstreamTimeout {}

impl From<&UpstreamTimeout> for HttpError {
    fn from(e: &UpstreamTimeout) -> Self {
        HttpError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorBody::new("timeout_error", e.to_string()).code("upstream_timeout"),
        )
    }
}

/// What went wrong talking to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The connection could not be opened (refused, DNS, TLS).
    Connect,
    /// The connection broke or the upstream spoke bad HTTP.
    Protocol,
}

/// A transport failure talking to an upstream (502).
#[derive(Debug)]
pub struct UpstreamError {
    kind: UpstreamErrorKind,
    source: BoxError,
}

impl UpstreamError {
    /// A failure of `kind` caused by `source`.
    pub fn new(kind: UpstreamErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> UpstreamErrorKind {
        self.kind
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            UpstreamErrorKind::Connect => "could not connect to the upstream",
            UpstreamErrorKind::Protocol => "the upstream connection failed",
        };
        // The whole chain, so the client sees "connection refused" and not just "connect error".
        write!(f, "{what}: {}", self.source)?;
        let mut next = self.source.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

impl From<&UpstreamError> for HttpError {
    fn from(e: &UpstreamError) -> Self {
        let code = match e.kind {
            UpstreamErrorKind::Connect => "upstream_connect_failed",
            UpstreamErrorKind::Protocol => "upstream_protocol_error",
        };
        HttpError::new(
            StatusCode::BAD_GATEWAY,
            ErrorBody::new("upstream_error", e.to_string()).code(code),
        )
    }
}

/// A rate limit refused the request (429 with `Retry-After`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// Which limit, for the client.
    pub message: String,
    /// When the client may try again.
    pub retry_after: Duration,
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for RateLimited {}

impl From<&RateLimited> for HttpError {
    fn from(e: &RateLimited) -> Self {
        HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorBody::new("rate_limit_error", e.message.clone()).code("rate_limited"),
        )
        .with_retry_after(e.retry_after)
    }
}

/// No target can take the request now, e.g. its circuit breaker is open (503, with
/// `Retry-After` when it is known when one will).
///
/// It is answered without calling the upstream, so multi-target layers move on from it at no
/// cost: fallback tries the next target, a balancer draws another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// Why, for the client.
    pub message: String,
    /// When a target may take requests again.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Unavailable {}

impl From<&Unavailable> for HttpError {
    fn from(e: &Unavailable) -> Self {
        let err = HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorBody::new("service_unavailable", e.message.clone()).code("target_unavailable"),
        );
        match e.retry_after {
            Some(wait) => err.with_retry_after(wait),
            None => err,
        }
    }
}

/// A budget refused the request (402).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// Which budget, for the client.
    pub message: String,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for BudgetExceeded {}

impl From<&BudgetExceeded> for HttpError {
    fn from(e: &BudgetExceeded) -> Self {
        HttpError::new(
            StatusCode::PAYMENT_REQUIRED,
            ErrorBody::new("budget_exceeded", e.message.clone()).code("budget_exceeded"),
        )
    }
}

/// The status Portkey uses for a guardrail that denied a request.
pub const GUARD_DENIED_STATUS: u16 = 446;

/// A guardrail denied the request (446, `type: "hooks_failed"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardDenied {
    /// Why, for the client.
    pub message: String,
}

impl fmt::Display for GuardDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for GuardDenied {}

impl From<&GuardDenied> for HttpError {
    fn from(e: &GuardDenied) -> Self {
        HttpError::new(
            StatusCode::from_u16(GUARD_DENIED_STATUS).expect("446 is a valid status"),
            ErrorBody::new("hooks_failed", e.message.clone()).code("guardrail_denied"),
        )
    }
}

/// The request has made every upstream attempt its [`AttemptBudget`] allows, across its
/// retries and fallbacks (502, code `attempts_exhausted`).
///
/// A leaf answers it instead of calling its provider. It is final: retry does not retry it,
/// fallback does not move on from it, and a circuit breaker does not count it against its
/// target (nothing was sent there). 502 because the request failed upstream: every attempt it
/// was allowed was made and none gave a final answer.
///
/// [`AttemptBudget`]: crate::context::AttemptBudget
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptsExhausted {
    /// The attempts the request was allowed.
    pub limit: u32,
}

impl fmt::Display for AttemptsExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request made all {} upstream attempts it is allowed (retries and fallbacks \
             included) without a final answer",
            self.limit
        )
    }
}

impl StdError for AttemptsExhausted {}

impl From<&AttemptsExhausted> for HttpError {
    fn from(e: &AttemptsExhausted) -> Self {
        HttpError::new(
            StatusCode::BAD_GATEWAY,
            ErrorBody::new("upstream_error", e.to_string()).code("attempts_exhausted"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes_cover_every_refusal() {
        let status = |code| StatusCode::from_u16(code).unwrap();
        let cases: Vec<(BoxError, ErrorClass)> = vec![
            (
                HttpError::new(status(503), ErrorBody::new("x", "y")).into(),
                ErrorClass::Answer(status(503)),
            ),
            (
                InvalidRequest::new("bad").into(),
                ErrorClass::Refused(status(400)),
            ),
            (
                BudgetExceeded {
                    message: "spent".into(),
                }
                .into(),
                ErrorClass::Refused(status(402)),
            ),
            (
                BodyTooLarge { limit: 1 }.into(),
                ErrorClass::Refused(status(413)),
            ),
            (
                RateLimited {
                    message: "slow".into(),
                    retry_after: Duration::from_secs(1),
                }
                .into(),
                ErrorClass::Refused(status(429)),
            ),
            (
                GuardDenied {
                    message: "no".into(),
                }
                .into(),
                ErrorClass::Refused(status(446)),
            ),
            (
                Unavailable {
                    message: "open".into(),
                    retry_after: None,
                }
                .into(),
                ErrorClass::Unavailable,
            ),
            (
                AttemptsExhausted { limit: 2 }.into(),
                ErrorClass::AttemptsExhausted,
            ),
            (
                UpstreamError::new(UpstreamErrorKind::Connect, "refused").into(),
                ErrorClass::Failure,
            ),
            (
                RequestTimeout {
                    after: Duration::from_secs(1),
                }
                .into(),
                ErrorClass::Failure,
            ),
            ("anything".into(), ErrorClass::Failure),
        ];
        for (err, class) in cases {
            assert_eq!(ErrorClass::of(&err), class, "{err}");
            assert_eq!(
                class.status().is_some(),
                matches!(class, ErrorClass::Answer(_) | ErrorClass::Refused(_))
            );
        }
    }

    #[test]
    fn each_typed_error_has_its_status() {
        let cases: Vec<(BoxError, u16)> = vec![
            (BodyTooLarge { limit: 10 }.into(), 413),
            (InvalidRequest::new("bad").into(), 400),
            (
                RequestTimeout {
                    after: Duration::from_secs(1),
                }
                .into(),
                408,
            ),
            (
                UpstreamTimeout::new(TimeoutPhase::Connect, Duration::from_secs(1)).into(),
                504,
            ),
            (
                UpstreamError::new(UpstreamErrorKind::Connect, "refused").into(),
                502,
            ),
            (
                RateLimited {
                    message: "slow down".into(),
                    retry_after: Duration::from_millis(1500),
                }
                .into(),
                429,
            ),
            (
                BudgetExceeded {
                    message: "spent".into(),
                }
                .into(),
                402,
            ),
            (
                GuardDenied {
                    message: "no".into(),
                }
                .into(),
                446,
            ),
            (AttemptsExhausted { limit: 10 }.into(), 502),
            ("something else".into(), 500),
        ];
        for (err, status) in cases {
            let r = error_response(&err);
            assert_eq!(r.status().as_u16(), status, "{err}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        }
    }

    #[test]
    fn rate_limited_rounds_retry_after_up() {
        let err: BoxError = RateLimited {
            message: "slow down".into(),
            retry_after: Duration::from_millis(1500),
        }
        .into();
        assert_eq!(error_response(&err).headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn body_has_the_openai_shape() {
        let body = ErrorBody::new("invalid_request_error", "bad")
            .param("model")
            .code("x");
        let v: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"bad","type":"invalid_request_error","param":"model","code":"x"}})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&ErrorBody::new("t", "m").to_json()).unwrap();
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], serde_json::Value::Null);
    }
}
