//! [`Tag`]: metadata, trace id and caller in; one span and the metrics out.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use portcullis_core::context::{Caller, Metadata, TraceId};
use portcullis_core::error::{self, ErrorBody};
use portcullis_core::headers::first_values;
use portcullis_core::{Body, BoxError, RequestView};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::{Shared, TagLayer};
use crate::metadata::parse_metadata;
use crate::telemetry::{self, Pending};
use crate::trace::{TRACEPARENT, Traceparent};

/// Tags each request with its trace id, metadata and caller, and measures it: one span and
/// the metrics (see the [crate docs](crate)).
///
/// Its `poll_ready` is the inner service's; `call` calls the readied inner service itself
/// (no clone), or answers 400 without calling it when the metadata is invalid.
pub struct Tag<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Tag<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&TagLayer::new(), inner)
    }

    /// A layer with the default settings.
    pub fn layer() -> TagLayer {
        TagLayer::new()
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

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

impl<S: Clone> Clone for Tag<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Tag<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tag")
            .field("inner", &self.inner)
            .field("metadata_header", &self.shared.metadata_header)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

fn text(value: Option<&HeaderValue>) -> Option<&str> {
    value.and_then(|v| v.to_str().ok())
}

/// The trace id of a request: one already decided by an outer layer, else the client's
/// (trace header, then `traceparent`), else a fresh one.
fn trace_id(
    existing: Option<&TraceId>,
    header: Option<&HeaderValue>,
    parent: Option<&Traceparent>,
) -> TraceId {
    if let Some(trace) = existing {
        return trace.clone();
    }
    text(header)
        .and_then(TraceId::parse)
        .or_else(|| parent.map(Traceparent::trace_id))
        .unwrap_or_else(TraceId::generate)
}

/// The 400 for invalid metadata, carrying the trace id like every other answer.
fn refusal(shared: &Shared, message: String, trace: &TraceId) -> Response<Body> {
    let name = shared.metadata_header.as_str();
    let mut response = error::response(
        StatusCode::BAD_REQUEST,
        ErrorBody::new("invalid_request_error", format!("{name}: {message}"))
            .code("invalid_metadata")
            .param(name),
    );
    response
        .headers_mut()
        .insert(shared.trace_header.clone(), trace.header_value());
    response
}

impl<S, B> Service<Request<B>> for Tag<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let shared = &self.shared;

        let [
            traceparent,
            trace_header,
            metadata_header,
            virtual_key_header,
        ] = first_values(
            req.headers(),
            [
                &TRACEPARENT_NAME,
                &shared.trace_header,
                &shared.metadata_header,
                &shared.virtual_key_header,
            ],
        );
        let parent = text(traceparent).and_then(Traceparent::parse);
        let existing = req.extensions().get::<TraceId>();
        let known = existing.is_some();
        let trace = trace_id(existing, trace_header, parent.as_ref());

        let view = req.extensions().get::<Arc<RequestView>>().cloned();
        let model = view.as_deref().and_then(RequestView::model);
        let span = telemetry::request_span(&req, model, &trace, parent.as_ref());
        let results = telemetry::records_results(&span);

        let parsed = match metadata_header {
            Some(value) => match parse_metadata(value.as_bytes(), &shared.limits) {
                Ok(map) => Some(map),
                Err(err) => {
                    let pending = Pending::new(
                        shared.clone(),
                        start,
                        span,
                        results,
                        shared.meter.request(model, &shared.empty),
                        None,
                    );
                    return ResponseFuture::refused(
                        refusal(shared, err.to_string(), &trace),
                        pending,
                    );
                }
            },
            None => None,
        };
        let user = view.as_deref().and_then(RequestView::user);
        let metadata = metadata_with_user(
            parsed,
            req.extensions().get::<Metadata>(),
            user,
            &shared.empty,
        );
        let virtual_key = text(virtual_key_header).map(Arc::from);
        // Inserted only here, once the header values borrowed from the request are read;
        // nothing above reads the trace id from the extensions.
        if !known {
            req.extensions_mut().insert(trace.clone());
        }
        let caller = req.extensions_mut().get_or_insert_default::<Caller>();
        fill_caller(caller, &metadata, virtual_key);
        telemetry::record_request(&span, &metadata, caller, &shared.log_metadata_keys, results);
        let attempts = telemetry::attempts_of(&req, results);
        let pending = Pending::new(
            shared.clone(),
            start,
            span,
            results,
            shared.meter.request(model, &metadata),
            attempts,
        );
        req.extensions_mut().insert(metadata);

        let future = {
            let _entered = pending.span().enter();
            self.inner.call(req)
        };
        ResponseFuture::called(future, pending, Into::into)
    }
}

static TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);

/// The request's metadata: the header's when it sent one, else what an outer layer set, with
/// `_user` defaulting to the body's `user`.
fn metadata_with_user(
    parsed: Option<BTreeMap<String, String>>,
    existing: Option<&Metadata>,
    user: Option<&str>,
    empty: &Metadata,
) -> Metadata {
    match parsed {
        Some(mut map) => {
            if let Some(user) = user {
                map.entry("_user".to_owned())
                    .or_insert_with(|| user.to_owned());
            }
            Metadata::new(map)
        }
        None => match (existing, user) {
            (Some(m), Some(user)) if m.get("_user").is_none() => {
                let mut map: BTreeMap<String, String> = m
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                map.insert("_user".to_owned(), user.to_owned());
                Metadata::new(map)
            }
            (Some(m), _) => m.clone(),
            (None, Some(user)) => {
                let mut map = BTreeMap::new();
                map.insert("_user".to_owned(), user.to_owned());
                Metadata::new(map)
            }
            (None, None) => empty.clone(),
        },
    }
}

/// The caller: what an outer layer recorded (the gateway's API key name) wins; the virtual
/// key header, `metadata._user` and `metadata.team` fill what is missing.
fn fill_caller(caller: &mut Caller, metadata: &Metadata, virtual_key: Option<Arc<str>>) {
    if caller.virtual_key.is_none() {
        caller.virtual_key = virtual_key.filter(|v| !v.is_empty());
    }
    if caller.user.is_none() {
        caller.user = metadata.get("_user").map(Arc::from);
    }
    if caller.team.is_none() {
        caller.team = metadata.get("team").map(Arc::from);
    }
}

/// Whether a response is a Server-Sent Events stream.
pub(crate) fn is_event_stream(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn user_defaults_to_the_body_but_never_overrides() {
        let empty = Metadata::default();
        let m = metadata_with_user(Some(BTreeMap::new()), None, Some("body-user"), &empty);
        assert_eq!(m.get("_user"), Some("body-user"));
        let header: BTreeMap<_, _> = [("_user".to_owned(), "header-user".to_owned())].into();
        let m = metadata_with_user(Some(header), None, Some("body-user"), &empty);
        assert_eq!(m.get("_user"), Some("header-user"));
        let m = metadata_with_user(None, Some(&meta(&[("team", "a")])), Some("u"), &empty);
        assert_eq!(m, meta(&[("_user", "u"), ("team", "a")]));
        assert!(metadata_with_user(None, None, None, &empty).is_empty());
    }

    #[test]
    fn an_outer_caller_wins() {
        let mut outer = Caller::default();
        outer.api_key = Some("prod-key".into());
        outer.team = Some("from-key".into());
        let mut c = outer;
        fill_caller(
            &mut c,
            &meta(&[("_user", "u"), ("team", "t")]),
            Some("vk".into()),
        );
        assert_eq!(c.api_key.as_deref(), Some("prod-key"));
        assert_eq!(c.team.as_deref(), Some("from-key"));
        assert_eq!(c.user.as_deref(), Some("u"));
        assert_eq!(c.virtual_key.as_deref(), Some("vk"));
    }
}
