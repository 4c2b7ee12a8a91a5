//! [`RetryLayer`]: the layer.

use tower_layer::Layer;

use crate::{Retry, RetryPolicy};

/// Applies [`Retry`] with a [`RetryPolicy`] to services.
///
/// Every service it builds shares the policy's settings and retry budget.
#[derive(Clone, Debug)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer that retries with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.policy.clone())
    }
}
