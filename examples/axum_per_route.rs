//! An axum app whose routes each carry their own Portcullis stack, next to ordinary handlers.
//!
//! | route | stack |
//! |---|---|
//! | `POST /chat` | tag (metadata, trace ids, metrics) → a router in Rust: plan `pro` or `enterprise` gets `gpt-4o`, everyone else the model they asked for → fallback over two OpenAI-compatible providers, each with its own retries |
//! | `POST /cheap` | `gpt-4o-mini` whatever was asked → weighted balance, 3 : 1, over the same two providers |
//! | `POST /raw` | the first provider and nothing else: no retry, no fallback |
//! | `POST /own` | your own client code, a plain `tower::service_fn` that knows nothing of Portcullis, under retry and a circuit breaker |
//! | `GET /health` | an ordinary axum handler |
//!
//! Every LLM route is made by [`portcullis::llm_route`]: fact headers and the edge in front
//! (the body read once and parsed once, every error answered as an OpenAI-style response), so
//! axum's `route_service` takes the stack as it is. The providers are pinned to the chat
//! endpoint, so they serve routes named `/chat` or anything else.
//!
//! ```text
//! cargo run --example axum_per_route --features full -- \
//!     https://api.openai.com/v1 http://127.0.0.1:11434/v1 http://127.0.0.1:8000/v1/chat/completions
//! curl -s localhost:8787/chat -H 'x-portkey-metadata: {"plan": "pro"}' \
//!     -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}'
//! ```
//!
//! The three arguments (or `PRIMARY_BASE_URL`, `SECONDARY_BASE_URL`, `IN_HOUSE_URL`) are the
//! two providers' base URLs and the full URL your own client calls; the keys come from
//! `PRIMARY_API_KEY` (else `OPENAI_API_KEY`) and `SECONDARY_API_KEY`. `tests/axum_per_route.rs`
//! builds this [`app`] against fake upstreams and drives every route over loopback.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::balance::{Balance, Target};
use portcullis::breaker::{BreakerPolicy, CircuitBreaker};
use portcullis::fallback::Fallback;
use portcullis::provider::{Endpoint, OpenAi};
use portcullis::retry::{RetryLayer, RetryPolicy};
use portcullis::route::{Condition, ConditionalRouter};
use portcullis::tag::TagLayer;
use portcullis::{BoxError, BoxTarget, BufferedBody, LlmBody, OverrideParamsLayer, llm_route};
use serde_json::json;
use tower::{Layer, ServiceBuilder, service_fn};

/// An OpenAI-compatible API: its base URL (`https://api.openai.com/v1`) and key.
#[derive(Clone, Debug)]
pub struct Provider {
    /// The base URL, up to and including `/v1`.
    pub base_url: String,
    /// The key sent as `Authorization: Bearer`, if the API wants one.
    pub api_key: Option<String>,
}

/// Where the routes send their calls.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// The first provider: `/chat` tries it first, `/cheap` sends it three calls in four,
    /// `/raw` sends it everything.
    pub primary: Provider,
    /// The second provider: `/chat` falls back to it, `/cheap` sends it one call in four.
    pub secondary: Provider,
    /// The URL your own client code posts to (`/own`), e.g. an in-house model server.
    pub in_house: String,
}

impl Upstreams {
    /// From the command line (`PRIMARY SECONDARY IN_HOUSE`), else the environment, else an
    /// OpenAI primary and local servers.
    pub fn from_args_and_env() -> Self {
        let mut args = std::env::args().skip(1);
        let mut pick = |var: &str, default: &str| {
            args.next()
                .or_else(|| std::env::var(var).ok())
                .unwrap_or_else(|| default.to_owned())
        };
        let primary = pick("PRIMARY_BASE_URL", "https://api.openai.com/v1");
        let secondary = pick("SECONDARY_BASE_URL", "http://127.0.0.1:11434/v1");
        let in_house = pick("IN_HOUSE_URL", "http://127.0.0.1:8000/v1/chat/completions");
        let key = |var: &str| std::env::var(var).ok();
        Self {
            primary: Provider {
                base_url: primary,
                api_key: key("PRIMARY_API_KEY").or_else(|| key("OPENAI_API_KEY")),
            },
            secondary: Provider {
                base_url: secondary,
                api_key: key("SECONDARY_API_KEY"),
            },
            in_house,
        }
    }
}

/// The whole app: every route and its stack.
pub fn app(upstreams: &Upstreams) -> Result<Router, BoxError> {
    let primary = provider("primary", &upstreams.primary)?;
    let secondary = provider("secondary", &upstreams.secondary)?;

    // /chat: each provider retries on its own, then the fallback moves on (Portkey's order).
    let fallback = Fallback::builder()
        .target(retry()?.layer(primary.clone()))
        .target(retry()?.layer(secondary.clone()))
        .build()?;
    // Routing in Rust: paying plans get the larger model. The metadata comes from the tag
    // layer outside the router; `override_params` sit inside the target they belong to.
    let router = ConditionalRouter::builder()
        .target(
            "premium",
            BoxTarget::new(params(json!({"model": "gpt-4o"})).layer(fallback.clone())),
        )
        .target("standard", BoxTarget::new(fallback))
        .condition(
            Condition::metadata("plan").is_in(["pro", "enterprise"]),
            "premium",
        )
        .default("standard")
        .build()?;
    let chat = TagLayer::new().layer(router);

    // /cheap: the small model, spread 3 : 1 over the two providers; a provider that is not
    // ready right now is skipped.
    let cheap = params(json!({"model": "gpt-4o-mini"})).layer(
        Balance::builder()
            .target(Target::new("primary", primary.clone()).weight(3.0))
            .target(Target::new("secondary", secondary).weight(1.0))
            .build()?,
    );

    // /own: your own service under retry and a circuit breaker, both over its own types
    // (`Full<Bytes>` is cheap to clone, so the retry can replay it). The retry sits outside
    // the breaker, so every attempt counts and an open circuit stops the retries at once.
    let breaker = CircuitBreaker::builder()
        .name("in-house")
        .policy(
            BreakerPolicy::new()
                .consecutive_failures(3)
                .cooldown(Duration::from_secs(30)),
        )
        .build()?;
    let own = ServiceBuilder::new()
        // The adapter between the edge and your types, in front of everything: the buffered
        // request body as the `Full<Bytes>` your service takes (the bytes are shared, not
        // copied), and your response body as the `LlmBody` the edge answers with.
        .map_request(|req: Request<BufferedBody>| req.map(|body| Full::new(body.into_bytes())))
        .map_response(|res: Response<Incoming>| res.map(LlmBody::new))
        .layer(retry()?)
        .layer(breaker)
        .service(in_house_client(upstreams.in_house.parse()?));

    Ok(Router::new()
        .route_service("/chat", llm_route(chat))
        .route_service("/cheap", llm_route(cheap))
        .route_service("/raw", llm_route(primary))
        .route_service("/own", llm_route(own))
        .route("/health", get(|| async { "ok" })))
}

/// An OpenAI-compatible provider named `name`, pinned to chat completions so that it serves
/// `/chat`, `/cheap` and `/raw` alike.
fn provider(name: &str, upstream: &Provider) -> Result<OpenAi, BoxError> {
    let mut builder = OpenAi::builder(&upstream.base_url)
        .name(name)
        .endpoint(Endpoint::Chat);
    if let Some(key) = &upstream.api_key {
        builder = builder.api_key(key);
    }
    Ok(builder.build()?)
}

/// Two retries after the first try, on 429 and 5xx and transport errors, with short waits:
/// an interactive route gives up soon. One per target, so each keeps its own retry budget.
fn retry() -> Result<RetryLayer, BoxError> {
    let policy = RetryPolicy::builder(2)
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .attempt_timeout(Duration::from_secs(60))
        .build()?;
    Ok(RetryLayer::new(policy))
}

/// The parameters a route sets whatever the client asked for.
fn params(params: serde_json::Value) -> OverrideParamsLayer {
    let serde_json::Value::Object(params) = params else {
        unreachable!("override params are written as a JSON object")
    };
    OverrideParamsLayer::new(params)
}

/// Your own client code, as it was before Portcullis: a plain `service_fn` over
/// `Request<Full<Bytes>>` that posts the body to `url` with a pooled hyper client.
fn in_house_client(
    url: Uri,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Incoming>,
    Error = hyper_util::client::legacy::Error,
    Future: Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    service_fn(move |req: Request<Full<Bytes>>| {
        let mut upstream = Request::new(req.into_body());
        *upstream.method_mut() = Method::POST;
        *upstream.uri_mut() = url.clone();
        let headers = upstream.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-client", HeaderValue::from_static("in-house"));
        client.request(upstream)
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let app = app(&Upstreams::from_args_and_env())?;
    let listen = std::env::var("PORTCULLIS_LISTEN").unwrap_or_else(|_| "127.0.0.1:8787".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
