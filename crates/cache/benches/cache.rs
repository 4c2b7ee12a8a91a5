//! The cache layer's cost in process, with the memory store: a request through
//! [`Cache`](portcullis_cache::Cache) in front of a service that answers at once (an observed
//! JSON completion, as a provider gives), compared with the service alone.
//!
//! - `inner_only`: the service alone (call and read the body);
//! - `disabled`: a layer with no cache for the target;
//! - `miss`: a new question each time (key, lookup, call, copy and store the answer);
//! - `hit` / `hit_as_stream`: the same question, answered from the store as JSON, or as a
//!   replayed stream;
//! - `semantic_miss_100`: semantic mode with 100 other questions in the partition (exact
//!   lookup, embed, compare with all 100, call, store).
//!
//! Requests are built outside the timed part.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use portcullis_cache::store::MemoryStore;
use portcullis_cache::{CacheEngine, CacheSettings, Mode};
use portcullis_core::observe::observe_response;
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use tower::{Layer, Service, service_fn};

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

const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#;

fn request(body: String) -> Request<BufferedBody> {
    let body = Bytes::from(body);
    let view = Arc::new(RequestView::parse(body.clone()).unwrap());
    let mut req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(BufferedBody::new(body))
        .unwrap();
    req.extensions_mut().insert(view);
    req
}

fn chat(question: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","stream":{stream},"messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{question}"}}]}}"#
    )
}

fn call<S>(svc: &mut S, req: Request<BufferedBody>) -> Bytes
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    ready(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    let response = ready(svc.call(req)).unwrap();
    ready(response.into_body().collect()).unwrap().to_bytes()
}

/// The key of the `i`th entry of the store benches.
fn bench_key(i: u64) -> portcullis_cache::key::Key {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    portcullis_cache::key::Key(k)
}

/// An entry of the bench's answer in its own allocation.
fn answer_entry() -> Arc<portcullis_cache::entry::Entry> {
    Arc::new(portcullis_cache::entry::Entry::from_json(
        Bytes::copy_from_slice(ANSWER.as_bytes()),
        None,
        0,
    ))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = runtime.enter();
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        let r = Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(ANSWER))
            .unwrap();
        Ok::<_, BoxError>(observe_response(r))
    });
    let engine = || {
        CacheEngine::builder()
            .store(MemoryStore::new(256 << 20))
            .build()
            .unwrap()
    };
    let simple = CacheSettings::new(Mode::Simple).max_age(Duration::from_secs(3600));
    let semantic = CacheSettings::new(Mode::Semantic).max_age(Duration::from_secs(3600));
    let n = AtomicU64::new(0);
    let fresh = |stream: bool| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        request(chat(
            &format!("Question number {i}: what is the capital of France?"),
            stream,
        ))
    };

    let mut group = c.benchmark_group("cache");
    group.bench_function("inner_only", |b| {
        let mut svc = inner;
        b.iter_batched(
            || fresh(false),
            |req| call(&mut svc, req),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("key", |b| {
        let view =
            RequestView::parse(Bytes::from(chat("What is the capital of France?", false))).unwrap();
        let input = portcullis_cache::key::KeyInput {
            tenant: "team-a",
            namespace: "",
            target: "openai",
            endpoint: "/v1/chat/completions",
        };
        b.iter(|| portcullis_cache::key::exact_key(&view, &input));
    });
    // What a request pays: its view is new, so nothing it parsed is shared with the last one.
    group.bench_function("key_of_a_new_request", |b| {
        let body = Bytes::from(chat("What is the capital of France?", false));
        let input = portcullis_cache::key::KeyInput {
            tenant: "team-a",
            namespace: "",
            target: "openai",
            endpoint: "/v1/chat/completions",
        };
        b.iter_batched(
            || RequestView::parse(body.clone()).unwrap(),
            |view| portcullis_cache::key::exact_key(&view, &input),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("memory_store_put", |b| {
        use portcullis_cache::store::CacheStore;
        let store = MemoryStore::new(256 << 20);
        let entry = Arc::new(portcullis_cache::entry::Entry::from_json(
            Bytes::from_static(ANSWER.as_bytes()),
            None,
            0,
        ));
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&i.to_le_bytes());
            ready(store.put(
                &portcullis_cache::key::Key(k),
                entry.clone(),
                Duration::from_secs(60),
            ))
            .unwrap()
        });
    });
    // A store at its bound (8 MiB of the short answer, each in its own allocation, as answers
    // are): every put evicts, and the evicted entries' memory is cold.
    let full = |n: u64| {
        use portcullis_cache::store::CacheStore;
        let store = MemoryStore::new(8 << 20);
        for i in 0..n {
            let _ = ready(store.put(&bench_key(i), answer_entry(), Duration::from_secs(60)));
        }
        store
    };
    group.bench_function("memory_store_put_evicting", |b| {
        use portcullis_cache::store::CacheStore;
        let store = full(20_000);
        let mut i = 20_000u64;
        b.iter_batched(
            || {
                i += 1;
                (bench_key(i), answer_entry())
            },
            |(key, entry)| ready(store.put(&key, entry, Duration::from_secs(60))).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("memory_store_get_hit", |b| {
        use portcullis_cache::store::CacheStore;
        let store = full(20_000);
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 1) % 20_000;
            // The newest fifth is surely held.
            ready(store.get(&bench_key(16_000 + i % 4_000))).unwrap()
        });
    });
    group.bench_function("disabled", |b| {
        let mut svc = engine().layer(None, "openai").layer(inner);
        b.iter_batched(
            || fresh(false),
            |req| call(&mut svc, req),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("miss", |b| {
        let mut svc = engine().layer(Some(simple), "openai").layer(inner);
        b.iter_batched(
            || fresh(false),
            |req| call(&mut svc, req),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("hit", |b| {
        let mut svc = engine().layer(Some(simple), "openai").layer(inner);
        let same = chat("What is the capital of France?", false);
        call(&mut svc, request(same.clone()));
        b.iter_batched(
            || request(same.clone()),
            |req| call(&mut svc, req),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("hit_as_stream", |b| {
        let mut svc = engine().layer(Some(simple), "openai").layer(inner);
        call(
            &mut svc,
            request(chat("What is the capital of France?", false)),
        );
        let same = chat("What is the capital of France?", true);
        b.iter_batched(
            || request(same.clone()),
            |req| call(&mut svc, req),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("semantic_miss_100", |b| {
        // The partition keeps its newest 100 questions.
        let engine = CacheEngine::builder()
            .store(MemoryStore::new(256 << 20))
            .partition_size(100)
            .build()
            .unwrap();
        let mut svc = engine.layer(Some(semantic), "openai").layer(inner);
        for i in 0..100 {
            call(
                &mut svc,
                request(chat(&format!("Tell me about topic {i} in detail"), false)),
            );
        }
        b.iter_batched(
            || fresh(false),
            |req| call(&mut svc, req),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
