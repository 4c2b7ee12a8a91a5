//! The Redis store against a real `redis-server`: two gateways sharing limits, Redis killed
//! mid-run under each failure policy, and the lease of a crashed reservation.

#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use portcullis_budget::{
    BudgetLayer, Clock, Dimension, OnStoreError, Policy, RateKind, RateRule, RateUnit, RedisStore,
    UsageLimits,
};
use portcullis_core::EdgeLayer;
use portcullis_provider::OpenAi;
use portcullis_testkit::redis::RedisServer;
use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, COMPLETION, PROMPT, json_upstream, read, request};
use tower::{Layer, ServiceExt};

const TOKENS: u64 = PROMPT + COMPLETION;

fn store(redis: &RedisServer, deadline: Duration) -> RedisStore {
    RedisStore::builder(redis.url())
        .deadline(deadline)
        .build()
        .unwrap()
}

/// Waits, without sleeping, until the store answers again after a restart.
async fn until_up(store: &RedisStore) {
    for _ in 0..100_000 {
        if store.ping().await.is_ok() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("redis did not come back");
}

fn client(model: &str) -> Request<Full<Bytes>> {
    let body = CHAT.replace("gpt-4o", model);
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_never_pass_a_limit_together() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    upstream.set(Plan::ok().usage(PROMPT, COMPLETION));
    let policies = || {
        [
            Policy::new("budget")
                .matching(Dimension::Model, "gpt-4o")
                .usage(UsageLimits::tokens(100 * TOKENS)),
            Policy::new("rate")
                .matching(Dimension::Model, "gpt-4o-mini")
                .rate(RateRule::new(RateKind::Requests, RateUnit::Day, 60)),
        ]
    };
    // Two gateways: each its own store connection, the same Redis.
    let mut stacks = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..2 {
        let store = store(&redis, Duration::from_secs(5));
        let [a, b] = policies();
        let layer = BudgetLayer::builder()
            .store(store.clone())
            .policy(a)
            .policy(b)
            .build()
            .unwrap();
        let provider = OpenAi::builder(upstream.base_url()).build().unwrap();
        stacks.push(EdgeLayer::new().layer(layer.layer(provider)));
        stores.push((store, layer));
    }
    let admitted = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = Vec::new();
    for i in 0..600usize {
        let stack = stacks[i % 2].clone();
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            let which = (i / 2) % 2;
            let res = stack
                .oneshot(client(["gpt-4o", "gpt-4o-mini"][which]))
                .await
                .unwrap();
            let status = res.status().as_u16();
            res.into_body().collect().await.unwrap();
            match status {
                200 => {
                    admitted[which].fetch_add(1, Ordering::Relaxed);
                }
                402 | 429 => {}
                other => panic!("unexpected {other}"),
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        admitted[0].load(Ordering::Relaxed),
        100,
        "the budget fits exactly 100"
    );
    assert_eq!(admitted[1].load(Ordering::Relaxed), 60, "60 requests a day");
    for (store, _) in &stores {
        store.flush().await;
    }
    let snapshot = stores[0].1.snapshot().await.unwrap();
    let budget = snapshot
        .scopes
        .iter()
        .find(|s| s.policy == "budget")
        .unwrap();
    assert_eq!((budget.used, budget.reserved), (100 * TOKENS, 0));
    let rate = snapshot.scopes.iter().find(|s| s.policy == "rate").unwrap();
    assert_eq!(rate.remaining, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_fails_budgets_closed_and_rates_open() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let store = store(&redis, Duration::from_millis(500));
    let layer = BudgetLayer::builder()
        .store(store.clone())
        .policy(
            Policy::new("budget")
                .matching(Dimension::ApiKey, "spender")
                .usage(UsageLimits::tokens(1_000_000)),
        )
        .policy(
            Policy::new("rate")
                .matching(Dimension::ApiKey, "caller")
                .rate(RateRule::new(RateKind::Requests, RateUnit::Day, 3)),
        )
        .build()
        .unwrap();
    let send = |key: &'static str| {
        let stack = layer.layer(json_upstream(PROMPT, COMPLETION));
        async move { read(stack.oneshot(request(CHAT, Some(key), None)).await.unwrap()).await }
    };
    assert_eq!(send("spender").await.0, 200);
    assert_eq!(send("caller").await.0, 200);
    assert_eq!(send("caller").await.0, 200);
    store.flush().await;

    // An answer in flight when Redis goes: its settlement fails, and is counted.
    let in_flight = layer
        .layer(json_upstream(PROMPT, COMPLETION))
        .oneshot(request(CHAT, Some("spender"), None))
        .await
        .unwrap();
    redis.kill();
    assert_eq!(read(in_flight).await.0, 200);
    store.flush().await;
    assert_eq!(store.settle_errors(), 1);

    // Budgets fail closed: 503, nothing spent that cannot be counted.
    let (status, headers, body) = send("spender").await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["code"], "limit_store_unavailable");
    // Rate limits fail open onto the local store: its own 3 a day, then 429.
    for _ in 0..3 {
        assert_eq!(send("caller").await.0, 200);
    }
    assert_eq!(send("caller").await.0, 429);
    let counts = layer.limits().counts();
    assert_eq!(counts.store_errors, 5);
    assert_eq!(counts.fallback, 4);

    redis.restart();
    until_up(&store).await;
    assert_eq!(send("spender").await.0, 200, "Redis is back (and empty)");
    assert_eq!(send("caller").await.0, 200);
    assert_eq!(
        layer.limits().counts().fallback,
        4,
        "decided by Redis again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_policies_can_be_swapped() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let store = store(&redis, Duration::from_millis(500));
    let layer = BudgetLayer::builder()
        .store(store.clone())
        .on_store_error(OnStoreError::Open, OnStoreError::Closed)
        .policy(
            Policy::new("budget")
                .matching(Dimension::ApiKey, "spender")
                .usage(UsageLimits::tokens(TOKENS)),
        )
        .policy(
            Policy::new("rate")
                .matching(Dimension::ApiKey, "caller")
                .rate(RateRule::requests_per_minute(10)),
        )
        .build()
        .unwrap();
    let send = |key: &'static str| {
        let stack = layer.layer(json_upstream(PROMPT, COMPLETION));
        async move {
            read(stack.oneshot(request(CHAT, Some(key), None)).await.unwrap())
                .await
                .0
        }
    };
    redis.kill();
    assert_eq!(
        send("spender").await,
        200,
        "the budget fails open onto the local store"
    );
    assert_eq!(send("spender").await, 402, "which enforces it too");
    assert_eq!(send("caller").await, 503, "the rate limit fails closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_reservation_is_given_back_when_its_lease_expires() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let gateway = |offset: u64| {
        let store = store(&redis, Duration::from_secs(2));
        let layer = BudgetLayer::builder()
            .store(store.clone())
            .clock(Clock::starting_at(t0 + Duration::from_secs(offset)))
            .lease(Duration::from_secs(60))
            .policy(Policy::new("budget").usage(UsageLimits::tokens(2 * TOKENS)))
            .build()
            .unwrap();
        (store, layer)
    };
    let send = |layer: &BudgetLayer<RedisStore>| {
        let stack = layer.layer(json_upstream(PROMPT, COMPLETION));
        async move { stack.oneshot(request(CHAT, None, None)).await.unwrap() }
    };

    // A gateway admits a request and dies before the answer ends: never settled.
    let (_, crashed) = gateway(0);
    let response = send(&crashed).await;
    assert_eq!(response.status(), 200);
    std::mem::forget(response);
    drop(crashed);

    // Thirty seconds later, another gateway: the dead reservation still holds its share.
    let (store, later) = gateway(30);
    assert_eq!(read(send(&later).await).await.0, 200);
    store.flush().await;
    let (status, _, body) = read(send(&later).await).await;
    assert_eq!(status, 402);
    assert_eq!(
        body["error"]["limit"]["reserved"], TOKENS,
        "the crashed lease"
    );

    // Past the lease, the next reservation gives it back first.
    let (store, after) = gateway(61);
    assert_eq!(read(send(&after).await).await.0, 200);
    store.flush().await;
    let snapshot = after.snapshot().await.unwrap();
    assert_eq!(
        (snapshot.scopes[0].used, snapshot.scopes[0].reserved),
        (2 * TOKENS, 0)
    );
}
