//! The fake OpenAI-compatible upstream over TLS (the `tls` feature): a certificate authority
//! made for the test, a server certificate it signs for `127.0.0.1` and `localhost`, and
//! HTTP/2 or HTTP/1.1 as ALPN chooses, so a client's `https://` path is tested end to end
//! without a certificate file or the network.
//!
//! ```
//! use portcullis_testkit::FakeUpstream;
//! use portcullis_testkit::tls::{Alpn, TestCa};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let ca = TestCa::new();
//! let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
//! assert!(upstream.base_url().starts_with("https://127.0.0.1:"));
//! assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! # }
//! ```

use std::sync::Arc;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::TcpListener;
pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{FakeUpstream, Shared, handle};

/// The protocols a TLS upstream offers by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` and `http/1.1`: a client that offers `h2` speaks HTTP/2.
    H2AndHttp1,
    /// `http/1.1` only.
    Http1,
}

/// A certificate authority made for one test, and the server certificate it signed.
pub struct TestCa {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new authority (ECDSA P-256) and a server certificate for `127.0.0.1` and
    /// `localhost`.
    ///
    /// # Panics
    /// If rcgen cannot make the keys or certificates.
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("test CA: key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("test CA: params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "portcullis test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("test CA: certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("test server: key");
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("test server: params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "portcullis fake upstream");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("test server: certificate");
        Self {
            ca_pem: pem(ca_cert.der()),
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
        }
    }

    /// The authority's certificate, PEM: what a client must trust.
    pub fn pem(&self) -> &str {
        &self.ca_pem
    }

    /// A TLS acceptor with the server certificate, offering `alpn`'s protocols (for a server
    /// of the caller's own, such as the load run's fake upstream).
    pub fn acceptor(&self, alpn: Alpn) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)
            .expect("test server: certificate and key match");
        config.alpn_protocols = match alpn {
            Alpn::H2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
        };
        TlsAcceptor::from(Arc::new(config))
    }
}

/// A certificate as PEM: its DER in base64, 64 characters a line.
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

impl FakeUpstream {
    /// Like [`FakeUpstream::start`], over TLS with `ca`'s server certificate: its URLs are
    /// `https://127.0.0.1:PORT`, and each connection speaks the protocol ALPN chose (HTTP/1.1
    /// when the client offered none). [`Recorded::version`](crate::Recorded::version) says
    /// which a request came in.
    ///
    /// # Panics
    /// If binding fails or there is no current tokio runtime.
    pub async fn start_tls(ca: &TestCa, alpn: Alpn) -> FakeUpstream {
        let (listener, addr) = crate::bind_loopback("fake upstream").await;
        let shared = Shared::default();
        let handler = shared.clone();
        let acceptor = ca.acceptor(alpn);
        let task = tokio::spawn(serve_tls(listener, acceptor, move |req| {
            handle(handler.clone(), req)
        }));
        FakeUpstream {
            addr,
            shared,
            task,
            scheme: "https",
        }
    }
}

async fn serve_tls<F, Fut>(listener: TcpListener, acceptor: TlsAcceptor, handle: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<hyper::Response<crate::FakeBody>>>
        + Send
        + 'static,
{
    crate::accept_each(listener, move |stream| {
        let acceptor = acceptor.clone();
        let service = service_fn(handle.clone());
        async move { serve_connection(&acceptor, stream, service).await }
    })
    .await;
}

/// Serves one accepted connection over TLS with `acceptor`: HTTP/2 when ALPN chose `h2`,
/// HTTP/1.1 (keep-alive) otherwise, until the connection ends. A client that does not trust
/// the certificate ends it at the handshake.
pub async fn serve_connection<S, B>(acceptor: &TlsAcceptor, tcp: tokio::net::TcpStream, service: S)
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    if h2 {
        let _ = http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    } else {
        let _ = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service)
            .await;
    }
}
