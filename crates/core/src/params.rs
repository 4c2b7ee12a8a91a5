//! `override_params`: a target's parameters merged into the request body.
//!
//! Portkey merges a target's `override_params` into the request shallowly, the target's keys
//! winning, so `{"model": "gemini-1.5-flash"}` on a target changes the model sent upstream.
//! [`OverrideParams`] does that with one re-serialisation, and replaces the request's
//! [`RequestView`] with one over the new body, so layers below read what is sent. Nested
//! targets' parameters should be merged when the stack is built (see
//! [`OverrideParamsLayer::merged_with`]), not by stacking layers.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_core::{Body, BoxError, BufferedBody, EdgeLayer, OverrideParamsLayer, RequestView};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let params = serde_json::json!({"model": "gemini-1.5-flash", "temperature": 0});
//! let svc = EdgeLayer::new().layer(
//!     OverrideParamsLayer::new(params.as_object().unwrap().clone()).layer(service_fn(
//!         |req: http::Request<BufferedBody>| async move {
//!             let view = req.extensions().get::<Arc<RequestView>>().unwrap();
//!             assert_eq!(view.bytes(), req.body().bytes());
//!             Ok::<_, BoxError>(http::Response::new(Body::from(view.model().unwrap().to_owned())))
//!         },
//!     )),
//! );
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(http_body_util::Full::new(bytes::Bytes::from_static(br#"{"model":"gpt-4o"}"#)))
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! use http_body_util::BodyExt;
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "gemini-1.5-flash");
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::to_http_error;
use crate::{Body, BoxError, BufferedBody, RequestView};

/// The future of [`OverrideParams`]: the inner service's, or the error answer given at once when
/// the override cannot be applied.
pub use crate::util::EitherResponse as ResponseFuture;

/// Applies [`OverrideParams`] to a service.
#[derive(Clone, Debug)]
pub struct OverrideParamsLayer {
    params: Arc<Map<String, Value>>,
}

impl OverrideParamsLayer {
    /// A layer that merges `params` into every request body.
    pub fn new(params: Map<String, Value>) -> Self {
        Self {
            params: Arc::new(params),
        }
    }

    /// These parameters with `child`'s merged over them (child keys win): Portkey's
    /// inheritance down a tree of targets.
    pub fn merged_with(&self, child: &Map<String, Value>) -> Self {
        let mut params = (*self.params).clone();
        for (k, v) in child {
            params.insert(k.clone(), v.clone());
        }
        Self::new(params)
    }

    /// The parameters.
    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }
}

impl<S> Layer<S> for OverrideParamsLayer {
    type Service = OverrideParams<S>;

    fn layer(&self, inner: S) -> OverrideParams<S> {
        OverrideParams {
            inner,
            params: self.params.clone(),
        }
    }
}

/// Merges parameters into the request body (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct OverrideParams<S> {
    inner: S,
    params: Arc<Map<String, Value>>,
}

impl<S> OverrideParams<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The request with `params` merged into its JSON body and a view over the result.
///
/// A request without a view (not JSON, or no edge in front) is returned unchanged; a merge
/// that gives a field the wrong type (`"stream": "yes"`) is an error.
pub fn override_params(
    req: Request<BufferedBody>,
    params: &Map<String, Value>,
) -> Result<Request<BufferedBody>, BoxError> {
    merge(req, params, |view| view.with_overrides(params))
}

/// [`override_params`] with the layer's own parameters, which the first override of a body
/// shares instead of copying ([`RequestView::with_shared_overrides`]).
fn override_shared(
    req: Request<BufferedBody>,
    params: &Arc<Map<String, Value>>,
) -> Result<Request<BufferedBody>, BoxError> {
    merge(req, params, |view| view.with_shared_overrides(params))
}

/// The request with the view `over` makes of its view (`params` the parameters it merges:
/// none, nothing to do).
fn merge(
    mut req: Request<BufferedBody>,
    params: &Map<String, Value>,
    over: impl FnOnce(&RequestView) -> Result<RequestView, crate::error::InvalidRequest>,
) -> Result<Request<BufferedBody>, BoxError> {
    if params.is_empty() {
        return Ok(req);
    }
    let Some(view) = req.extensions().get::<Arc<RequestView>>() else {
        return Ok(req);
    };
    let view = over(view)?;
    let len = view.bytes().len();
    *req.body_mut() = BufferedBody::new(view.bytes().clone());
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    req.extensions_mut().insert(Arc::new(view));
    Ok(req)
}

impl<S> Service<Request<BufferedBody>> for OverrideParams<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        match override_shared(req, &self.params) {
            Ok(req) => ResponseFuture::future(self.inner.call(req)),
            Err(err) => ResponseFuture::answer(to_http_error(&err).to_response()),
        }
    }
}
