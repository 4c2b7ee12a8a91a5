//! [`RouteInput`]: what conditions read from a request.

use std::sync::Arc;

use http::Request;
use portcullis_core::RequestView;
use portcullis_core::context::Metadata;

/// The parts of a request that conditions read: metadata (`metadata.KEY`), the parsed body
/// (`params.PATH`) and the URI path (`url.pathname`). It borrows them; building one costs
/// nothing. A part that is absent makes every field read from it missing.
///
/// ```
/// use portcullis_core::context::Metadata;
/// use portcullis_route::{Condition, RouteInput};
///
/// let paid = Condition::compile(&serde_json::json!({"metadata.user_plan": "paid"})).unwrap();
/// let metadata = Metadata::new([("user_plan".into(), "paid".into())].into());
/// assert!(paid.matches(&RouteInput::new().metadata(&metadata)));
/// assert!(!paid.matches(&RouteInput::new()));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteInput<'a> {
    pub(crate) metadata: Option<&'a Metadata>,
    pub(crate) view: Option<&'a RequestView>,
    pub(crate) path: Option<&'a str>,
}

impl<'a> RouteInput<'a> {
    /// An input with nothing in it: every field is missing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The input of a request: its [`Metadata`] and `Arc<RequestView>` extensions, and its
    /// URI path.
    pub fn from_request<B>(request: &'a Request<B>) -> Self {
        let extensions = request.extensions();
        Self {
            metadata: extensions.get::<Metadata>(),
            view: extensions.get::<Arc<RequestView>>().map(|view| &**view),
            path: Some(request.uri().path()),
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
}
