//! The pooled HTTP client providers share.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use portcullis_core::{BoxError, BufferedBody};

/// The connector under the pool: TLS through rustls for `https://` (and plain `http://`) with
/// the `rustls` feature, plain HTTP only without it; its connections described without their
/// addresses (see [`Undescribed`]).
#[cfg(feature = "rustls")]
type Connector = Undescribed<hyper_rustls::HttpsConnector<HttpConnector>>;
#[cfg(not(feature = "rustls"))]
type Connector = Undescribed<HttpConnector>;

/// A pooled HTTP/1.1 and HTTP/2 client; with the `rustls` feature (on by default), TLS through
/// rustls (ring), trusting the webpki roots and any added with [`HttpClient::builder`].
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
        Self::builder().build()
    }

    /// A client that gives up opening a connection after `timeout` (504).
    pub fn with_connect_timeout(timeout: Duration) -> Self {
        Self::builder().connect_timeout(timeout).build()
    }

    /// A client built step by step: its connect timeout and, with `rustls`, the certificate
    /// authorities it trusts beside the webpki roots (an upstream behind a private CA).
    ///
    /// ```
    /// use std::time::Duration;
    /// use portcullis_provider::HttpClient;
    ///
    /// let client = HttpClient::builder()
    ///     .connect_timeout(Duration::from_secs(3))
    ///     .build();
    /// # let _ = client;
    /// ```
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            #[cfg(feature = "rustls")]
            roots: rustls::RootCertStore::empty(),
        }
    }
}

/// Builds an [`HttpClient`]; see [`HttpClient::builder`].
#[derive(Clone, Debug)]
pub struct HttpClientBuilder {
    connect_timeout: Duration,
    /// Trusted beside the webpki roots.
    #[cfg(feature = "rustls")]
    roots: rustls::RootCertStore,
}

impl HttpClientBuilder {
    /// The time allowed to open a connection, TCP and TLS (504 past it).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts the certificates in `pem` (one or more `CERTIFICATE` sections) as roots, beside
    /// the webpki roots. Sections of other kinds (a key beside them) are read but not
    /// trusted.
    ///
    /// # Errors
    /// If `pem` holds no certificate, a section is not valid PEM, or a certificate is not one
    /// a root can be made of; the error names the section, counted from 1 over all of them.
    /// Nothing of `pem` is trusted then.
    #[cfg(feature = "rustls")]
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, CertificateError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::{PemObject, SectionKind};
        let mut added = rustls::RootCertStore::empty();
        for (i, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).enumerate() {
            let (kind, der) =
                section.map_err(|e| CertificateError(format!("PEM section {}: {e}", i + 1)))?;
            if kind != SectionKind::Certificate {
                continue;
            }
            added
                .add(CertificateDer::from(der))
                .map_err(|e| CertificateError(format!("PEM section {}: {e}", i + 1)))?;
        }
        if added.is_empty() {
            return Err(CertificateError(
                "no CERTIFICATE section in the PEM".to_owned(),
            ));
        }
        self.roots.roots.extend(added.roots);
        Ok(self)
    }

    /// The client.
    pub fn build(self) -> HttpClient {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        #[cfg(feature = "rustls")]
        let connector = connector(http, self.roots);
        #[cfg(not(feature = "rustls"))]
        let connector = connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        HttpClient {
            inner,
            connect_timeout: self.connect_timeout,
        }
    }
}

/// Certificates [`HttpClientBuilder::add_root_certificates_pem`] could not trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateError(String);

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "root certificates: {}", self.0)
    }
}

impl std::error::Error for CertificateError {}

/// rustls (ring) over `http`, trusting the webpki roots and `extra`; HTTP/2 where the
/// upstream offers it by ALPN.
#[cfg(feature = "rustls")]
fn connector(mut http: HttpConnector, extra: rustls::RootCertStore) -> Connector {
    // The TLS connector hands the TCP connector `https://` URIs too.
    http.enforce_http(false);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.roots.extend(extra.roots);
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Undescribed(
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http),
    )
}

/// Plain HTTP: the TCP connector refuses any other scheme.
#[cfg(not(feature = "rustls"))]
fn connector(http: HttpConnector) -> Connector {
    Undescribed(http)
}

/// A connector whose connections say whether they are proxied or speak HTTP/2 (by ALPN), and
/// nothing more. The connector's own description carries the two socket addresses
/// (`HttpInfo`), which hyper's client copies into the extensions of every response: a boxed
/// value per response that nothing reads.
#[derive(Clone)]
pub(crate) struct Undescribed<C>(C);

impl<C> tower_service::Service<Uri> for Undescribed<C>
where
    C: tower_service::Service<Uri>,
    C::Response: Connection + Read + Write + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = Plain<C::Response>;
    type Error = BoxError;
    // Boxed: a future per new connection, not per request.
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(Plain).map_err(Into::into) })
    }
}

/// A connection of [`Undescribed`].
pub(crate) struct Plain<T>(T);

impl<T: Connection> Connection for Plain<T> {
    fn connected(&self) -> Connected {
        let described = self.0.connected();
        let plain = Connected::new().proxy(described.is_proxied());
        if described.is_negotiated_h2() {
            plain.negotiated_h2()
        } else {
            plain
        }
    }
}

impl<T: Read + Unpin> Read for Plain<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Plain<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Described(Connected);

    impl Connection for Described {
        fn connected(&self) -> Connected {
            let c = Connected::new().proxy(self.0.is_proxied()).extra(7u8);
            if self.0.is_negotiated_h2() {
                c.negotiated_h2()
            } else {
                c
            }
        }
    }

    #[test]
    fn a_plain_connection_keeps_its_protocol_and_proxy_and_drops_the_rest() {
        for (h2, proxied) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut c = Connected::new().proxy(proxied);
            if h2 {
                c = c.negotiated_h2();
            }
            let described = Described(c);
            let mut extensions = http::Extensions::new();
            described.connected().get_extras(&mut extensions);
            assert_eq!(
                extensions.get::<u8>(),
                Some(&7),
                "the fixture describes itself"
            );

            let plain = Plain(described).connected();
            assert_eq!(plain.is_negotiated_h2(), h2);
            assert_eq!(plain.is_proxied(), proxied);
            let mut extensions = http::Extensions::new();
            plain.get_extras(&mut extensions);
            assert!(extensions.get::<u8>().is_none());
        }
    }
}
