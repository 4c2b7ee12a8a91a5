//! The bare proxy: the floor for one HTTP hop. It forwards method, path, headers and body to
//! the upstream with a pooled hyper-util client and streams the answer back, nothing more:
//! no parsing, no buffering, no policy. What the gateway adds over it is the cost of the
//! stack, not of the hop.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = "127.0.0.1:9000".parse().unwrap();
//! portcullis_loadgen::proxy::serve(listener, upstream).await
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Incoming>;
type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Serves the bare proxy on `listener`, forwarding to `upstream`, until the process ends.
pub async fn serve(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    let authority = Authority::try_from(upstream.to_string()).map_err(std::io::Error::other)?;
    let shared = Arc::new((client, authority));
    crate::serve_http1(listener, move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(forward(&shared.0, &shared.1, req).await) }
    })
    .await
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [header::HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

async fn forward(
    client: &Upstream,
    authority: &Authority,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let mut uri = parts.uri.into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority.clone());
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = match Uri::from_parts(uri) {
        Ok(u) => u,
        Err(e) => return bad_gateway(&format!("cannot build the upstream URI: {e}")),
    };
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    match client.request(Request::from_parts(parts, body)).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            for name in &HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, Either::Left(body))
        }
        Err(e) => bad_gateway(&format!("upstream request failed: {e}")),
    }
}

fn bad_gateway(message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({"error": {
        "message": message, "type": "bare_proxy_error", "code": null, "param": null
    }});
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *res.status_mut() = StatusCode::BAD_GATEWAY;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
