//! When a fallback moves on: the [`Trigger`] trait and its default, [`Triggers`].

use std::fmt;

use http::{HeaderMap, StatusCode};
use portcullis_core::error::ErrorClass;
#[cfg(doc)]
use portcullis_core::error::{
    AttemptsExhausted, BodyTooLarge, BudgetExceeded, GuardDenied, HttpError, InvalidRequest,
    RateLimited,
};
use portcullis_core::{BoxError, StatusSet};

/// The statuses a fallback moves on after by default, besides every 5xx.
const DEFAULT_STATUS_CODES: [u16; 3] = [408, 409, 429];

/// Decides whether a [`Fallback`](crate::Fallback) tries its next target after an answer.
///
/// [`Triggers`] is the default (a status list, errors, an opt-in context-window check);
/// implement this for a rule of your own, or pass a closure `Fn(StatusCode) -> bool` (true:
/// move on), which judges errors as [`Triggers`] does. Give it to
/// [`FallbackBuilder::trigger`](crate::FallbackBuilder::trigger).
///
/// A 2xx never reaches the trigger: it is an answer (a stream that fails before its first
/// event moves on whatever the trigger says, since nothing reached the client). Neither does
/// the last target's answer, nor any answer once the request's attempt budget is spent.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use portcullis_fallback::Trigger;
///
/// // Move on after any server error, and after a 429 only when the target says it is out of
/// // quota for a while (a short wait is better spent on a retry).
/// struct OutOfQuota;
///
/// impl Trigger for OutOfQuota {
///     fn on_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
///         status.is_server_error()
///             || (status == StatusCode::TOO_MANY_REQUESTS
///                 && headers.get("retry-after").and_then(|v| v.to_str().ok())
///                     .and_then(|v| v.parse::<u64>().ok())
///                     .is_some_and(|secs| secs > 60))
///     }
/// }
///
/// let mut long = HeaderMap::new();
/// long.insert("retry-after", "3600".parse().unwrap());
/// assert!(OutOfQuota.on_response(StatusCode::TOO_MANY_REQUESTS, &long));
/// assert!(!OutOfQuota.on_response(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()));
///
/// // A closure judges statuses; errors as the default does.
/// let only_503 = |status: StatusCode| status == StatusCode::SERVICE_UNAVAILABLE;
/// assert!(only_503.on_response(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()));
/// assert!(only_503.on_error(&"connection reset".into()));
/// ```
pub trait Trigger: Send + Sync + 'static {
    /// Whether a response that is not 2xx moves on, by its status and headers.
    fn on_response(&self, status: StatusCode, headers: &HeaderMap) -> bool;

    /// Whether an error from a target (or from its `poll_ready`) moves on. By default as
    /// [`Triggers`] does: transport failures, timeouts and unavailable targets move on, a
    /// refusal with an HTTP status of its own is judged by
    /// [`on_response`](Self::on_response) with that status, and a spent attempt budget
    /// never moves on.
    fn on_error(&self, error: &BoxError) -> bool {
        error_moves_on(error, |status| self.on_response(status, &HeaderMap::new()))
    }

    /// Whether a 400 that says the request exceeded the model's context window moves on
    /// (the fallback then reads the small 400 body to find out). Off by default.
    fn on_context_window(&self) -> bool {
        false
    }
}

impl<F> Trigger for F
where
    F: Fn(StatusCode) -> bool + Send + Sync + 'static,
{
    fn on_response(&self, status: StatusCode, _headers: &HeaderMap) -> bool {
        self(status)
    }
}

/// Core's classification of an error: refusals judged by their status, the rest by kind.
fn error_moves_on(err: &BoxError, status_moves_on: impl FnOnce(StatusCode) -> bool) -> bool {
    match ErrorClass::of(err) {
        ErrorClass::AttemptsExhausted => false,
        ErrorClass::Answer(status) | ErrorClass::Refused(status) => status_moves_on(status),
        ErrorClass::Unavailable | ErrorClass::Failure => true,
    }
}

/// The default [`Trigger`]: the outcomes after which a [`Fallback`](crate::Fallback) tries its
/// next target.
///
/// - **Errors** (`Err` from a target, or from its `poll_ready`) are transport failures,
///   timeouts or unavailability, and always move on, whatever the status list. The
///   exception is an error that is a *refusal* with an HTTP status of its own
///   ([`HttpError`], [`GuardDenied`] 446, [`BudgetExceeded`] 402, [`RateLimited`] 429,
///   [`InvalidRequest`] 400, [`BodyTooLarge`] 413): it is judged by its status, like a
///   response. [`AttemptsExhausted`] never moves on: the request's whole budget of upstream
///   attempts is spent, so every next target would refuse too. (The list is core's
///   [`ErrorClass`].)
/// - **Responses** move on when their status is in the list: by default 408, 409, 429 and
///   5xx ([`Triggers::default`]); [`Triggers::on_status_codes`] replaces the list. A 2xx
///   never moves on (a stream that fails before its first event does, see the
///   [crate docs](crate)).
/// - **Context window**: with [`Triggers::context_window`] on, a 400 whose error says the
///   context length was exceeded moves on too (`error.code` is `context_length_exceeded`,
///   or `error.message` contains `maximum context length`).
///
/// The list is a [`StatusSet`], so a check is one shift and one mask.
///
/// ```
/// use http::StatusCode;
/// use portcullis_core::StatusSet;
/// use portcullis_fallback::Triggers;
///
/// let default = Triggers::default();
/// assert!(default.moves_on(StatusCode::TOO_MANY_REQUESTS));
/// assert!(default.moves_on(StatusCode::BAD_GATEWAY));
/// assert!(!default.moves_on(StatusCode::BAD_REQUEST));
/// assert!(!default.moves_on(StatusCode::PAYMENT_REQUIRED));
///
/// let custom = Triggers::on_status_codes(StatusSet::new([429, 446]).unwrap());
/// assert!(custom.moves_on(StatusCode::from_u16(446).unwrap()));
/// assert!(!custom.moves_on(StatusCode::INTERNAL_SERVER_ERROR));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Triggers {
    codes: StatusSet,
    context_window: bool,
}

impl Triggers {
    /// Moves on only after the statuses in `codes` (and after errors); Portkey's
    /// `strategy.on_status_codes`.
    pub fn on_status_codes(codes: StatusSet) -> Self {
        Self {
            codes,
            context_window: false,
        }
    }

    /// Also moves on after a 400 that says the request exceeded the model's context window.
    pub fn context_window(mut self, on: bool) -> Self {
        self.context_window = on;
        self
    }

    /// Whether a response with `status` moves on. A 2xx never does.
    pub fn moves_on(&self, status: StatusCode) -> bool {
        !status.is_success() && self.codes.contains(status)
    }

    /// Whether an error from a target moves on (see the [type docs](Triggers)).
    pub fn error_moves_on(&self, err: &BoxError) -> bool {
        error_moves_on(err, |status| self.moves_on(status))
    }

    /// Whether context-window errors move on.
    pub fn context_window_enabled(&self) -> bool {
        self.context_window
    }

    /// The statuses that move on.
    pub fn status_codes(&self) -> StatusSet {
        self.codes
    }
}

impl Trigger for Triggers {
    fn on_response(&self, status: StatusCode, _headers: &HeaderMap) -> bool {
        self.moves_on(status)
    }

    fn on_error(&self, error: &BoxError) -> bool {
        self.error_moves_on(error)
    }

    fn on_context_window(&self) -> bool {
        self.context_window
    }
}

impl Default for Triggers {
    /// 408, 409, 429 and 5xx; context-window errors do not move on.
    fn default() -> Self {
        let codes = StatusSet::new(DEFAULT_STATUS_CODES.into_iter().chain(500..=599))
            .expect("the defaults are statuses");
        Self::on_status_codes(codes)
    }
}

impl fmt::Debug for Triggers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Triggers")
            .field("status_codes", &self.codes)
            .field("context_window", &self.context_window)
            .finish()
    }
}

/// Whether an upstream's 400 body says the context window was exceeded: OpenAI's
/// `error.code` `context_length_exceeded`, or a message about the `maximum context length`
/// (what OpenAI-compatible servers such as vLLM say).
pub(crate) fn is_context_length_error(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let error = &value["error"];
    error["code"].as_str() == Some("context_length_exceeded")
        || error["message"]
            .as_str()
            .is_some_and(|m| m.contains("maximum context length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::error::{
        AttemptsExhausted, BudgetExceeded, GuardDenied, RateLimited, Unavailable, UpstreamError,
        UpstreamErrorKind,
    };

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    fn on(codes: impl IntoIterator<Item = u16>) -> Triggers {
        Triggers::on_status_codes(StatusSet::new(codes).unwrap())
    }

    #[test]
    fn default_list_is_408_409_429_and_5xx() {
        let t = Triggers::default();
        let on: Vec<u16> = t.status_codes().iter().collect();
        assert_eq!(&on[..3], &[408, 409, 429]);
        assert_eq!(on.len(), 3 + 100);
        for code in [400, 401, 402, 403, 404, 413, 422, 446, 200, 246, 301] {
            assert!(!t.moves_on(status(code)), "{code}");
        }
        assert!(!t.context_window_enabled());
    }

    #[test]
    fn custom_list_replaces_the_default() {
        let t = on([503, 599]);
        assert_eq!(t.status_codes().iter().collect::<Vec<_>>(), [503, 599]);
        assert!(!t.moves_on(status(500)));
        // A 2xx is an answer, whatever the list says.
        assert!(!on([200]).moves_on(StatusCode::OK));
    }

    #[test]
    fn a_spent_attempt_budget_never_moves_on() {
        let spent: BoxError = AttemptsExhausted { limit: 10 }.into();
        assert!(!Triggers::default().error_moves_on(&spent));
        assert!(!on([502]).error_moves_on(&spent));
    }

    #[test]
    fn errors_move_on_unless_they_are_refusals() {
        let t = Triggers::default();
        let transport: BoxError = UpstreamError::new(UpstreamErrorKind::Connect, "refused").into();
        let unavailable: BoxError = Unavailable {
            message: "open".into(),
            retry_after: None,
        }
        .into();
        let other: BoxError = "anything".into();
        for err in [&transport, &unavailable, &other] {
            assert!(t.error_moves_on(err), "{err}");
            assert!(on([]).error_moves_on(err), "{err}");
        }
        let denied: BoxError = GuardDenied {
            message: "no".into(),
        }
        .into();
        let budget: BoxError = BudgetExceeded {
            message: "spent".into(),
        }
        .into();
        assert!(!t.error_moves_on(&denied));
        assert!(!t.error_moves_on(&budget));
        assert!(on([446]).error_moves_on(&denied));
        let limited: BoxError = RateLimited {
            message: "slow".into(),
            retry_after: std::time::Duration::from_secs(1),
        }
        .into();
        assert!(t.error_moves_on(&limited));
        assert!(!on([500]).error_moves_on(&limited));
    }

    #[test]
    fn context_length_errors_are_recognised() {
        assert!(is_context_length_error(
            br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#
        ));
        assert!(is_context_length_error(
            br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","code":null}}"#
        ));
        assert!(!is_context_length_error(
            br#"{"error":{"message":"bad temperature","code":"invalid_value"}}"#
        ));
        assert!(!is_context_length_error(b"maximum context length"));
        assert!(!is_context_length_error(b""));
    }
}
