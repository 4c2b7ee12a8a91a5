//! The bare proxy: the floor for one HTTP hop. It reads the request body whole, forwards
//! method, path, headers and body to the upstream with a pooled hyper-util client and streams
//! the answer back, nothing more: no parsing, no policy. What the gateway adds over it is the
//! cost of the stack, not of the hop.
//!
//! [`BodyMode::Whole`] is the floor the performance goal names ("reads the body whole, forwards
//! it over a pooled client"), and the gateway's own first step: it must have the body to read
//! it. It pays, at one connection, a wake of the connection's own task when its service takes
//! the body (hyper's; see BENCHMARKS.md, session 7). [`BodyMode::Stream`] hands the client's
//! body to the upstream connection as it comes, which a gateway that reads the body cannot
//! do, and does not pay that wake.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use portcullis_loadgen::proxy::BodyMode;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = "127.0.0.1:9000".parse().unwrap();
//! portcullis_loadgen::proxy::serve(listener, upstream, BodyMode::Whole).await
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

type ProxyBody = Either<Incoming, Full<Bytes>>;
type Upstream = Client<HttpConnector, ProxyBody>;

/// How the proxy forwards the client's request body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyMode {
    /// Read whole, then sent (the floor for a gateway, which reads the body).
    #[default]
    Whole,
    /// Handed to the upstream connection as it comes.
    Stream,
}

/// Serves the bare proxy on `listener`, forwarding to `upstream`, until the process ends.
pub async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: BodyMode,
) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    let authority = Authority::try_from(upstream.to_string()).map_err(std::io::Error::other)?;
    let shared = Arc::new((client, authority));
    crate::serve_http(listener, None, move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(forward(&shared.0, &shared.1, mode, req).await) }
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
    mode: BodyMode,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let body = match mode {
        BodyMode::Stream => Either::Left(body),
        BodyMode::Whole => match body.collect().await {
            Ok(whole) => Either::Right(Full::new(whole.to_bytes())),
            Err(e) => return bad_gateway(&format!("cannot read the request body: {e}")),
        },
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Over loopback, both ways of forwarding the body: the upstream gets the body the client
    /// sent, the client gets the upstream's answer.
    #[tokio::test]
    async fn the_body_reaches_the_upstream_and_the_answer_the_client_in_both_modes() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(crate::serve_http(
            upstream,
            None,
            |req: Request<Incoming>| async move {
                let path = req.uri().path().to_owned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let echo = format!("{path} {}", String::from_utf8_lossy(&body));
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(echo))))
            },
        ));
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        for mode in [BodyMode::Whole, BodyMode::Stream] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(serve(listener, upstream_addr, mode));
            let body = "x".repeat(100_000);
            let req = Request::post(format!("http://{addr}/v1/chat/completions"))
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let res = client.request(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{mode:?}");
            let answer = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(answer, format!("/v1/chat/completions {body}"), "{mode:?}");
        }
    }
}
