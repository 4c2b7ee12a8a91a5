use tower_layer::Layer;

use super::{DEFAULT_BODY_LIMIT, Edge};

/// Applies [`Edge`] to a service.
#[derive(Clone, Copy, Debug)]
pub struct EdgeLayer {
    limit: usize,
}

impl EdgeLayer {
    /// An edge with the default body limit ([`DEFAULT_BODY_LIMIT`]).
    pub fn new() -> Self {
        Self {
            limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Sets the largest body accepted, in bytes.
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }
}

impl Default for EdgeLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge::new(inner, self.limit)
    }
}
