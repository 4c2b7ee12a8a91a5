//! The pooled HTTP client providers share.

use std::fmt;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use portcullis_core::BufferedBody;

/// The connector under the pool: TLS through rustls for `https://` (and plain `http://`) with
/// the `rustls` feature, plain HTTP only without it.
#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// A pooled HTTP/1.1 and HTTP/2 client; with the `rustls` feature (on by default), TLS through
/// rustls (webpki roots, ring).
///
/// Without `rustls` it speaks plain HTTP only ([`HttpClient::TLS`] is `false`), and a
/// provider refuses an `https://` base URL when it is built.
///
/// Cloning shares the pool. Providers built from one client share its connections, so a
/// gateway with many providers on one host keeps one pool.
#[derive(Clone)]
pub struct HttpClient {
    pub(crate) inner: Client<Connector, BufferedBody>,
    pub(crate) connect_timeout: Duration,
}

/// The default time allowed to open a connection (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpClient {
    /// Whether this build can reach `https://` upstreams (the `rustls` feature).
    pub const TLS: bool = cfg!(feature = "rustls");

    /// A client with the default connect timeout.
    pub fn new() -> Self {
        Self::with_connect_timeout(DEFAULT_CONNECT_TIMEOUT)
    }

    /// A client that gives up opening a connection after `timeout` (504).
    pub fn with_connect_timeout(timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector(http));
        Self {
            inner,
            connect_timeout: timeout,
        }
    }
}

/// rustls (ring, webpki roots) over `http`; HTTP/2 where the upstream offers it by ALPN.
#[cfg(feature = "rustls")]
fn connector(mut http: HttpConnector) -> Connector {
    // The TLS connector hands the TCP connector `https://` URIs too.
    http.enforce_http(false);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .expect("ring supports the default TLS versions")
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}

/// Plain HTTP: the TCP connector refuses any other scheme.
#[cfg(not(feature = "rustls"))]
fn connector(http: HttpConnector) -> Connector {
    http
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}
