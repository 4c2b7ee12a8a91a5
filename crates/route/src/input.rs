//! [`RouteInput`]: what conditions read from a request.

use std::sync::Arc;

use http::{Extensions, HeaderMap, Request};
use portcullis_core::RequestView;
use portcullis_core::context::Metadata;

/// The parts of a request that conditions read: metadata (`metadata.KEY`), the parsed body
/// (`params.PATH`) and the URI path (`url.pathname`), and for
/// [predicates](crate::condition::Predicate) also the headers and extensions. It borrows
/// them; building one costs nothing. A part that is absent makes every field read from it
/// missing.
///
/// The setters (`metadata`, `view`, …) build an input by hand, for tests and for calling
/// [`Condition::matches`](crate::Condition::matches) directly; the getters (`get_metadata`,
/// `get_view`, …) are what a predicate reads.
///
/// ```
/// use portcullis_core::context::Metadata;
/// use portcullis_route::{Condition, RouteInput};
///
/// let paid = Condition::compile(&serde_json::json!({"metadata.user_plan": "paid"})).unwrap();
/// let metadata = Metadata::new([("user_plan".into(), "paid".into())].into());
/// assert!(paid.matches(&RouteInput::new().metadata(&metadata)));
/// assert!(!paid.matches(&RouteInput::new()));
///
/// let input = RouteInput::new().metadata(&metadata).path("/v1/chat/completions");
/// assert_eq!(input.get_metadata().and_then(|m| m.get("user_plan")), Some("paid"));
/// assert_eq!(input.get_path(), Some("/v1/chat/completions"));
/// assert!(input.get_view().is_none());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteInput<'a> {
    pub(crate) metadata: Option<&'a Metadata>,
    pub(crate) view: Option<&'a RequestView>,
    pub(crate) path: Option<&'a str>,
    headers: Option<&'a HeaderMap>,
    extensions: Option<&'a Extensions>,
}

impl<'a> RouteInput<'a> {
    /// An input with nothing in it: every field is missing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The input of a request: its [`Metadata`] and `Arc<RequestView>` extensions, its URI
    /// path, its headers and its extensions.
    pub fn from_request<B>(request: &'a Request<B>) -> Self {
        let extensions = request.extensions();
        Self {
            metadata: extensions.get::<Metadata>(),
            view: extensions.get::<Arc<RequestView>>().map(|view| &**view),
            path: Some(request.uri().path()),
            headers: Some(request.headers()),
            extensions: Some(extensions),
        }
    }

    /// Sets the metadata that `metadata.KEY` reads.
    pub fn metadata(mut self, metadata: &'a Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the parsed body that `params.PATH` reads.
    pub fn view(mut self, view: &'a RequestView) -> Self {
        self.view = Some(view);
        self
    }

    /// Sets the path that `url.pathname` reads.
    pub fn path(mut self, path: &'a str) -> Self {
        self.path = Some(path);
        self
    }

    /// Sets the headers a predicate reads.
    pub fn headers(mut self, headers: &'a HeaderMap) -> Self {
        self.headers = Some(headers);
        self
    }

    /// Sets the extensions a predicate reads.
    pub fn extensions(mut self, extensions: &'a Extensions) -> Self {
        self.extensions = Some(extensions);
        self
    }

    /// The request's metadata, if it has any.
    pub fn get_metadata(&self) -> Option<&'a Metadata> {
        self.metadata
    }

    /// The request's parsed body, if it was parsed (by the edge, in front of the router).
    pub fn get_view(&self) -> Option<&'a RequestView> {
        self.view
    }

    /// The request's URI path.
    pub fn get_path(&self) -> Option<&'a str> {
        self.path
    }

    /// The request's headers.
    pub fn get_headers(&self) -> Option<&'a HeaderMap> {
        self.headers
    }

    /// The request's extensions: the context other layers left (identity, trace id, …).
    pub fn get_extensions(&self) -> Option<&'a Extensions> {
        self.extensions
    }
}
