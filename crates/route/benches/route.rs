//! Conditional routing: evaluating ten compiled conditions against a typical request, and the
//! router's success path around an in-process service that answers at once, compared with
//! the bare service.

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use portcullis_core::context::Metadata;
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use portcullis_route::{BoxTarget, Condition, ConditionalRouter, RouteInput};
use serde_json::{Value, json};
use tower::{Service, service_fn};

/// Polls a future that completes without waiting to its end.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// A typical chat request body of about 1 KB.
fn chat_body() -> Bytes {
    let system = "You are a helpful assistant for a travel company. Answer briefly and politely, \
                  cite the booking policy where relevant, and never invent prices. ";
    let user = "I booked a flight from Lisbon to Berlin for the 14th and would like to move it \
                to the 16th, keeping the same seat class. What are my options and the fees? ";
    Bytes::from(
        serde_json::to_vec(&json!({
            "model": "gpt-4o-mini",
            "temperature": 0.2,
            "max_tokens": 512,
            "user": "user-1234",
            "response_format": {"type": "text"},
            "messages": [
                {"role": "system", "content": system.repeat(2)},
                {"role": "user", "content": user.repeat(3)},
            ],
        }))
        .unwrap(),
    )
}

/// Ten conditions of the kinds configs use; the request below matches only the last.
fn ten_conditions() -> Value {
    json!([
        {"query": {"metadata.user_plan": "enterprise"}, "then": "t0"},
        {"query": {"metadata.region": {"$in": ["eu-west-1", "eu-central-1"]}}, "then": "t1"},
        {"query": {"params.model": {"$regex": "^o[13]"}}, "then": "t2"},
        {"query": {"params.temperature": {"$gt": 0.7}}, "then": "t3"},
        {"query": {"params.response_format.type": "json_schema"}, "then": "t4"},
        {"query": {"url.pathname": "/v1/embeddings"}, "then": "t5"},
        {"query": {"$or": [{"metadata.env": "staging"}, {"params.stream": true}]}, "then": "t6"},
        {"query": {"metadata.tier": {"$gte": 5}, "params.max_tokens": {"$lt": 100}}, "then": "t7"},
        {"query": {"$and": [{"params.user": {"$ne": "user-1234"}}, {"metadata.beta": "yes"}]}, "then": "t8"},
        {"query": {"metadata.user_plan": "paid", "params.model": {"$in": ["gpt-4o", "gpt-4o-mini"]}}, "then": "t9"},
    ])
}

fn metadata() -> Metadata {
    let map: BTreeMap<String, String> = [
        ("user_plan", "paid"),
        ("region", "us-east-1"),
        ("env", "production"),
        ("tier", "3"),
        ("_user", "user-1234"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Metadata::new(map)
}

/// A router over ten targets, `t0` to `t9`, with the ten conditions and `t0` as default.
fn router_of<S: Clone>(target: S) -> ConditionalRouter<S> {
    let mut builder = ConditionalRouter::builder();
    for i in 0..10 {
        builder = builder.target(format!("t{i}"), target.clone());
    }
    builder
        .conditions(&ten_conditions())
        .unwrap()
        .default("t0")
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let body = chat_body();
    let view = Arc::new(RequestView::parse(body.clone()).unwrap());
    let metadata = metadata();
    let answer = service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, BoxError>(Response::new(Body::empty()))
    });
    let request = || {
        let mut req = Request::post("/v1/chat/completions")
            .body(BufferedBody::new(body.clone()))
            .unwrap();
        req.extensions_mut().insert(view.clone());
        req.extensions_mut().insert(metadata.clone());
        req
    };

    let mut group = c.benchmark_group("route");

    let router = router_of(answer);
    let req = request();
    let input = RouteInput::from_request(&req);
    assert_eq!(router.route(&input), Some(9));
    group.bench_function("evaluate_10_conditions_last_matches", |b| {
        b.iter(|| router.route(black_box(&input)))
    });
    let other = Metadata::new(BTreeMap::new());
    let miss = RouteInput::from_request(&req).metadata(&other);
    assert_eq!(router.route(&miss), Some(0));
    group.bench_function("evaluate_10_conditions_none_match", |b| {
        b.iter(|| router.route(black_box(&miss)))
    });
    let one = Condition::compile(&ten_conditions()[9]["query"]).unwrap();
    group.bench_function("evaluate_1_condition", |b| {
        b.iter(|| one.matches(black_box(&input)))
    });

    group.bench_function("inner_service_only", |b| {
        let mut svc = answer;
        b.iter(|| ready(svc.call(black_box(request()))).unwrap())
    });
    group.bench_function("router_1_condition", |b| {
        let mut svc = ConditionalRouter::builder()
            .target("t0", answer)
            .conditions(&json!([{"query": {"metadata.user_plan": "paid"}, "then": "t0"}]))
            .unwrap()
            .build()
            .unwrap();
        b.iter(|| ready(svc.call(black_box(request()))).unwrap())
    });
    group.bench_function("router_10_conditions", |b| {
        let mut svc = router.clone();
        b.iter(|| ready(svc.call(black_box(request()))).unwrap())
    });
    group.bench_function("boxed_inner_service_only", |b| {
        let mut svc = BoxTarget::new(answer);
        b.iter(|| ready(svc.call(black_box(request()))).unwrap())
    });
    group.bench_function("router_10_conditions_boxed_targets", |b| {
        let mut svc = router_of(BoxTarget::new(answer));
        b.iter(|| ready(svc.call(black_box(request()))).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
