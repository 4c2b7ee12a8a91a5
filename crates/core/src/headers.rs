//! Response facts as response headers, Portkey's names by default.
//!
//! [`FactHeaders`] gives every request a [`TraceId`] (the client's `x-portkey-trace-id` when
//! it sends a usable one, else the trace id of a W3C `traceparent`, else a fresh one) before the stack below sees it, and on the way
//! out writes the trace id and the [`ResponseFacts`] as headers:
//!
//! | fact | header (Portkey) |
//! |---|---|
//! | trace id | `x-portkey-trace-id` |
//! | retries | `x-portkey-retry-attempt-count` (0, n, or -1 when exhausted) |
//! | target path | `x-portkey-last-used-option-index` (`config.targets[1]`) |
//! | cache status | `x-portkey-cache-status` |
//! | provider | `x-portkey-provider` |
//!
//! [`first_values`] reads several request headers in one pass, for layers that read a few
//! of every request.
//!
//! ```
//! use portcullis_core::{Body, BoxError, FactHeadersLayer};
//! use portcullis_core::facts::{ResponseFacts, Retries};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let stack = ServiceBuilder::new()
//!     .layer(FactHeadersLayer::new())
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         let mut res = http::Response::new(Body::empty());
//!         ResponseFacts::get_mut(&mut res).retries = Some(Retries::Made(1));
//!         Ok::<_, BoxError>(res)
//!     }));
//! let req = http::Request::get("/").header("x-portkey-trace-id", "abc").body(()).unwrap();
//! let res = stack.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["x-portkey-trace-id"], "abc");
//! assert_eq!(res.headers()["x-portkey-retry-attempt-count"], "1");
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::TraceId;
use crate::facts::ResponseFacts;

/// Portkey's trace id header, `x-portkey-trace-id`: read on requests, written on answers.
pub const TRACE_ID_HEADER: &str = "x-portkey-trace-id";

/// The first value of each of `names` in `headers` (what [`HeaderMap::get`] answers), found
/// in one pass over the headers: for a layer that reads several headers of every request,
/// where a lookup per name would hash each name, and a request has a handful of headers.
///
/// ```
/// use http::{HeaderMap, HeaderName};
/// use portcullis_core::headers::first_values;
///
/// static TTL: HeaderName = HeaderName::from_static("x-ttl");
/// let mut headers = HeaderMap::new();
/// headers.append(&TTL, "60".parse().unwrap());
/// headers.append(&TTL, "90".parse().unwrap());
/// let [ttl, cache_control] = first_values(&headers, [&TTL, &http::header::CACHE_CONTROL]);
/// assert_eq!(ttl.unwrap(), "60");
/// assert!(cache_control.is_none());
/// ```
///
/// [`HeaderMap::get`]: http::HeaderMap::get
pub fn first_values<'a, const N: usize>(
    headers: &'a http::HeaderMap,
    names: [&HeaderName; N],
) -> [Option<&'a HeaderValue>; N] {
    let mut found = [None; N];
    for (name, value) in headers {
        // Every slot of the name: a name asked for twice is answered twice, as two lookups
        // would answer it.
        for (slot, wanted) in found.iter_mut().zip(names) {
            if *wanted == name {
                slot.get_or_insert(value);
            }
        }
    }
    found
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The header names [`FactHeaders`] reads and writes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FactHeaderNames {
    /// The trace id, read from the request and written to the response.
    pub trace_id: HeaderName,
    /// Retries made.
    pub retries: HeaderName,
    /// The path of the target that answered.
    pub target: HeaderName,
    /// The cache status.
    pub cache: HeaderName,
    /// The provider that answered.
    pub provider: HeaderName,
}

impl FactHeaderNames {
    /// Portkey's names.
    pub fn portkey() -> Self {
        Self {
            trace_id: HeaderName::from_static(TRACE_ID_HEADER),
            retries: HeaderName::from_static("x-portkey-retry-attempt-count"),
            target: HeaderName::from_static("x-portkey-last-used-option-index"),
            cache: HeaderName::from_static("x-portkey-cache-status"),
            provider: HeaderName::from_static("x-portkey-provider"),
        }
    }
}

impl Default for FactHeaderNames {
    fn default() -> Self {
        Self::portkey()
    }
}

/// Applies [`FactHeaders`] to a service.
#[derive(Clone, Debug, Default)]
pub struct FactHeadersLayer {
    names: Arc<FactHeaderNames>,
}

impl FactHeadersLayer {
    /// A layer with Portkey's header names.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer with other header names.
    pub fn with_names(names: FactHeaderNames) -> Self {
        Self {
            names: Arc::new(names),
        }
    }
}

impl<S> Layer<S> for FactHeadersLayer {
    type Service = FactHeaders<S>;

    fn layer(&self, inner: S) -> FactHeaders<S> {
        FactHeaders {
            inner,
            names: self.names.clone(),
        }
    }
}

/// Assigns trace ids and writes response facts as headers (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct FactHeaders<S> {
    inner: S,
    names: Arc<FactHeaderNames>,
}

impl<S> FactHeaders<S> {
    /// Wraps `inner` with Portkey's header names.
    pub fn new(inner: S) -> Self {
        FactHeadersLayer::new().layer(inner)
    }

    /// A layer with Portkey's header names.
    pub fn layer() -> FactHeadersLayer {
        FactHeadersLayer::new()
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

impl<S, ReqB, ResB> Service<Request<ReqB>> for FactHeaders<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let trace = match req.extensions().get::<TraceId>() {
            Some(trace) => trace.clone(),
            None => {
                let header =
                    |name: &HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
                let trace = header(&self.names.trace_id)
                    .and_then(TraceId::parse)
                    .or_else(|| header(&TRACEPARENT).and_then(TraceId::from_traceparent))
                    .unwrap_or_else(TraceId::generate);
                req.extensions_mut().insert(trace.clone());
                trace
            }
        };
        ResponseFuture {
            inner: self.inner.call(req),
            trace: Some(trace),
            names: self.names.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`FactHeaders`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        trace: Option<TraceId>,
        names: Arc<FactHeaderNames>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let names = &**this.names;
        // Parts, so the facts are read where they are while the headers are written: taking
        // them out of the extensions and putting them back costs two allocations.
        let (mut parts, body) = response.into_parts();
        let facts = parts.extensions.get::<ResponseFacts>();
        let headers = &mut parts.headers;
        if let Some(trace) = this.trace.take() {
            headers.insert(names.trace_id.clone(), trace.header_value());
        }
        if let Some(facts) = facts {
            if let Some(retries) = facts.retries {
                headers.insert(names.retries.clone(), retries_value(retries.header_value()));
            }
            if let Some(target) = facts.target
                && let Ok(value) = if target.is_root() {
                    Ok(HeaderValue::from_static("config"))
                } else {
                    HeaderValue::from_str(target.config_text().as_str())
                }
            {
                headers.insert(names.target.clone(), value);
            }
            if let Some(cache) = facts.cache {
                headers.insert(
                    names.cache.clone(),
                    HeaderValue::from_static(cache.as_str()),
                );
            }
            if let Some(provider) = &facts.provider
                && let Ok(value) = HeaderValue::from_str(provider)
            {
                headers.insert(names.provider.clone(), value);
            }
        }
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}

/// A retry count as its header value: the usual counts (-1 for exhausted, 0 to 9) are static
/// text, where `HeaderValue::from` allocates the digits of each.
fn retries_value(n: i64) -> HeaderValue {
    const SMALL: [&str; 11] = ["-1", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match n
        .checked_add(1)
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| SMALL.get(i))
    {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(n),
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::{first_values, retries_value};

    #[test]
    fn retry_counts_are_their_decimals() {
        for n in -3..=25i64 {
            assert_eq!(retries_value(n), HeaderValue::from(n), "{n}");
        }
        assert_eq!(retries_value(i64::MAX), HeaderValue::from(i64::MAX));
    }

    /// Whatever the headers (names given once, several times, not at all; standard names
    /// and others), the one pass answers what a lookup per name answers.
    #[test]
    fn first_values_are_what_lookups_find() {
        let pool = [
            HeaderName::from_static("x-portkey-cache"),
            HeaderName::from_static("x-portkey-cache-ttl"),
            http::header::CACHE_CONTROL,
            http::header::CONTENT_TYPE,
            HeaderName::from_static("traceparent"),
        ];
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..2_000 {
            let mut headers = HeaderMap::new();
            for i in 0..rng.usize(0..8) {
                let name = &pool[rng.usize(..pool.len())];
                headers.append(name, HeaderValue::from(i));
            }
            // A name asked for twice is answered in both places.
            let names = [&pool[0], &pool[1], &pool[2], &pool[4], &pool[1]];
            let found = first_values(&headers, names);
            for (name, value) in names.into_iter().zip(found) {
                assert_eq!(value, headers.get(name), "{name} in {headers:?}");
            }
        }
    }
}
