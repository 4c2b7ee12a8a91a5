//! Serving the gateway: HTTP/1.1 and HTTP/2 on one listener, a log line per request, limits
//! on what a client may hold, and a graceful shutdown that lets in-flight requests and
//! streams finish up to a deadline.
//!
//! Limits, from the config's `server` section:
//!
//! - **Connections** (`max_connections`): the accept loop takes a slot before it accepts, so
//!   a full server leaves new connections in the kernel's backlog rather than accepting and
//!   dropping them in a loop. Four spare slots past the limit take connections that may
//!   only ask `GET /health` (anything else is answered 503 `too_many_connections` with
//!   `Retry-After: 1`), one request each, closed after two seconds at most: a health check
//!   gets through a full server, and a client holding the spares loses them within seconds.
//!   Keep `max_connections` well below the process's file-descriptor limit, which upstream
//!   connections share.
//! - **Request head** (`header_read_timeout_ms`): hyper's HTTP/1.1 header timeout; a new
//!   connection must also bring its first request within it (HTTP/2 included).
//! - **Request body** (`body_read_timeout_ms`): a deadline for the whole body, from its
//!   head; past it the request is answered 408 and an HTTP/1.1 connection is closed.
//! - **Idle connections** (`idle_timeout_ms`): closed once no request has been in flight
//!   for that long. HTTP/1.1 connections are also closed by the header timeout, which hyper
//!   counts from the moment the connection waits for its next request.
//! - **HTTP/2 streams** (`h2_max_concurrent_streams`) per connection.
//! - **Accept errors** (out of file descriptors, of memory): a growing wait, 10 ms to 1 s,
//!   with one warning per wait.
//!
//! Each request's log line (target `portcullis::request`) names the peer, method, path, status,
//! time to the response head, trace id, the provider and target that answered, and every
//! upstream attempt the request made, in order: `attempts=targets[0]/a:503:12ms,
//! targets[0]/a:503:9ms,targets[1]/b:200:20ms` (path, provider, status or error class, time to
//! the response head; see [`Attempts`]). The server gives each request its attempt budget
//! (`max_attempts`, as the compiled trees would) so that the attempts of a request that ended
//! in an error are logged too. The line is a tracing event, or text the binary's writer takes
//! directly ([`request_log`]).
//!
//! On shutdown the listener closes and open requests have `shutdown_timeout_ms` to finish.
//! A stream still open then ends with an SSE error event (`server_shutting_down`, in the
//! OpenAI error shape the observer gives a broken upstream stream) rather than being cut.
//! Connections and streams watch both signals (stop taking requests; the grace is over)
//! through a `Signal`, which registers once and costs an atomic load per poll after that.

mod accept;
mod body;
mod graceful;
mod idle;
mod inline_wake;
pub mod request_log;
mod signal;
mod woken;

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use portcullis_core::attempts::Attempts;
use portcullis_core::context::AttemptBudget;
use portcullis_core::error::{ErrorBody, HttpError};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::{Body, FactHeaders, FactHeadersLayer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::{Layer, ServiceExt};

use self::accept::{Backoff, Slot, Slots};
pub use self::body::BodyReadTimeout;
use self::body::{BODY_TIMED_OUT, DeadlineBody, InFlight, ServedBody};
use self::graceful::Graceful;
use self::idle::Activity;
use self::inline_wake::InlineWake;
use self::request_log::RequestLine;
use self::signal::Signal;
use self::woken::Woken;
use crate::config::Server;
use crate::gateway::Gateway;

type ConnectionFuture = Pin<Box<dyn Future<Output = Result<(), portcullis_core::BoxError>> + Send>>;

/// The longest a spare connection (one past `max_connections`) stays open.
const SPARE_LIFETIME: Duration = Duration::from_secs(2);

/// After the shutdown deadline, the time streams have to send their error event and close.
const STREAM_END_GRACE: Duration = Duration::from_secs(1);

/// The answer's trace id header, for the log line (a lookup by `&str` parses the name).
const TRACE_ID: http::HeaderName =
    http::HeaderName::from_static(portcullis_core::headers::TRACE_ID_HEADER);

/// The gateway's whole service: trace ids and fact headers around the gateway.
pub type App = FactHeaders<Gateway>;

/// Wraps a gateway with the fact headers.
pub fn app(gateway: Gateway) -> App {
    FactHeadersLayer::new().layer(gateway)
}

/// What one connection's requests share.
#[derive(Debug)]
pub(crate) struct Conn {
    peer: SocketAddr,
    activity: Activity,
    body_read_timeout: Duration,
    /// Upstream attempts per request (`server.max_attempts`).
    max_attempts: u32,
    /// Turns `true` when the shutdown deadline passes.
    drain: watch::Receiver<bool>,
    /// Past `max_connections`: `GET /health` only.
    spare: bool,
}

impl Conn {
    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The shutdown deadline of a stream on this connection.
    fn deadline(&self) -> Signal {
        Signal::new(&self.drain)
    }
}

/// The connection builder: full connections, or spare ones past the limit.
fn builder(server: &Server, spare: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let (header_timeout, streams) = if spare {
        (server.header_read_timeout.min(SPARE_LIFETIME), 1)
    } else {
        (server.header_read_timeout, server.h2_max_concurrent_streams)
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(!spare);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(streams);
    builder
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to `grace` for open connections (and their streams) to finish. The limits are the
/// gateway config's `server` settings (see the [module docs](self)).
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let server = gateway.config().server.clone();
    let consoles = gateway.clone();
    let app = app(gateway);
    let graceful = Graceful::new();
    let (drain, draining) = watch::channel(false);
    let full_builder = builder(&server, false);
    let spare_builder = builder(&server, true);
    let slots = Slots::new(server.max_connections);
    let mut backoff = Backoff::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.acquire() => slot,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff.succeeded();
                    pair
                }
                Err(err) => {
                    // Keep serving the connections we have; wait out a shortage of descriptors
                    // or memory instead of failing again at once.
                    if let Some(wait) = backoff.failed(&err) {
                        tracing::warn!(%err, "accept failed; accepting again in {} ms", wait.as_millis());
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = &mut shutdown => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = slots.promote(slot);
        let spare = matches!(slot, Slot::Spare(_));
        let _ = tcp.set_nodelay(true);
        let conn = Arc::new(Conn {
            peer,
            activity: Activity::new(),
            body_read_timeout: server.body_read_timeout,
            max_attempts: server.max_attempts,
            drain: draining.clone(),
            spare,
        });
        let service = served(app.clone(), conn.clone());
        let builder = if spare { &spare_builder } else { &full_builder };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        // Boxed outside the async block: rustc cannot prove an `async` block holding this
        // connection `Send` (rust-lang/rust#102211).
        let connection: ConnectionFuture = Box::pin(connection);
        // Reading a request's body wakes the connection's own task (see `inline_wake`).
        let connection = InlineWake::new(connection);
        let (first_request, idle) = if spare {
            (SPARE_LIFETIME, SPARE_LIFETIME)
        } else {
            (server.header_read_timeout, server.idle_timeout)
        };
        tokio::spawn(async move {
            let _slot = slot;
            let lifetime = async {
                match spare {
                    true => tokio::time::sleep(SPARE_LIFETIME).await,
                    false => std::future::pending().await,
                }
            };
            // The idle timer is polled only when it fired (see `woken`), and in a fixed order
            // (no random draw on every wake). The timers first: a connection that spends the
            // task's budget on every poll (a flood of HTTP/2 pings) would otherwise leave them
            // `Pending` for good, and a timer that is due wins over the connection.
            let idle = std::pin::pin!(conn.activity().idle(first_request, idle));
            let idle = Woken::new(idle);
            tokio::select! {
                biased;
                () = idle => {
                    tracing::debug!(peer = %conn.peer, "closing a connection that carries no request");
                }
                () = lifetime => {}
                ended = connection => if let Err(err) = ended {
                    tracing::debug!(%err, "connection ended with an error");
                },
            }
        });
    }
    drop(listener);
    consoles.close_consoles();
    tracing::info!(
        "shutting down: waiting up to {} ms for open requests",
        grace.as_millis()
    );
    let mut closed = std::pin::pin!(graceful.shutdown());
    tokio::select! {
        () = &mut closed => {
            tracing::info!("all connections closed");
            return Ok(());
        }
        () = tokio::time::sleep(grace) => {}
    }
    tracing::warn!("shutdown deadline passed; ending open streams with an error event");
    drain.send_replace(true);
    tokio::select! {
        () = &mut closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(STREAM_END_GRACE) => tracing::warn!("closing the connections left"),
    }
    Ok(())
}

/// The service of one connection: the request body under its deadline, the request counted
/// on its connection, one log line per request when its response head is ready.
fn served(
    app: App,
    conn: Arc<Conn>,
) -> impl tower_service::Service<
    Request<Incoming>,
    Response = Response<ServedBody>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response<ServedBody>, std::convert::Infallible>> + Send,
> + Clone {
    tower::service_fn(move |mut req: Request<Incoming>| {
        let in_flight = InFlight::start(conn.clone());
        // The same budget the compiled tree would give (an outer budget wins), given here so
        // that this layer still holds the attempts when the request ends in an error. Only
        // the POST endpoints reach an upstream.
        let attempts = (req.method() == Method::POST).then(|| {
            let budget = AttemptBudget::new(conn.max_attempts);
            let attempts = budget.attempts();
            req.extensions_mut().insert(budget);
            attempts
        });
        // Nothing is copied for the log line unless it will be written.
        let seen = request_log::enabled().then(|| (req.method().clone(), req.uri().clone()));
        let version = req.version();
        let start = tokio::time::Instant::now();
        let allowed = !conn.spare || (req.method() == Method::GET && req.uri().path() == "/health");
        let call = allowed.then(|| {
            let after = conn.body_read_timeout;
            app.clone()
                .oneshot(req.map(|body| DeadlineBody::new(body, after)))
        });
        let conn = conn.clone();
        BODY_TIMED_OUT.scope(Cell::new(None), async move {
            let mut response = match call {
                Some(call) => call.await?,
                None => too_many_connections(version),
            };
            if let Some(err) = BODY_TIMED_OUT.with(Cell::take) {
                response = HttpError::from(&err).to_response();
                // The rest of the body may still be on its way: this connection is done.
                close_after(&mut response, version);
            }
            if let Some((method, uri)) = seen {
                log_request(
                    &conn,
                    &method,
                    uri.path(),
                    start,
                    &response,
                    attempts.as_ref(),
                );
            }
            let deadline = is_event_stream(&response).then(|| conn.deadline());
            Ok(response.map(|body| ServedBody::new(body, in_flight, deadline)))
        })
    })
}

fn log_request(
    conn: &Conn,
    method: &Method,
    path: &str,
    start: tokio::time::Instant,
    response: &Response<Body>,
    attempts: Option<&Attempts>,
) {
    let facts = ResponseFacts::get(response);
    RequestLine {
        peer: conn.peer,
        method,
        path,
        status: response.status(),
        elapsed: start.elapsed(),
        trace_id: response
            .headers()
            .get(&TRACE_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        provider: facts.and_then(|f| f.provider.as_deref()).unwrap_or(""),
        target: facts.and_then(|f| f.target),
        attempts,
    }
    .log();
}

/// The answer on a spare connection to anything but `GET /health`.
fn too_many_connections(version: Version) -> Response<Body> {
    let mut response = portcullis_core::error::response(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorBody::new(
            "server_error",
            "the gateway is at its connection limit; retry shortly",
        )
        .code("too_many_connections"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    close_after(&mut response, version);
    response
}

/// Asks an HTTP/1 client to close the connection after this response (HTTP/2 has no such
/// header; its connection stays).
fn close_after(response: &mut Response<Body>, version: Version) {
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

fn is_event_stream(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
