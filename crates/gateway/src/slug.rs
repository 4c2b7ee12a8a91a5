//! Portkey's model slug: `"model": "@NAME/MODEL"` names a provider of the server's file and a
//! model of it. The prefix is stripped (the provider sees `MODEL`); when no header chose the
//! routing, the request goes to that provider instead of the file's tree. `@cf/…` and
//! `@hf/…` are model names of Cloudflare and Hugging Face, not slugs. An unknown slug is a
//! 400 naming it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use portcullis_core::error::{self, ErrorBody};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use portcullis_tag::{Tag, TagLayer};
use serde_json::{Map, Value};
use tower::util::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use portcullis_budget::{AnyStore, BudgetLayer};

use crate::build::{Providers, Stack};

/// Reads the slug and chooses the service: `inner` (what the headers chose), or, when
/// `route` and the model names a provider, that provider (tagged like `inner`).
#[derive(Clone)]
pub(crate) struct Slug {
    pub(crate) inner: Tag<Stack>,
    pub(crate) route: bool,
    pub(crate) providers: Arc<Providers>,
    pub(crate) tag: TagLayer,
    /// The per-request limits, put around a provider the slug chose as around `inner`.
    pub(crate) budget: Option<BudgetLayer<AnyStore>>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

pin_project! {
    /// The future of [`Slug`]: the chosen service's answer, or a 400 for a bad slug.
    #[project = SlugProj]
    pub(crate) enum SlugFuture {
        /// What the headers chose.
        Inner { #[pin] future: <Tag<Stack> as Service<Request<BufferedBody>>>::Future },
        /// The slug's provider, driven ready, then called (boxed: only slug requests pay).
        Provider { future: BoxFuture },
        /// A bad slug.
        Answer { response: Option<Response<Body>> },
    }
}

impl Future for SlugFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            SlugProj::Inner { future } => future.poll(cx),
            SlugProj::Provider { future } => future.as_mut().poll(cx),
            SlugProj::Answer { response } => {
                Poll::Ready(Ok(response.take().expect("polled after it completed")))
            }
        }
    }
}

impl Service<Request<BufferedBody>> for Slug {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = SlugFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<BufferedBody>) -> Self::Future {
        // A connected console that shows prompts gets the body here, the first place it is
        // whole.
        if let Some(capture) = req.extensions().get::<crate::console::Capture>() {
            capture.set(req.body().bytes());
        }
        let Some(view) = req.extensions().get::<Arc<RequestView>>().cloned() else {
            return SlugFuture::Inner {
                future: self.inner.call(req),
            };
        };
        let Some(model) = view.model().and_then(|m| m.strip_prefix('@')) else {
            return SlugFuture::Inner {
                future: self.inner.call(req),
            };
        };
        if model.starts_with("cf/") || model.starts_with("hf/") {
            return SlugFuture::Inner {
                future: self.inner.call(req),
            };
        }
        let answer = |message: String| SlugFuture::Answer {
            response: Some(error::response(
                StatusCode::BAD_REQUEST,
                ErrorBody::new("invalid_request_error", message)
                    .code("invalid_provider")
                    .param("model"),
            )),
        };
        let Some((name, rest)) = model.split_once('/').filter(|(_, m)| !m.is_empty()) else {
            return answer(format!(
                "model: `@{model}` names a provider but no model (expected `@PROVIDER/MODEL`)"
            ));
        };
        let Some(provider) = self.providers.get(name).map(|p| match &self.budget {
            Some(b) => self.tag.layer(Stack::new(b.layer(p.clone()))),
            None => self.tag.layer(p.clone()),
        }) else {
            return answer(format!("model: unknown provider `@{name}`"));
        };
        let mut params = Map::new();
        params.insert("model".into(), Value::from(rest));
        match view.with_overrides(&params) {
            Ok(view) => {
                let len = view.bytes().len();
                *req.body_mut() = BufferedBody::new(view.bytes().clone());
                req.headers_mut()
                    .insert(header::CONTENT_LENGTH, http::HeaderValue::from(len));
                req.extensions_mut().insert(Arc::new(view));
            }
            Err(e) => return answer(e.to_string()),
        }
        if self.route {
            SlugFuture::Provider {
                future: Box::pin(provider.oneshot(req)),
            }
        } else {
            SlugFuture::Inner {
                future: self.inner.call(req),
            }
        }
    }
}
