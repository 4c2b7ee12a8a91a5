//! An axum app where one route gets an LLM provider behind the core edge layers, next to
//! ordinary handlers.
//!
//! ```text
//! cargo run --example axum_route
//! curl -s localhost:8787/v1/chat/completions \
//!   -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}'
//! ```
//!
//! With `OPENAI_API_KEY` set it calls OpenAI; without, the offline mock provider answers.

use axum::Router;
use axum::routing::get;
use portcullis::provider::{Mock, OpenAi};
use portcullis::{BoxError, EdgeLayer, llm_route_with};
use tower::util::BoxCloneSyncService;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let provider = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => BoxCloneSyncService::new(
            OpenAi::builder("https://api.openai.com/v1")
                .api_key(key)
                .name("openai")
                .build()?,
        ),
        Err(_) => BoxCloneSyncService::new(Mock::builder().name("mock").build()),
    };
    // Only this route pays for the LLM layers: fact headers and the edge in front, with a
    // 1 MiB body limit that suits chat requests.
    let llm = llm_route_with(EdgeLayer::new().limit(1024 * 1024), provider);
    let app = Router::new()
        .route_service("/v1/chat/completions", llm)
        .route("/health", get(|| async { "ok" }));
    let listen = std::env::var("PORTCULLIS_LISTEN").unwrap_or_else(|_| "127.0.0.1:8787".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
