//! Helpers for the cross-crate tests: a hyper server over any stack on 127.0.0.1:0, and a
//! raw HTTP/1.1 client that sees exactly the bytes on the wire.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use portcullis::Body;
use tokio::net::TcpListener;

/// Serves `stack` on a fresh loopback port until the test's runtime ends.
pub(crate) async fn serve<S>(stack: S) -> SocketAddr
where
    S: tower::Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(stack.clone()));
            let connection: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>> =
                Box::pin(connection);
            tokio::spawn(connection);
        }
    });
    addr
}

pub(crate) use portcullis_testkit::client::{request as request_bytes, send as exchange};
