//! When a fallback moves on: [`Triggers`].

use std::fmt;

use http::StatusCode;
use portcullis_core::BoxError;
use portcullis_core::error::{
    AttemptsExhausted, BodyTooLarge, BudgetExceeded, GUARD_DENIED_STATUS, GuardDenied, HttpError,
    InvalidRequest, RateLimited,
};

/// The statuses a fallback moves on after by default, besides every 5xx.
const DEFAULT_STATUS_CODES: [u16; 3] = [408, 409, 429];

/// The outcomes after which a [`Fallback`](crate::Fallback) tries its next target.
///
/// - **Errors** (`Err` from a target, or from its `poll_ready`) are transport failures,
///   timeouts or unavailability, and always move on, whatever the status list. The
///   exception is an error that is a *refusal* with an HTTP status of its own
///   ([`HttpError`], [`GuardDenied`] 446, [`BudgetExceeded`] 402, [`RateLimited`] 429,
///   [`InvalidRequest`] 400, [`BodyTooLarge`] 413): it is judged by its status, like a
///   response. [`AttemptsExhausted`] never moves on: the request's whole budget of upstream
///   attempts is spent, so every next target would refuse too.
/// - **Responses** move on when their status is in the list: by default 408, 409, 429 and
///   5xx ([`Triggers::default`]); [`Triggers::on_status_codes`] replaces the list. A 2xx
///   never moves on (a stream that fails before its first event does, see the
///   [crate docs](crate)).
/// - **Context window**: with [`Triggers::context_window`] on, a 400 whose error says the
///   context length was exceeded moves on too (`error.code` is `context_length_exceeded`,
///   or `error.message` contains `maximum context length`).
///
/// The list is a bit set over the status codes, so a check is one shift and one mask.
///
/// ```
/// use http::StatusCode;
/// use portcullis_fallback::Triggers;
///
/// let default = Triggers::default();
/// assert!(default.moves_on(StatusCode::TOO_MANY_REQUESTS));
/// assert!(default.moves_on(StatusCode::BAD_GATEWAY));
/// assert!(!default.moves_on(StatusCode::BAD_REQUEST));
/// assert!(!default.moves_on(StatusCode::PAYMENT_REQUIRED));
///
/// let custom = Triggers::on_status_codes([429, 446]);
/// assert!(custom.moves_on(StatusCode::from_u16(446).unwrap()));
/// assert!(!custom.moves_on(StatusCode::INTERNAL_SERVER_ERROR));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Triggers {
    /// Bit `n` is set when status `n` moves on (statuses are 100..=999).
    codes: [u64; 16],
    context_window: bool,
}

impl Triggers {
    /// Moves on only after the statuses in `codes` (and after errors); Portkey's
    /// `strategy.on_status_codes`. Numbers that are not HTTP statuses (outside 100..=999)
    /// never match and are ignored.
    pub fn on_status_codes(codes: impl IntoIterator<Item = u16>) -> Self {
        let mut triggers = Self {
            codes: [0; 16],
            context_window: false,
        };
        for code in codes {
            triggers.insert(code);
        }
        triggers
    }

    /// Also moves on after a 400 that says the request exceeded the model's context window.
    pub fn context_window(mut self, on: bool) -> Self {
        self.context_window = on;
        self
    }

    /// Whether a response with `status` moves on. A 2xx never does.
    pub fn moves_on(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        !status.is_success() && self.codes[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }

    /// Whether an error from a target moves on (see the [type docs](Triggers)).
    pub fn error_moves_on(&self, err: &BoxError) -> bool {
        if err.is::<AttemptsExhausted>() {
            return false;
        }
        match refusal_status(err) {
            Some(status) => self.moves_on(status),
            None => true,
        }
    }

    /// Whether context-window errors move on.
    pub fn context_window_enabled(&self) -> bool {
        self.context_window
    }

    /// The statuses that move on, in increasing order.
    pub fn status_codes(&self) -> impl Iterator<Item = u16> + '_ {
        (100..=999u16).filter(|&code| self.codes[usize::from(code / 64)] & (1 << (code % 64)) != 0)
    }

    fn insert(&mut self, code: u16) {
        if (100..=999).contains(&code) {
            self.codes[usize::from(code / 64)] |= 1 << (code % 64);
        }
    }
}

impl Default for Triggers {
    /// 408, 409, 429 and 5xx; context-window errors do not move on.
    fn default() -> Self {
        Self::on_status_codes(DEFAULT_STATUS_CODES.into_iter().chain(500..=599))
    }
}

impl fmt::Debug for Triggers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Triggers")
            .field("status_codes", &self.status_codes().collect::<Vec<_>>())
            .field("context_window", &self.context_window)
            .finish()
    }
}

/// The status of an error that is a refusal rather than a failure, if it is one.
fn refusal_status(err: &BoxError) -> Option<StatusCode> {
    if let Some(e) = err.downcast_ref::<HttpError>() {
        return Some(e.status());
    }
    let code = if err.is::<GuardDenied>() {
        GUARD_DENIED_STATUS
    } else if err.is::<BudgetExceeded>() {
        402
    } else if err.is::<RateLimited>() {
        429
    } else if err.is::<InvalidRequest>() {
        400
    } else if err.is::<BodyTooLarge>() {
        413
    } else {
        return None;
    };
    StatusCode::from_u16(code).ok()
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
    use portcullis_core::error::{Unavailable, UpstreamError, UpstreamErrorKind};

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    #[test]
    fn default_list_is_408_409_429_and_5xx() {
        let t = Triggers::default();
        let on: Vec<u16> = t.status_codes().collect();
        assert_eq!(&on[..3], &[408, 409, 429]);
        assert_eq!(on.len(), 3 + 100);
        for code in [400, 401, 402, 403, 404, 413, 422, 446, 200, 246, 301] {
            assert!(!t.moves_on(status(code)), "{code}");
        }
        assert!(!t.context_window_enabled());
    }

    #[test]
    fn custom_list_replaces_the_default_and_ignores_non_statuses() {
        let t = Triggers::on_status_codes([503, 0, 99, 1000, 999, u16::MAX]);
        assert_eq!(t.status_codes().collect::<Vec<_>>(), [503, 999]);
        assert!(!t.moves_on(status(500)));
        // A 2xx is an answer, whatever the list says.
        assert!(!Triggers::on_status_codes([200]).moves_on(StatusCode::OK));
    }

    #[test]
    fn a_spent_attempt_budget_never_moves_on() {
        let spent: BoxError = AttemptsExhausted { limit: 10 }.into();
        assert!(!Triggers::default().error_moves_on(&spent));
        assert!(!Triggers::on_status_codes([502]).error_moves_on(&spent));
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
            assert!(Triggers::on_status_codes([]).error_moves_on(err), "{err}");
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
        assert!(Triggers::on_status_codes([446]).error_moves_on(&denied));
        let limited: BoxError = RateLimited {
            message: "slow".into(),
            retry_after: std::time::Duration::from_secs(1),
        }
        .into();
        assert!(t.error_moves_on(&limited));
        assert!(!Triggers::on_status_codes([500]).error_moves_on(&limited));
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
