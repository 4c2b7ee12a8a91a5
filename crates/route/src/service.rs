//! [`ConditionalRouter`]: sends each request to the target its conditions choose.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use portcullis_core::context::TargetPath;
use portcullis_core::error::{self, ErrorBody};
use portcullis_core::{Body, BoxError};
use tower_service::Service;

use crate::{Condition, ConditionalRouterBuilder, ResponseFuture, RouteInput};

/// A target of any type, boxed: what a router of heterogeneous targets holds (core's, shared
/// with fallback and balance).
///
/// It is `Sync` (so a router of them can be handed to axum as it is); wrap each target with
/// `BoxTarget::new(service)`.
pub use portcullis_core::BoxTarget;

/// The message of the 400 answered when nothing matches and there is no default.
pub(crate) const NO_ROUTE: &str =
    "no routing condition matched the request and the router has no default target";

/// Sends each request to the first target whose condition matches it, else to the default
/// (see the [crate docs](crate)).
///
/// Its own `poll_ready` is always ready: which target a request needs is known only once it
/// arrives, so the response future drives a clone of that target ready before calling it.
/// Clones share the targets and the compiled conditions (two reference counts).
pub struct ConditionalRouter<S = BoxTarget> {
    targets: Arc<[S]>,
    table: Arc<Table>,
}

/// What a router decides with, compiled once.
pub(crate) struct Table {
    pub(crate) names: Box<[Box<str>]>,
    /// Conditions in order, each with the index of its target.
    pub(crate) routes: Box<[(Condition, u16)]>,
    pub(crate) default: Option<u16>,
}

impl Table {
    fn route(&self, input: &RouteInput<'_>) -> Option<u16> {
        self.routes
            .iter()
            .find(|(condition, _)| condition.matches(input))
            .map(|&(_, index)| index)
            .or(self.default)
    }
}

impl<S> ConditionalRouter<S> {
    /// A builder for a router.
    pub fn builder() -> ConditionalRouterBuilder<S> {
        ConditionalRouterBuilder::new()
    }

    pub(crate) fn from_parts(targets: Arc<[S]>, table: Arc<Table>) -> Self {
        Self { targets, table }
    }

    /// The index of the target `input` goes to: the first matching condition's, else the
    /// default's; `None` when nothing matches and there is no default.
    pub fn route(&self, input: &RouteInput<'_>) -> Option<usize> {
        self.table.route(input).map(usize::from)
    }

    /// Whether there is a default target (without one, requests no condition matches are
    /// answered 400).
    pub fn has_default(&self) -> bool {
        self.table.default.is_some()
    }

    /// The index of the default target, if there is one.
    pub fn default_target(&self) -> Option<usize> {
        self.table.default.map(usize::from)
    }

    /// The target names, in order.
    pub fn target_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.table.names.iter().map(|name| &**name)
    }

    /// The targets, in order.
    pub fn targets(&self) -> &[S] {
        &self.targets
    }

    /// The number of conditions.
    pub fn condition_count(&self) -> usize {
        self.table.routes.len()
    }
}

impl<S> Clone for ConditionalRouter<S> {
    fn clone(&self) -> Self {
        Self {
            targets: self.targets.clone(),
            table: self.table.clone(),
        }
    }
}

impl<S> fmt::Debug for ConditionalRouter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = &self.table.names;
        f.debug_struct("ConditionalRouter")
            .field("targets", names)
            .field(
                "conditions",
                &self
                    .table
                    .routes
                    .iter()
                    .map(|(_, index)| &names[usize::from(*index)])
                    .collect::<Vec<_>>(),
            )
            .field(
                "default",
                &self.table.default.map(|index| &names[usize::from(index)]),
            )
            .finish()
    }
}

fn no_route() -> Response<Body> {
    error::response(
        StatusCode::BAD_REQUEST,
        ErrorBody::new("invalid_request_error", NO_ROUTE).code("no_route_matched"),
    )
}

impl<S, B> Service<Request<B>> for ConditionalRouter<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<B>, S::Future>;

    /// Always ready: the chosen target is driven ready inside the response future.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(index) = self.table.route(&RouteInput::from_request(&request)) else {
            return ResponseFuture::answered(no_route());
        };
        TargetPath::enter(&mut request, usize::from(index));
        // A fresh clone, readied by the future before it is called: the shared originals are
        // never polled, so no clone is ever called without its own readiness.
        let target = self.targets[usize::from(index)].clone();
        ResponseFuture::readying(target, request, index)
    }
}
