//! Response facts: what the stack learned while answering, kept in response extensions.
//!
//! Facts known when the response headers leave (the target that answered, retries made, every
//! upstream attempt, cache status, provider) live in one [`ResponseFacts`]; facts known only once the body has ended
//! (token usage, and the cost derived from it) arrive through the
//! [`Observation`](crate::observe::Observation) of the response.
//!
//! ```
//! use portcullis_core::facts::{CacheStatus, ResponseFacts, Retries};
//!
//! let mut response = http::Response::new(());
//! let facts = ResponseFacts::get_mut(&mut response);
//! facts.retries = Some(Retries::Made(2));
//! facts.cache = Some(CacheStatus::Miss);
//! assert_eq!(ResponseFacts::get(&response).unwrap().retries, Some(Retries::Made(2)));
//! ```

use std::sync::Arc;

use http::Response;
use serde::{Deserialize, Serialize};

use crate::attempts::Attempts;
use crate::context::TargetPath;

/// Facts about a response, set by the layers that know them.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ResponseFacts {
    /// The path of the target that answered, relative to the outermost multi-target layer.
    pub target: Option<TargetPath>,
    /// Retries made before this response, Portkey's way: by the target that answered (its
    /// retry layer's count), not by the whole request. [`attempts`](Self::attempts) has every
    /// attempt of the request.
    pub retries: Option<Retries>,
    /// What the cache did.
    pub cache: Option<CacheStatus>,
    /// The provider that answered.
    pub provider: Option<Arc<str>>,
    /// Verdicts of the guardrails that ran.
    pub guards: Vec<GuardResult>,
    /// Every upstream attempt the request made, in order, across all its targets, retries and
    /// fallbacks: set by the [`SpendAttempt`](crate::attempts::SpendAttempt) leaf that
    /// answered, from the request's [`AttemptBudget`](crate::context::AttemptBudget) (empty
    /// without one).
    pub attempts: Attempts,
}

impl ResponseFacts {
    /// The facts of `response`, if any layer recorded some.
    pub fn get<B>(response: &Response<B>) -> Option<&ResponseFacts> {
        response.extensions().get()
    }

    /// The facts of `response`, created empty if none were recorded yet.
    pub fn get_mut<B>(response: &mut Response<B>) -> &mut ResponseFacts {
        response.extensions_mut().get_or_insert_default()
    }
}

/// Retries made, with Portkey's header semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retries {
    /// `n` retries were made and the last answer is final (0: no retry was needed).
    Made(u32),
    /// Every allowed retry was used and the answer is still a failure.
    Exhausted,
}

impl Retries {
    /// The `x-portkey-retry-attempt-count` value: the count, or -1 when exhausted.
    pub fn header_value(self) -> i64 {
        match self {
            Retries::Made(n) => i64::from(n),
            Retries::Exhausted => -1,
        }
    }
}

/// What the cache did for a request, with Portkey's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Answered from an exact match.
    Hit,
    /// Answered from a semantic match.
    SemanticHit,
    /// Looked up, not found (exact mode).
    Miss,
    /// Looked up, not found (semantic mode).
    SemanticMiss,
    /// Skipped the lookup on request and refreshed the entry.
    Refresh,
    /// Caching is off for this request.
    Disabled,
}

impl CacheStatus {
    /// The `x-portkey-cache-status` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::SemanticHit => "SEMANTIC HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::SemanticMiss => "SEMANTIC MISS",
            CacheStatus::Refresh => "REFRESH",
            CacheStatus::Disabled => "DISABLED",
        }
    }
}

/// The verdict of one guardrail check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardResult {
    /// The check's id.
    pub id: Arc<str>,
    /// Whether the check passed.
    pub passed: bool,
    /// Whether a failure of this check denies the request.
    pub deny: bool,
    /// Why it failed, when it did.
    pub explanation: Option<String>,
}

/// Token usage, as OpenAI reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
}

/// The cost of a request in millionths of a US dollar (integers add exactly, in memory and
/// in Redis).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    /// Micro-dollars.
    pub micro_usd: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_follow_portkey() {
        assert_eq!(Retries::Made(0).header_value(), 0);
        assert_eq!(Retries::Made(3).header_value(), 3);
        assert_eq!(Retries::Exhausted.header_value(), -1);
        assert_eq!(CacheStatus::SemanticHit.as_str(), "SEMANTIC HIT");
    }

    #[test]
    fn usage_reads_partial_objects() {
        let u: Usage = serde_json::from_str(r#"{"prompt_tokens":3,"total_tokens":3}"#).unwrap();
        assert_eq!(u.prompt_tokens, 3);
        assert_eq!(u.completion_tokens, 0);
    }
}
