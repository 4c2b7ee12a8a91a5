//! Added cost per request of the budget layer with three scopes (a global cost budget, a
//! per-key token budget, a per-user request rate), against the bare inner service, in the
//! same run: the memory store, and the Redis store (one round trip to reserve, one to
//! settle) when `redis-server` is installed and the `redis` feature is on.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use portcullis_budget::store::LimitStore;
use portcullis_budget::{BudgetLayer, Dimension, Policy, RateRule, UsageLimits};
use portcullis_core::context::{Caller, Metadata};
use portcullis_core::observe::ObserveLayer;
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use tower::{Layer, Service, ServiceExt, service_fn};

const CHAT: &str = r#"{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the world"}]}"#;
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

    #[cfg(feature = "redis")]
    let _redis = redis_bench(&mut group, &rt, &cx);
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
