//! [`Cache`]: looks a request up, answers hits, fills the store from misses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use portcullis_core::context::{Caller, ClientKey};
use portcullis_core::error::{self, ErrorBody};
use portcullis_core::facts::{CacheStatus, ResponseFacts};
use portcullis_core::observe::{Observation, observe_response};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use tokio::sync::watch;
use tower_service::Service;

use crate::entry::{Entry, Shape};
use crate::key::{Key, KeyInput, exact_key, partition};
use crate::layer::{CacheEngine, CacheLayer};
use crate::record::{Inflight, Leader, Pending, RecordBody, Role, follow};
use crate::settings::{Directives, Mode};
use crate::store::Candidate;

/// The cache service (see the [crate docs](crate)); made by [`CacheLayer`].
#[derive(Clone, Debug)]
pub struct Cache<S> {
    inner: S,
    layer: CacheLayer,
}

impl<S> Cache<S> {
    pub(crate) fn new(inner: S, layer: CacheLayer) -> Self {
        Self { inner, layer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What one cached request does, worked out before any I/O.
struct Plan {
    key: Key,
    /// Semantic mode: the partition and the last user turn's text.
    semantic: Option<(Key, String)>,
    shape: Shape,
    /// Serve nothing older.
    accept_age: Duration,
    /// Keep the answer this long.
    ttl: Duration,
    refresh: bool,
    status: CacheStatus,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

impl<S> Service<Request<BufferedBody>> for Cache<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<BufferedBody>) -> Self::Future {
        // The common case of a target with no cache: one header lookup, no parsing.
        if self.layer.settings.is_none()
            && !req.headers().contains_key(crate::settings::names::CACHE)
        {
            return ResponseFuture::direct(self.inner.call(req), CacheStatus::Disabled);
        }
        let directives = match Directives::from_headers(req.headers()) {
            Ok(d) => d,
            Err(message) => {
                return ResponseFuture::answer(error::response(
                    StatusCode::BAD_REQUEST,
                    ErrorBody::new("invalid_request_error", message).code("invalid_cache_header"),
                ));
            }
        };
        let settings = match directives.settings.or(self.layer.settings) {
            Some(s) if !directives.off && !directives.no_store => s,
            _ => return ResponseFuture::direct(self.inner.call(req), CacheStatus::Disabled),
        };
        let view = match req.extensions().get::<Arc<RequestView>>() {
            Some(view) => view.clone(),
            None => match RequestView::parse(req.body().bytes().clone()) {
                Ok(view) => {
                    let view = Arc::new(view);
                    req.extensions_mut().insert(view.clone());
                    view
                }
                // Not a JSON request: nothing to key it by; the service answers it.
                Err(_) => {
                    return ResponseFuture::direct(self.inner.call(req), CacheStatus::Disabled);
                }
            },
        };
        let api_key = req
            .extensions()
            .get::<Caller>()
            .and_then(|c| c.api_key.as_deref())
            .unwrap_or("");
        // A client's own provider key is an account of its own: its answers are its own.
        let byok;
        let api_key = match req.extensions().get::<ClientKey>() {
            None => api_key,
            Some(key) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, key.expose().as_bytes());
                let hex: String = digest.as_ref()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                byok = format!("{api_key}\u{0}byok:{hex}");
                byok.as_str()
            }
        };
        // The tenant: the gateway key's name, then the client's namespace (each
        // length-prefixed in the key, so no choice of namespace reaches another key's entries).
        let input = KeyInput {
            tenant: api_key,
            namespace: directives.namespace.as_deref().unwrap_or(""),
            target: &self.layer.target,
            endpoint: req.uri().path(),
        };
        let key = exact_key(&view, &input);
        let semantic = match settings.mode {
            Mode::Semantic => partition(&view, &input),
            Mode::Simple => None,
        };
        let shape = if view.stream() {
            Shape::Stream {
                include_usage: view.include_usage(),
            }
        } else {
            Shape::Json
        };
        let ttl = directives.ttl.unwrap_or(settings.max_age);
        let accept_age = [Some(ttl), directives.max_age]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(ttl);
        let status = match (directives.refresh, settings.mode) {
            (true, _) => CacheStatus::Refresh,
            (false, Mode::Simple) => CacheStatus::Miss,
            (false, Mode::Semantic) => CacheStatus::SemanticMiss,
        };
        let plan = Plan {
            key,
            semantic,
            shape,
            accept_age,
            ttl,
            refresh: directives.refresh,
            status,
        };
        // A plain lookup in a store that answers in place (memory) is done here, and so is
        // the leading of a miss: the service is then called in place, with no clone of it and
        // no boxed future. A follower of a miss in flight waits for its leader, so it goes
        // the async way, as does everything a store must be waited for (Redis) or a semantic
        // lookup does.
        let engine = &self.layer.engine;
        let mut follower = None;
        if !plan.refresh
            && plan.semantic.is_none()
            && let Some(found) = engine.get_now(&plan.key)
        {
            if let Some(hit) = found.filter(|entry| young(engine, plan.accept_age, entry)) {
                return ResponseFuture::answer(respond(&hit, plan.shape, CacheStatus::Hit));
            }
            match Inflight::join(engine, plan.key) {
                Role::Leader(leader) => {
                    let recording = Recording {
                        leader,
                        ttl: plan.ttl,
                        status: plan.status,
                    };
                    return ResponseFuture::record(self.inner.call(req), recording);
                }
                Role::Follower(rx) => follower = Some(rx),
            }
        }
        // The clone that was driven ready goes with the request; this one stays.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        ResponseFuture::lookup(Box::pin(run(engine.clone(), inner, req, plan, follower)))
    }
}

/// A miss this request leads, its service called in place: what to store its answer with.
struct Recording {
    leader: Leader,
    ttl: Duration,
    status: CacheStatus,
}

/// The lookup, the call on a miss and the recording of its answer. An `async` block, not an
/// `async fn`: an `async fn` keeps its arguments twice in its future (as arguments and as
/// the locals they are moved into), and this one, boxed once, was 2.2 KB.
///
/// `follower`: the request already looked the key up and found a miss in flight, which it
/// follows before anything else.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would keep the arguments twice in the future"
)]
fn run<S>(
    engine: Arc<CacheEngine>,
    mut inner: S,
    req: Request<BufferedBody>,
    plan: Plan,
    follower: Option<watch::Receiver<()>>,
) -> impl Future<Output = Result<Response<Body>, BoxError>>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    async move {
        let mut leader = None;
        let mut vector = None;
        if !plan.refresh {
            let role = match follower {
                Some(rx) => Role::Follower(rx),
                None => {
                    if let Some(hit) = fresh(&engine, &plan, &plan.key).await {
                        return Ok(respond(&hit, plan.shape, CacheStatus::Hit));
                    }
                    if let Some((partition, text)) = &plan.semantic
                        && let Some(query) = engine.embed(text).await
                    {
                        if let Some(hit) = semantic(&engine, &plan, partition, text, &query).await {
                            return Ok(respond(&hit, plan.shape, CacheStatus::SemanticHit));
                        }
                        vector = Some(query);
                    }
                    Inflight::join(&engine, plan.key)
                }
            };
            match role {
                Role::Leader(l) => leader = Some(l),
                Role::Follower(rx) => {
                    follow(rx, engine.coalesce_wait).await;
                    if let Some(hit) = fresh(&engine, &plan, &plan.key).await {
                        return Ok(respond(&hit, plan.shape, CacheStatus::Hit));
                    }
                    // The leader's answer was not stored (an error, a cut stream): fetch our own.
                }
            }
        } else if let Some((_, text)) = &plan.semantic {
            vector = engine.embed(text).await;
        }
        let response = inner.call(req).await.map_err(Into::into)?;
        let Plan {
            key,
            semantic,
            ttl,
            status,
            ..
        } = plan;
        // Built only for an answer that is kept.
        let candidate = || match (semantic, vector) {
            (Some((partition, text)), Some(vector)) => Some((
                partition,
                Candidate {
                    key,
                    embedder: Arc::from(engine.matcher.embedder_id()),
                    text: Arc::from(text),
                    vector: Arc::from(vector),
                },
            )),
            _ => None,
        };
        Ok(record(
            &engine, key, ttl, status, candidate, leader, response,
        ))
    }
}

/// A miss's answer, its cache status set: passed on as it is when it is not to be kept, else
/// with a body that stores what it passes once it has ended cleanly (with the semantic
/// `candidate`, if any, made only then).
fn record(
    engine: &Arc<CacheEngine>,
    key: Key,
    ttl: Duration,
    status: CacheStatus,
    candidate: impl FnOnce() -> Option<(Key, Candidate)>,
    leader: Option<Leader>,
    mut response: Response<Body>,
) -> Response<Body> {
    ResponseFacts::get_mut(&mut response).cache = Some(status);
    if !storable(&response) {
        return response;
    }
    if response.extensions().get::<Observation>().is_none() {
        response = observe_response(response);
    }
    let observation = response
        .extensions()
        .get::<Observation>()
        .cloned()
        .expect("observed above");
    let stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let pending = Pending {
        engine: engine.clone(),
        key,
        ttl,
        stream,
        observation,
        candidate: candidate(),
        leader,
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::boxed(RecordBody::new(body, pending)))
}

/// Only whole successes are kept: never an error, a 246 (a guardrail failed), or an answer
/// a guard judged failed.
fn storable(response: &Response<Body>) -> bool {
    let status = response.status();
    status.is_success()
        && status.as_u16() != 246
        && !ResponseFacts::get(response).is_some_and(|f| f.guards.iter().any(|g| !g.passed))
}

/// The entry under `key` if it is young enough for this request.
async fn fresh(engine: &CacheEngine, plan: &Plan, key: &Key) -> Option<Arc<Entry>> {
    engine
        .get(key)
        .await
        .filter(|entry| young(engine, plan.accept_age, entry))
}

/// Whether `entry` is no older than `accept_age`.
fn young(engine: &CacheEngine, accept_age: Duration, entry: &Entry) -> bool {
    let age = engine.clock.now_millis().saturating_sub(entry.stored_at_ms);
    u128::from(age) <= accept_age.as_millis()
}

/// How many of the most similar candidates a semantic lookup puts through the veto.
const SEMANTIC_VETOES: usize = 8;

/// The best candidate of the partition that the matcher accepts, if its entry is fresh.
async fn semantic(
    engine: &CacheEngine,
    plan: &Plan,
    partition: &Key,
    text: &str,
    query: &[f32],
) -> Option<Arc<Entry>> {
    let candidates = engine.candidates(partition).await;
    let id = engine.matcher.embedder_id();
    let threshold = engine.matcher.threshold();
    // Similarity first (a dot product each), then the lexical veto (microseconds each) on the
    // most similar few only: a partition full of near-duplicates costs a bounded amount.
    let mut close: Vec<(f32, &Candidate)> = candidates
        .iter()
        .filter(|c| &*c.embedder == id)
        .map(|c| (crate::semantic::cosine(query, &c.vector), c))
        .filter(|(s, _)| *s >= threshold)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, c) in close.into_iter().take(SEMANTIC_VETOES) {
        if engine
            .matcher
            .accepts(text, query, &c.text, &c.vector)
            .is_err()
        {
            continue;
        }
        if let Some(entry) = fresh(engine, plan, &c.key).await {
            return Some(entry);
        }
    }
    None
}

/// A hit, in the shape asked for, observed like an upstream answer (so usage is reported;
/// its cost is zero: no upstream was called).
fn respond(entry: &Entry, shape: Shape, status: CacheStatus) -> Response<Body> {
    let mut response = observe_response(entry.to_response(shape));
    ResponseFacts::get_mut(&mut response).cache = Some(status);
    response
}

pin_project! {
    /// The response future of [`Cache`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        /// No cache for this request: the service's own future, the status set on its answer.
        Direct {
            #[pin]
            future: F,
            status: CacheStatus,
        },
        /// An answer already made: a bad cache header's 400, or a hit found in place.
        Answer {
            response: Option<Response<Body>>,
        },
        /// A lookup (store I/O), then the service on a miss.
        Lookup {
            future: BoxFuture,
        },
        /// A miss looked up in place: the service's own future, its answer recorded.
        Record {
            #[pin]
            future: F,
            recording: Option<Recording>,
        },
    }
}

impl<F> ResponseFuture<F> {
    fn direct(future: F, status: CacheStatus) -> Self {
        Self {
            state: State::Direct { future, status },
        }
    }

    fn answer(response: Response<Body>) -> Self {
        Self {
            state: State::Answer {
                response: Some(response),
            },
        }
    }

    fn lookup(future: BoxFuture) -> Self {
        Self {
            state: State::Lookup { future },
        }
    }

    fn record(future: F, recording: Recording) -> Self {
        Self {
            state: State::Record {
                future,
                recording: Some(recording),
            },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Direct { future, status } => {
                let mut response = std::task::ready!(future.poll(cx)).map_err(Into::into)?;
                ResponseFacts::get_mut(&mut response).cache = Some(*status);
                Poll::Ready(Ok(response))
            }
            StateProj::Answer { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after it completed"))),
            StateProj::Lookup { future } => future.as_mut().poll(cx),
            StateProj::Record { future, recording } => {
                let result = std::task::ready!(future.poll(cx));
                // Taken before an error returns: the leader lets its followers go now, not
                // when this future is dropped.
                let Recording {
                    leader,
                    ttl,
                    status,
                } = recording
                    .take()
                    .expect("ResponseFuture polled after it completed");
                let response = result.map_err(Into::into)?;
                let engine = leader.engine().clone();
                let key = leader.key();
                Poll::Ready(Ok(record(
                    &engine,
                    key,
                    ttl,
                    status,
                    || None,
                    Some(leader),
                    response,
                )))
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
