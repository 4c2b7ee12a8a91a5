//! Added cost per request of the budget layer with three scopes (a global cost budget, a
//! per-key token budget, a per-user request rate), against the bare inner service, in the
//! same run: the memory store, and the Redis store (one round trip to reserve, one to
//! settle) when `redis-server` is installed and the `redis` feature is on.
//!
//! `gateway_two_layers` is the gateway's every-layer config: a token budget per
//! `metadata.plan` around the request, then, after `override_params` changed `max_tokens` and
//! `model`, a provider's token budget and request rate (three providers' policies, one of
//! them matching). `prompt_estimate/*` is the prompt estimate alone on a freshly parsed
//! view, as each request meets it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use portcullis_budget::estimate::prompt_tokens;
use portcullis_budget::store::LimitStore;
use portcullis_budget::{BudgetLayer, Dimension, Policy, RateRule, Reset, UsageLimits};
use portcullis_core::context::{Caller, Metadata, ProviderName};
use portcullis_core::observe::ObserveLayer;
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use tower::{Layer, Service, ServiceExt, service_fn};

const CHAT: &str = r#"{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the world"}]}"#;
/// The load generator's request (`crates/loadgen/src/payload.rs`).
const LOADGEN: &str = r#"{"messages":[{"content":"You are a terse assistant.","role":"system"},{"content":"Say hello to the load generator.","role":"user"}],"model":"bench-model","temperature":0.2}"#;
const ANSWER: &str = r#"{"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello, world."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":4,"total_tokens":24}}"#;

/// An in-process upstream, observed as every provider observes its answers.
fn upstream()
-> impl Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError, Future: Send> + Clone
{
    ObserveLayer::new().layer(service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, BoxError>(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(ANSWER))
                .unwrap(),
        )
    }))
}

/// What the edge and tag layers leave on a request: the parsed view, caller and metadata.
struct Context {
    view: Arc<RequestView>,
    caller: Caller,
    metadata: Metadata,
}

fn request(cx: &Context) -> Request<BufferedBody> {
    let mut req = Request::post("/v1/chat/completions")
        .body(BufferedBody::new(cx.view.bytes().clone()))
        .unwrap();
    req.extensions_mut().insert(cx.view.clone());
    req.extensions_mut().insert(cx.caller.clone());
    req.extensions_mut().insert(cx.metadata.clone());
    req
}

fn layer<St: LimitStore>(store: St) -> BudgetLayer<St> {
    BudgetLayer::builder()
        .store(store)
        .policy(Policy::new("global").usage(UsageLimits::cost_usd(1e9)))
        .policy(
            Policy::new("per-key")
                .per(Dimension::ApiKey)
                .usage(UsageLimits::tokens(u64::MAX / 4)),
        )
        .policy(
            Policy::new("per-user")
                .per(Dimension::metadata("_user"))
                .rate(RateRule::requests_per_minute(1_000_000_000)),
        )
        .build()
        .unwrap()
}

async fn one<S>(service: &S, cx: &Context)
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError> + Clone,
{
    let res = service.clone().oneshot(request(cx)).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut caller = Caller::default();
    caller.api_key = Some("team-a".into());
    let cx = Context {
        view: Arc::new(RequestView::parse(Bytes::from_static(CHAT.as_bytes())).unwrap()),
        caller,
        metadata: Metadata::new(BTreeMap::from([("_user".to_owned(), "alice".to_owned())])),
    };
    let mut group = c.benchmark_group("budget");

    let direct = upstream();
    group.bench_function("direct", |b| b.to_async(&rt).iter(|| one(&direct, &cx)));

    let memory = layer(portcullis_budget::MemoryStore::new()).layer(upstream());
    group.bench_function("memory_3_scopes", |b| {
        b.to_async(&rt).iter(|| one(&memory, &cx))
    });

    let gateway = gateway_stack();
    let gateway_cx = Context {
        view: Arc::new(RequestView::parse(Bytes::from_static(LOADGEN.as_bytes())).unwrap()),
        caller: Caller::default(),
        metadata: Metadata::new(BTreeMap::from([("plan".to_owned(), "paid".to_owned())])),
    };
    // Each request gets a fresh view, as each request parsed at the edge does.
    group.bench_function("gateway_two_layers", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let view = RequestView::parse(gateway_cx.view.bytes().clone()).unwrap();
                let mut req = request(&gateway_cx);
                req.extensions_mut().insert(Arc::new(view));
                req
            },
            |req| async {
                let res = gateway.clone().oneshot(req).await.unwrap();
                assert_eq!(res.status(), 200);
                res.into_body().collect().await.unwrap();
            },
            BatchSize::SmallInput,
        )
    });

    #[cfg(feature = "redis")]
    let _redis = redis_bench(&mut group, &rt, &cx);
    group.finish();

    estimates(c);
}

/// The gateway's two budget layers around an `override_params` step and an upstream.
fn gateway_stack()
-> impl Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError> + Clone {
    let outer = BudgetLayer::builder()
        .policy(
            Policy::new("per-plan")
                .per(Dimension::metadata("plan"))
                .usage(UsageLimits::tokens(1_000_000_000_000).reset(Reset::Daily)),
        )
        .build()
        .unwrap();
    let mut leaf = BudgetLayer::builder();
    for name in ["up-a", "up-b", "up-c"] {
        leaf = leaf.policy(
            Policy::new(format!("provider:{name}"))
                .per(Dimension::Provider)
                .matching(Dimension::Provider, name)
                .usage(UsageLimits::tokens(1_000_000_000_000).reset(Reset::Daily))
                .rate(RateRule::requests_per_minute(100_000_000)),
        );
    }
    let inner = leaf.build().unwrap().layer(upstream());
    let overrides: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"max_tokens":256,"model":"bench-large"}"#).unwrap();
    let overrides = Arc::new(overrides);
    // What a target with `override_params` does before its provider.
    let target = service_fn(move |mut req: Request<BufferedBody>| {
        let view = req.extensions().get::<Arc<RequestView>>().unwrap();
        let view = Arc::new(view.with_overrides(&overrides).unwrap());
        *req.body_mut() = BufferedBody::new(view.bytes().clone());
        req.extensions_mut().insert(view);
        req.extensions_mut().insert(ProviderName(Arc::from("up-a")));
        inner.clone().oneshot(req)
    });
    outer.layer(target)
}

fn estimates(c: &mut Criterion) {
    let tools = r#"{"model":"gpt-4o","max_tokens":512,"tools":[{"type":"function","function":{"name":"get_weather","description":"The weather in a city, now","parameters":{"type":"object","properties":{"city":{"type":"string","description":"The city"},"unit":{"type":"string","enum":["c","f"]}},"required":["city"]}}}],"tool_choice":"auto","messages":[{"role":"system","content":"You answer with tools when you can.\nBe brief."},{"role":"user","content":"What is the weather in Z\u00fcrich and in 東京?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Zurich\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"{\"temp\":21,\"unit\":\"c\"}"},{"role":"user","content":[{"type":"text","text":"And this picture?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}"#;
    let long = {
        let turn = r#"{"role":"user","content":"Tell me about the history of the portcullis in medieval castle defence, with examples from England and France, and the mechanisms used to raise and lower it."},{"role":"assistant","content":"A portcullis is a heavy grille of wood or iron that slid down grooves in the gate passage. Winches in a chamber above raised it; it could drop quickly when the gate was attacked."}"#;
        let turns = vec![turn; 20].join(",");
        format!(r#"{{"model":"gpt-4o","messages":[{turns}]}}"#)
    };
    let mut group = c.benchmark_group("prompt_estimate");
    for (name, body) in [
        ("loadgen", LOADGEN.to_owned()),
        ("tools", tools.to_owned()),
        ("long_chat", long),
    ] {
        let bytes = Bytes::from(body);
        group.bench_function(name, |b| {
            b.iter_batched(
                || RequestView::parse(bytes.clone()).unwrap(),
                |view| prompt_tokens(&view),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

#[cfg(feature = "redis")]
fn redis_bench(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    cx: &Context,
) -> Option<portcullis_testkit::redis::RedisServer> {
    let redis = portcullis_testkit::redis::RedisServer::start()?;
    let store = rt.block_on(async {
        portcullis_budget::RedisStore::builder(redis.url())
            .deadline(std::time::Duration::from_secs(1))
            .build()
            .unwrap()
    });
    let service = layer(store.clone()).layer(upstream());
    group.bench_function("redis_3_scopes", |b| {
        b.to_async(rt).iter(|| async {
            one(&service, cx).await;
            // Count the settlement's round trip too.
            store.flush().await;
        })
    });
    Some(redis)
}

criterion_group!(benches, bench);
criterion_main!(benches);
