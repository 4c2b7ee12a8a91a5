use tower_layer::Layer;

use super::{DEFAULT_BODY_LIMIT, Edge};

/// Applies [`Edge`] to a service.
#[derive(Clone, Copy, Debug)]
pub struct EdgeLayer {
    limit: usize,
    json_only: bool,
}

impl EdgeLayer {
    /// An edge with the default body limit ([`DEFAULT_BODY_LIMIT`]) that reads every body as
    /// JSON.
    pub fn new() -> Self {
        Self {
            limit: DEFAULT_BODY_LIMIT,
            json_only: true,
        }
    }

    /// Sets the largest body accepted, in bytes.
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// Whether every non-empty body is read as JSON, whatever its `content-type` (default
    /// `true`): a body that is not a JSON object is refused with 400, so no layer below ever
    /// sees a body it would have acted on had it been parsed.
    ///
    /// Turn it off only for a stack that also serves bodies that are not JSON (multipart
    /// audio uploads, say). Then a body is parsed when it is labelled JSON (`application/json`,
    /// `*+json`, or no `content-type`) or opens with `{`, and any other body goes on unparsed:
    /// layers below see no view for it, so routing on `params.*`, `override_params` and
    /// anything else built on the view do not apply to it.
    pub fn json_only(mut self, on: bool) -> Self {
        self.json_only = on;
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
        Edge::new(inner, self.limit).json_only(self.json_only)
    }
}
