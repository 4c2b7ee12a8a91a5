//! The request span lists every upstream attempt: from the response facts when the attempt
//! limit is below the tag layer, and from an outer budget when the request ends in an error.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use portcullis_core::context::{AttemptBudget, TargetPath};
use portcullis_core::error::{UpstreamError, UpstreamErrorKind};
use portcullis_core::{
    AttemptLimitLayer, Body, BoxError, BufferedBody, EdgeLayer, SpendAttemptLayer,
};
use portcullis_tag::TagLayer;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::Registry;

/// Every value recorded on a span field named `portcullis.attempt*`.
#[derive(Clone, Default)]
struct Fields(Arc<Mutex<Vec<(String, String)>>>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name().starts_with("portcullis.attempt") {
            self.0
                .lock()
                .unwrap()
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Fields {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        attrs.record(&mut self.clone());
    }

    fn on_record(&self, _id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        values.record(&mut self.clone());
    }
}

impl Fields {
    fn get(&self, name: &str) -> Option<String> {
        let fields = self.0.lock().unwrap();
        fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// A leaf that answers `status` (or fails to connect, for `None`) as provider `name`.
fn leaf(
    name: &'static str,
    status: Option<u16>,
) -> impl tower::Service<
    Request<BufferedBody>,
    Response = Response<Body>,
    Error = BoxError,
    Future: Send,
> + Clone {
    SpendAttemptLayer::new().provider(name).layer(service_fn(
        move |_req: Request<BufferedBody>| async move {
            match status {
                Some(s) => Ok(Response::builder()
                    .status(s)
                    .body(Body::from("{}"))
                    .unwrap()),
                None => Err::<_, BoxError>(
                    UpstreamError::new(UpstreamErrorKind::Connect, "connection refused").into(),
                ),
            }
        },
    ))
}

/// Target 0 (`a`), then target 1 (`b`, answering `last`).
async fn two_tries(
    req: Request<BufferedBody>,
    last: Option<u16>,
) -> Result<Response<Body>, BoxError> {
    let copy = |target| {
        let mut r = Request::new(req.body().clone());
        *r.extensions_mut() = req.extensions().clone();
        TargetPath::enter(&mut r, target);
        r
    };
    let first = leaf("a", Some(503)).oneshot(copy(0)).await?;
    assert_eq!(first.status(), 503);
    leaf("b", last).oneshot(copy(1)).await
}

fn chat() -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","messages":[]}"#,
        )))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_span_lists_the_attempts_of_its_response() {
    let fields = Fields::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(fields.clone()));
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(TagLayer::new())
        .layer(AttemptLimitLayer::new(5))
        .service(service_fn(|req| two_tries(req, Some(200))));
    let res = stack.oneshot(chat()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(fields.get("portcullis.attempt_count").as_deref(), Some("2"));
    assert_eq!(
        fields.get("portcullis.attempts").as_deref(),
        Some("targets[0]/a:503:0ms,targets[1]/b:200:0ms")
    );
}

#[tokio::test(start_paused = true)]
async fn with_an_outer_budget_an_error_shows_its_attempts_too() {
    let fields = Fields::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(fields.clone()));
    let stack = ServiceBuilder::new()
        .layer(EdgeLayer::new())
        .layer(TagLayer::new())
        .layer(AttemptLimitLayer::new(5))
        .service(service_fn(|req| two_tries(req, None)));
    let mut req = chat();
    req.extensions_mut().insert(AttemptBudget::new(5));
    let res = stack.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(
        fields.get("portcullis.attempts").as_deref(),
        Some("targets[0]/a:503:0ms,targets[1]/b:connect:0ms")
    );
}
