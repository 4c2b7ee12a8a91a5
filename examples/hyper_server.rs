//! A plain hyper server with one LLM provider behind the core edge layers.
//!
//! ```text
//! cargo run --release --example hyper_server
//! curl -s localhost:8787/v1/chat/completions \
//!   -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}'
//! ```
//!
//! With `OPENAI_API_KEY` set it calls OpenAI (or `OPENAI_BASE_URL`); without, it answers from
//! the offline mock provider. `PORTCULLIS_LISTEN` sets the address (default 127.0.0.1:8787).

use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use portcullis::provider::{Mock, OpenAi};
use portcullis::{Body, BoxError, BufferedBody, EdgeLayer, FactHeadersLayer};
use tower::ServiceBuilder;
use tower::util::BoxCloneService;

type Provider = BoxCloneService<Request<BufferedBody>, Response<Body>, BoxError>;

fn provider() -> Result<Provider, BoxError> {
    match std::env::var("OPENAI_API_KEY") {
        Ok(key) => {
            let base = std::env::var("OPENAI_BASE_URL")
                .unwrap_or_else(|_| "https://api.openai.com/v1".to_owned());
            eprintln!("provider: openai at {base}");
            Ok(BoxCloneService::new(
                OpenAi::builder(base).api_key(key).name("openai").build()?,
            ))
        }
        Err(_) => {
            eprintln!("provider: mock (set OPENAI_API_KEY to call OpenAI)");
            Ok(BoxCloneService::new(Mock::default()))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listen = std::env::var("PORTCULLIS_LISTEN").unwrap_or_else(|_| "127.0.0.1:8787".into());
    let stack = ServiceBuilder::new()
        .layer(FactHeadersLayer::new())
        .layer(EdgeLayer::new())
        .service(provider()?);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let connection = http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(stack.clone()));
        // Boxed outside the async block: rustc cannot prove an `async` block holding a
        // connection over a service with a `BoxError` error is `Send` (rust-lang/rust#102211).
        let connection: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>> =
            Box::pin(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                eprintln!("connection error: {err}");
            }
        });
    }
}
