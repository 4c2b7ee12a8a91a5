use portcullis_core::edge::DEFAULT_BODY_LIMIT;
use tower_layer::Layer;

use super::request::Translator;
use super::service::MessagesApi;

/// Applies [`MessagesApi`] to a service.
#[derive(Clone, Copy, Debug)]
pub struct MessagesApiLayer {
    translator: Translator,
    limit: usize,
}

impl Default for MessagesApiLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MessagesApiLayer {
    /// The Messages API with bodies of up to [`DEFAULT_BODY_LIMIT`] and `cache_control` left
    /// out of the translated requests.
    pub fn new() -> Self {
        Self {
            translator: Translator::new(),
            limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Sets the largest request body accepted, in bytes (413 past it).
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// Keeps `cache_control` in the translated requests (see
    /// [`Translator::keep_cache_control`]).
    pub fn keep_cache_control(mut self, keep: bool) -> Self {
        self.translator = self.translator.keep_cache_control(keep);
        self
    }

    pub(super) fn wrap<S>(&self, inner: S) -> MessagesApi<S> {
        MessagesApi::from_parts(inner, self.translator, self.limit)
    }
}

impl<S> Layer<S> for MessagesApiLayer {
    type Service = MessagesApi<S>;

    fn layer(&self, inner: S) -> MessagesApi<S> {
        self.wrap(inner)
    }
}
