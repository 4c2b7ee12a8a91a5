//! A thousand concurrent requests against a budget that fits a hundred, over loopback HTTP:
//! mixed JSON and streams, some cancelled mid-stream, some upstream errors. Exactly what was
//! used is spent, never more than the budget, and every reservation is given back; with the
//! memory store and with the Redis store.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use portcullis_budget::store::LimitStore;
use portcullis_budget::{BudgetLayer, Dimension, Policy, RateRule, Snapshot, UsageLimits};
use portcullis_core::EdgeLayer;
use portcullis_core::context::Caller;
use portcullis_provider::OpenAi;
use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, CHAT_STREAM, COMPLETION, COST, PROMPT, PROMPT_COST};
use tower::{Layer, ServiceExt};

const FITS: u64 = 100;
const LIMIT: u64 = FITS * COST;

fn policies() -> Vec<Policy> {
    vec![
        // The binding one: one budget for everyone.
        Policy::new("global").usage(UsageLimits::cost_micros(LIMIT)),
        // Two more scopes every request also meets.
        Policy::new("per-key")
            .per(Dimension::ApiKey)
            .usage(UsageLimits::cost_usd(100.0)),
        Policy::new("per-user")
            .per(Dimension::metadata("_user"))
            .rate(RateRule::requests_per_minute(1_000_000)),
    ]
}

#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    cancelled: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
}

fn client(body: &'static str, i: usize) -> Request<Full<Bytes>> {
    let mut req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let mut caller = Caller::default();
    caller.api_key = Some(format!("key-{}", i % 4).into());
    req.extensions_mut().insert(caller);
    req
}

async fn thousand<St: LimitStore>(layer: BudgetLayer<St>, upstream: &FakeUpstream) -> Arc<Tally> {
    let provider = |base: String| OpenAi::builder(base).build().unwrap();
    let ok = EdgeLayer::new().layer(layer.layer(provider(upstream.base_url())));
    let slow = EdgeLayer::new().layer(layer.layer(provider(format!("{}/slow/v1", upstream.url()))));
    let failing =
        EdgeLayer::new().layer(layer.layer(provider(format!("{}/err/v1", upstream.url()))));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (ok, slow, failing, tally) = (ok.clone(), slow.clone(), failing.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let res = match i % 10 {
                0..=3 => ok.oneshot(client(CHAT, i)).await,
                4 | 5 => ok.oneshot(client(CHAT_STREAM, i)).await,
                6 | 7 => slow.oneshot(client(CHAT_STREAM, i)).await,
                _ => failing.oneshot(client(CHAT, i)).await,
            }
            .unwrap();
            match (res.status().as_u16(), i % 10) {
                (402, _) => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                }
                (200, 6 | 7) => {
                    // The client reads the first event (the role, no text) and leaves.
                    let mut body = res.into_body();
                    let first = body.frame().await.unwrap().unwrap();
                    assert!(first.is_data());
                    drop(body);
                    tally.cancelled.fetch_add(1, Ordering::Relaxed);
                }
                (200, _) => {
                    res.into_body().collect().await.unwrap();
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                (500, _) => {
                    res.into_body().collect().await.unwrap();
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                }
                (status, _) => {
                    eprintln!("unexpected status {status}");
                    tally.other.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tally
}

fn budget(snapshot: &Snapshot, policy: &str) -> (u64, u64) {
    snapshot
        .scopes
        .iter()
        .filter(|s| s.policy == policy && s.limit_index == 0)
        .fold((0, 0), |(u, r), s| (u + s.used, r + s.reserved))
}

async fn start_upstream() -> FakeUpstream {
    let upstream = FakeUpstream::start().await;
    let plan = Plan::ok().usage(PROMPT, COMPLETION).always_stream_usage();
    upstream.set(plan.clone());
    upstream.set_path(
        "/slow/v1/chat/completions",
        plan.chunk_delay(Duration::from_millis(40)),
    );
    upstream.set_path("/err/v1/chat/completions", Plan::ok().status(500));
    upstream
}

/// Checks the ledger after the burst, then spends the rest one request at a time.
async fn check_and_fill<St: LimitStore>(
    layer: &BudgetLayer<St>,
    upstream: &FakeUpstream,
    tally: &Tally,
    flush: impl AsyncFn(),
) {
    flush().await;
    let (ok, cancelled) = (
        tally.ok.load(Ordering::Relaxed),
        tally.cancelled.load(Ordering::Relaxed),
    );
    assert_eq!(tally.other.load(Ordering::Relaxed), 0);
    // Not one request over: errors gave their reservations back and cancels cost only their
    // prompt, so more than a hundred may be admitted, but never more than the budget holds.
    assert!(
        ok * COST + cancelled * PROMPT_COST <= LIMIT,
        "admitted {ok} + {cancelled}"
    );
    assert!(
        ok > 0 && cancelled > 0 && tally.refused.load(Ordering::Relaxed) > 0,
        "{tally:?}"
    );
    let snapshot = layer.snapshot().await.unwrap();
    let (used, reserved) = budget(&snapshot, "global");
    assert_eq!(reserved, 0, "every reservation is given back");
    // Exactly what was used: each answer its usage, each cancel its prompt, errors nothing.
    assert_eq!(used, ok * COST + cancelled * PROMPT_COST);
    assert!(used <= LIMIT);
    assert_eq!(
        budget(&snapshot, "per-key"),
        (used, 0),
        "every scope saw the same spend"
    );
    let counts = layer.limits().counts();
    assert_eq!(counts.reserved, counts.settled);
    assert_eq!(counts.store_errors, 0);

    // Now fill the budget one request at a time: it ends within one request of the limit,
    // never over.
    let stack =
        EdgeLayer::new().layer(layer.layer(OpenAi::builder(upstream.base_url()).build().unwrap()));
    let mut more = 0;
    loop {
        let res = stack.clone().oneshot(client(CHAT, 0)).await.unwrap();
        let status = res.status();
        res.into_body().collect().await.unwrap();
        if status == 402 {
            break;
        }
        assert_eq!(status, 200);
        more += 1;
        flush().await;
    }
    flush().await;
    let (used, reserved) = budget(&layer.snapshot().await.unwrap(), "global");
    assert_eq!(reserved, 0);
    assert_eq!(used, (ok + more) * COST + cancelled * PROMPT_COST);
    assert!(
        used <= LIMIT && LIMIT - used < COST,
        "spent {used} of {LIMIT}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_never_overspend_in_memory() {
    let upstream = start_upstream().await;
    let mut builder = BudgetLayer::builder();
    for p in policies() {
        builder = builder.policy(p);
    }
    let layer = builder.build().unwrap();
    let tally = thousand(layer.clone(), &upstream).await;
    check_and_fill(&layer, &upstream, &tally, async || {}).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_never_overspend_in_redis() {
    use portcullis_budget::RedisStore;
    let Some(redis) = portcullis_testkit::redis::RedisServer::start() else {
        return;
    };
    let upstream = start_upstream().await;
    // Two shared cores and a thousand calls at once: a generous deadline, so this test is
    // about exactness, not latency.
    let store = RedisStore::builder(redis.url())
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut builder = BudgetLayer::builder().store(store.clone());
    for p in policies() {
        builder = builder.policy(p);
    }
    let layer = builder.build().unwrap();
    let tally = thousand(layer.clone(), &upstream).await;
    check_and_fill(&layer, &upstream, &tally, async || store.flush().await).await;
    assert_eq!(store.settle_errors(), 0);
}
