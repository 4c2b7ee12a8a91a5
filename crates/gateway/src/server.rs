//! Serving the gateway: HTTP/1.1 and HTTP/2 on one listener, a log line per request, and a
//! graceful shutdown that lets in-flight requests and streams finish up to a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use portcullis_core::facts::ResponseFacts;
use portcullis_core::{Body, FactHeaders, FactHeadersLayer};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

use crate::gateway::Gateway;

type ConnectionFuture = Pin<Box<dyn Future<Output = Result<(), portcullis_core::BoxError>> + Send>>;

/// The gateway's whole service: trace ids and fact headers around the gateway.
pub type App = FactHeaders<Gateway>;

/// Wraps a gateway with the fact headers.
pub fn app(gateway: Gateway) -> App {
    FactHeadersLayer::new().layer(gateway)
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to `grace` for open connections (and their streams) to finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let app = app(gateway);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: keep serving the connections we have.
                    tracing::warn!(%err, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = logged(app.clone(), peer);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        // Boxed outside the async block: rustc cannot prove an `async` block holding this
        // connection `Send` (rust-lang/rust#102211).
        let connection: ConnectionFuture = Box::pin(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        "shutting down: waiting up to {} ms for open requests",
        grace.as_millis()
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown deadline passed; closing open connections"),
    }
    Ok(())
}

/// One log line per request, when its response head is ready.
fn logged(
    app: App,
    peer: SocketAddr,
) -> impl tower_service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send,
> + Clone {
    tower::service_fn(move |req: Request<Incoming>| {
        // Nothing is copied for the log line unless it will be written.
        let seen = tracing::enabled!(target: "portcullis::request", tracing::Level::INFO)
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        let start = tokio::time::Instant::now();
        let response = app.clone().oneshot(req);
        async move {
            let response = response.await?;
            let Some((method, path)) = seen else {
                return Ok(response);
            };
            let facts = ResponseFacts::get(&response);
            tracing::info!(
                target: "portcullis::request",
                %peer,
                %method,
                path,
                status = response.status().as_u16(),
                ms = %format_args!("{:.3}", start.elapsed().as_secs_f64() * 1000.0),
                trace_id = response.headers().get("x-portkey-trace-id").and_then(|v| v.to_str().ok()).unwrap_or(""),
                provider = facts.and_then(|f| f.provider.as_deref()).unwrap_or(""),
                target = facts.and_then(|f| f.target).map(|t| t.to_string()).unwrap_or_default(),
            );
            Ok(response)
        }
    })
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
