//! Helpers shared by the guard tests: a loopback upstream client, a webhook server, requests.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_core::{Body, BoxError, BufferedBody};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::Service;

/// A service that sends each request to `base` (a fake upstream's URL) over loopback HTTP.
pub fn upstream(
    base: String,
) -> impl Service<
    Request<BufferedBody>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    let client = Client::builder(TokioExecutor::new()).build_http::<BufferedBody>();
    tower::service_fn(move |req: Request<BufferedBody>| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.uri = format!("{base}{}", parts.uri.path()).parse()?;
            let res = client.request(Request::from_parts(parts, body)).await?;
            Ok::<_, BoxError>(res.map(Body::new))
        }
    })
}

/// A chat request with one user message.
pub fn chat(text: &str) -> Request<BufferedBody> {
    chat_with(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}))
}

/// The same, streamed.
pub fn chat_stream(text: &str) -> Request<BufferedBody> {
    chat_with(
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": text}]}),
    )
}

/// A chat request with this body.
pub fn chat_with(body: Value) -> Request<BufferedBody> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-client-secret")
        .header("x-portkey-api-key", "pk-client-secret")
        .body(BufferedBody::new(body.to_string()))
        .unwrap()
}

/// The status and JSON body of a response.
pub async fn read(res: Response<Body>) -> (u16, Value) {
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, json)
}

/// What a webhook server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
}

type Handler =
    Arc<dyn Fn(&Value) -> Pin<Box<dyn Future<Output = (u16, Value)> + Send>> + Send + Sync>;

/// A webhook on 127.0.0.1:0 answering with `handler`, recording what it received.
pub struct WebhookServer {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookServer {
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (u16, Value)> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |v: &Value| Box::pin(handler(v.clone())));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let rec = rec.clone();
                        async move {
                            let headers = req.headers().clone();
                            let bytes = req.into_body().collect().await.unwrap().to_bytes();
                            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            rec.lock().unwrap().push(Received {
                                headers,
                                body: body.clone(),
                            });
                            let (status, answer) = handler(&body).await;
                            let res = Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap();
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}
