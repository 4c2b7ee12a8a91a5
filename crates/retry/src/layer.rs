//! [`RetryLayer`]: the layer.

use tower_layer::Layer;

use crate::service::Settings;
use crate::{Retry, RetryPolicy};

/// Applies [`Retry`] with a policy to services: a [`RetryPolicy`] by default, or any
/// [`tower::retry::Policy`] given to [`with_policy`](Self::with_policy).
///
/// Every service it builds shares the policy's settings and retry budget.
#[derive(Clone, Debug)]
pub struct RetryLayer<P = RetryPolicy> {
    policy: P,
    settings: Settings,
}

impl RetryLayer {
    /// A layer that retries with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        let settings = Settings::of(&policy);
        Self { policy, settings }
    }
}

impl<P> RetryLayer<P> {
    /// A layer that retries with a policy of your own (see [`Retry::with_policy`]).
    pub fn with_policy(policy: P) -> Self {
        Self {
            policy,
            settings: Settings::PLAIN,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

impl<S, P: Clone> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Retry<S, P> {
        Retry::from_parts(inner, self.policy.clone(), self.settings)
    }
}
