//! The whole gateway in-process: a 1 KB chat request through the entry service (auth, stack
//! choice, edge, tag, the compiled tree) to a mock provider that answers at once, body drained.
//! No sockets, so what is left is the gateway's own work per request.

use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body::Body as _;
use http_body_util::Full;
use portcullis_gateway::{Config, Gateway};
use tower_service::Service;

fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn drain(mut body: portcullis_core::Body) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0;
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        n += frame
            .ok()
            .and_then(|f| f.into_data().ok())
            .map_or(0, |d| d.len());
    }
    n
}

const SINGLE: &str =
    r#"{"providers": {"m": {"provider": "mock"}}, "config": {"virtual_key": "m"}}"#;

const ALL: &str = r#"{
  "providers": {"a": {"provider": "mock"}, "b": {"provider": "mock"}, "c": {"provider": "mock"}},
  "config": {
    "strategy": {"mode": "conditional", "default": "free", "conditions": [
      {"query": {"$and": [{"metadata.plan": {"$eq": "paid"}}, {"params.model": {"$regex": "^gpt-"}}]}, "then": "paid"},
      {"query": {"metadata.plan": {"$in": ["free", "trial"]}}, "then": "free"}]},
    "targets": [
      {"name": "paid", "strategy": {"mode": "fallback"}, "retry": {"attempts": 2},
       "circuit_breaker": {"consecutive_failures": 5}, "override_params": {"max_tokens": 256},
       "targets": [
         {"strategy": {"mode": "loadbalance"}, "override_params": {"model": "large"},
          "targets": [{"virtual_key": "a", "weight": 0.7}, {"virtual_key": "b", "weight": 0.3}]},
         {"virtual_key": "c"}]},
      {"name": "free", "virtual_key": "c"}]}
}"#;

/// A 1 KB chat request's body.
fn chat_body() -> Bytes {
    Bytes::from(
        serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant. ".repeat(12)},
                {"role": "user", "content": "Move my booking from the 14th to the 16th, please. ".repeat(10)},
            ],
        })
        .to_string(),
    )
}

/// One chat request through the gateway, its body drained.
fn chat(gateway: &mut Gateway, body: &Bytes, metadata: Option<&str>) -> usize {
    let mut req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("content-length", body.len());
    if let Some(m) = metadata {
        req = req.header("x-portkey-metadata", m);
    }
    let req = req.body(Full::new(body.clone())).unwrap();
    let res = ready(gateway.call(black_box(req))).unwrap();
    assert_eq!(res.status(), 200);
    drain(res.into_body())
}

fn bench(c: &mut Criterion) {
    // The gateway's request deadline is a tokio timer: poll inside a runtime's context.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _runtime = runtime.enter();
    let body = chat_body();
    let mut group = c.benchmark_group("gateway");
    for (name, config, metadata) in [
        ("single", SINGLE, None),
        ("all_layers", ALL, Some(r#"{"plan":"paid"}"#)),
    ] {
        let config = Config::parse(config, &|_| None).unwrap();
        let mut gateway = Gateway::new(config).unwrap();
        group.bench_function(name, |b| b.iter(|| chat(&mut gateway, &body, metadata)));
    }
    group.finish();
}

/// The same requests with one console connected (`GET /log/stream`): each request's entry is
/// built and published when its body ends (measured here, on the request's thread); the
/// client's task that forwards it runs on a worker thread (not measured here).
fn console(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let _runtime = runtime.enter();
    let body = chat_body();
    const TOKEN: &str = "bench-admin-token-0123456";
    let mut group = c.benchmark_group("gateway_console");
    for (name, config, metadata) in [
        ("single", SINGLE, None),
        ("all_layers", ALL, Some(r#"{"plan":"paid"}"#)),
    ] {
        for connected in [false, true] {
            let mut doc: serde_json::Value = serde_json::from_str(config).unwrap();
            doc["server"] = serde_json::json!({ "admin_token": TOKEN });
            let config = Config::parse(&doc.to_string(), &|_| None).unwrap();
            let mut gateway = Gateway::new(config).unwrap();
            let stream = connected.then(|| {
                let req = Request::get("/log/stream")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let res = ready(gateway.call(req)).unwrap();
                assert_eq!(res.status(), 200);
                // A client that reads everything, on the worker thread.
                runtime.spawn(async move {
                    use http_body_util::BodyExt;
                    let mut body = res.into_body();
                    while let Some(Ok(_)) = body.frame().await {}
                })
            });
            let label = if connected { "connected" } else { "none" };
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| chat(&mut gateway, &body, metadata))
            });
            if let Some(client) = stream {
                client.abort();
            }
        }
    }
    group.finish();
}

/// The audit's regex bomb (issue 15): 268 conditions of `{"$regex": "\\w{60}"}` in one
/// `x-portkey-config`, 15.5 KB. Before the header-config limits it cost 7.3 s of CPU and
/// 1.26 GiB per request; these measure the refusal (a 400 either way): by the condition
/// count while the header is read, and, with that limit raised, by the first regex's
/// compiled size.
fn regex_bomb(c: &mut Criterion) {
    // The gateway's request deadline is a tokio timer: poll inside a runtime's context.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _runtime = runtime.enter();
    let condition = r#"{"query":{"params.user":{"$regex":"\\w{60}"}},"then":"x"}"#;
    let conditions = vec![condition; 268].join(",");
    let bomb = format!(
        r#"{{"strategy":{{"mode":"conditional","conditions":[{conditions}],"default":"x"}},"targets":[{{"name":"x","virtual_key":"m"}}]}}"#
    );
    let body = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    let mut group = c.benchmark_group("gateway");
    for (name, server) in [
        ("regex_bomb_refused", ""),
        (
            "regex_bomb_refused_by_compiled_size",
            r#""server": {"header_config": {"max_conditions": 10000}},"#,
        ),
    ] {
        let config = format!(r#"{{{server} "providers": {{"m": {{"provider": "mock"}}}}}}"#);
        let mut gateway = Gateway::new(Config::parse(&config, &|_| None).unwrap()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let req = Request::post("/v1/chat/completions")
                    .header("content-type", "application/json")
                    .header("x-portkey-config", bomb.as_str())
                    .body(Full::new(body.clone()))
                    .unwrap();
                let res = ready(gateway.call(black_box(req))).unwrap();
                assert_eq!(res.status(), 400);
                drain(res.into_body())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, console, regex_bomb);
criterion_main!(benches);
