//! Guard costs: each check on a 1 KB request, a typical input guard (regex + PII) through
//! the layer, a JSON answer through an input and an output guard, and the stream guard per
//! streamed chunk.

#![allow(missing_docs)]

use std::collections::VecDeque;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::{Body as _, Frame};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use portcullis_guard::{GuardLayer, HookContext, Loader, Phase, RequestType, Run};
use serde_json::json;
use tower::{Layer, Service};

/// About 1 KB of ordinary prose with one email in it.
fn prompt() -> String {
    let mut text = String::new();
    while text.len() < 1000 {
        text.push_str("Please summarise the quarterly report for the board, focusing on revenue, costs and risks. ");
    }
    text.push_str("Send it to ann.lee@example.com when done.");
    text
}

fn request_body() -> Bytes {
    Bytes::from(json!({"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": prompt()}]}).to_string())
}

fn poll_now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the guard waited on a sync path"),
    }
}

fn checks(c: &mut Criterion) {
    let loader = Loader::new();
    let view = Arc::new(RequestView::parse(request_body()).unwrap());
    let cx = HookContext::before(view.clone(), RequestType::ChatComplete);
    let cases = [
        (
            "regexMatch",
            "default.regexMatch",
            json!({"rule": "(?i)ignore (all )?previous instructions", "not": true}),
        ),
        (
            "regexMatch_lookahead",
            "default.regexMatch",
            json!({"rule": "\\b(\\w+)\\s+\\1\\b"}),
        ),
        (
            "regexReplace",
            "default.regexReplace",
            json!({"rule": "/\\b\\d{4}\\b/g"}),
        ),
        (
            "sentenceCount",
            "default.sentenceCount",
            json!({"minSentences": 1, "maxSentences": 50}),
        ),
        (
            "wordCount",
            "default.wordCount",
            json!({"minWords": 1, "maxWords": 500}),
        ),
        (
            "characterCount",
            "default.characterCount",
            json!({"minCharacters": 1, "maxCharacters": 5000}),
        ),
        (
            "contains",
            "default.contains",
            json!({"words": ["password", "secret", "token"], "operator": "none"}),
        ),
        ("alluppercase", "default.alluppercase", json!({})),
        ("endsWith", "default.endsWith", json!({"suffix": "done"})),
        ("notNull", "default.notNull", json!({})),
        (
            "modelWhitelist",
            "default.modelWhitelist",
            json!({"models": ["gpt-4o", "gpt-4o-mini"]}),
        ),
        (
            "allowedRequestTypes",
            "default.allowedRequestTypes",
            json!({"allowedTypes": ["chatComplete"]}),
        ),
        (
            "addPrefix",
            "default.addPrefix",
            json!({"prefix": "Be brief. "}),
        ),
        (
            "jsonKeys",
            "default.jsonKeys",
            json!({"keys": ["a"], "operator": "any"}),
        ),
        (
            "jsonSchema",
            "default.jsonSchema",
            json!({"schema": {"type": "object", "required": ["a"]}}),
        ),
        (
            "containsCode",
            "default.containsCode",
            json!({"format": "Python"}),
        ),
        ("pii_detect", "portcullis.pii", json!({})),
        ("pii_redact", "portcullis.pii", json!({"redact": true})),
    ];
    let mut group = c.benchmark_group("check_1KB");
    for (name, id, params) in cases {
        let check = loader.check(id, &params, Phase::Before).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| match check.run(black_box(&cx)) {
                Run::Done(o) => black_box(o.verdict),
                Run::Pending(_) => unreachable!(),
            })
        });
    }
    group.bench_function("context_before", |b| {
        b.iter(|| {
            black_box(
                HookContext::before(view.clone(), RequestType::ChatComplete)
                    .text()
                    .len(),
            )
        })
    });
    group.finish();
}

fn input_guard(c: &mut Criterion) {
    let hooks = Loader::new()
        .hooks(&json!({"input_guardrails": [{"deny": true,
            "regexMatch": {"rule": "(?i)ignore (all )?previous instructions", "not": true},
            "portcullis.pii": {"kinds": ["credit_card", "ssn", "api_key", "private_key"]}}]}))
        .unwrap();
    let inner = tower::service_fn(|_req: Request<BufferedBody>| {
        std::future::ready(Ok::<_, BoxError>(
            Response::builder().status(500).body(Body::empty()).unwrap(),
        ))
    });
    let hook = hooks.before[0].clone();
    let mut svc = GuardLayer::new(hooks).layer(inner);
    let body = request_body();
    let view = Arc::new(RequestView::parse(body.clone()).unwrap());
    c.bench_function("input_hook_regex_pii_1KB", |b| {
        b.iter(|| {
            let mut cx = HookContext::before(view.clone(), RequestType::ChatComplete);
            black_box(hook.run_now(&mut cx).verdict)
        })
    });
    c.bench_function("input_guard_regex_pii_1KB", |b| {
        b.iter(|| {
            let mut req = Request::post("/v1/chat/completions")
                .body(BufferedBody::new(body.clone()))
                .unwrap();
            req.extensions_mut().insert(view.clone());
            let res = poll_now(svc.call(req)).unwrap();
            black_box(res.status())
        })
    });
}

/// A 520-byte OpenAI `chat.completion` answer, compact as OpenAI sends it.
const ANSWER: &str = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"service_tier":"default"}"#;

/// The gateway's common setup: PII denied on the way in, a word count denied on the way out,
/// on a JSON answer (the answer is read, judged and written back with `hook_results`).
fn json_answer(c: &mut Criterion) {
    let hooks = Loader::new()
        .hooks(&json!({
            "input_guardrails": [{"deny": true, "portcullis.pii": {}}],
            "output_guardrails": [{"deny": true, "wordCount": {"minWords": 1, "maxWords": 500}}],
        }))
        .unwrap();
    let inner = tower::service_fn(|_req: Request<BufferedBody>| {
        std::future::ready(Ok::<_, BoxError>(
            Response::builder()
                .header("content-type", "application/json")
                .header("content-length", ANSWER.len())
                .body(Body::from(Bytes::from_static(ANSWER.as_bytes())))
                .unwrap(),
        ))
    });
    let mut svc = GuardLayer::new(hooks).layer(inner);
    let body = Bytes::from(
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]})
            .to_string(),
    );
    let view = Arc::new(RequestView::parse(body.clone()).unwrap());
    c.bench_function("json_answer_pii_in_wordcount_out", |b| {
        b.iter(|| {
            let mut req = Request::post("/v1/chat/completions")
                .body(BufferedBody::new(body.clone()))
                .unwrap();
            req.extensions_mut().insert(view.clone());
            let res = poll_now(svc.call(req)).unwrap();
            let mut body = std::pin::pin!(res.into_body());
            let mut cx = Context::from_waker(Waker::noop());
            let mut n = 0;
            while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
                n += frame.unwrap().into_data().map_or(0, |d| d.len());
            }
            black_box(n)
        })
    });
}

/// A response body that yields prepared chunks.
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

const CHUNKS: usize = 400;

fn stream_events() -> VecDeque<Bytes> {
    let words = [
        "The ",
        "report ",
        "shows ",
        "steady ",
        "growth ",
        "across ",
        "all ",
        "regions, ",
        "with ",
        "costs ",
    ];
    let mut events: VecDeque<Bytes> = (0..CHUNKS)
        .map(|i| {
            let v = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                           "choices": [{"index": 0, "delta": {"content": words[i % words.len()]}, "finish_reason": null}]});
            Bytes::from(format!("data: {v}\n\n"))
        })
        .collect();
    events.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

fn run_stream<S>(svc: &mut S, body: &Bytes, view: &Arc<RequestView>) -> usize
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError>,
{
    let mut req = Request::post("/v1/chat/completions")
        .body(BufferedBody::new(body.clone()))
        .unwrap();
    req.extensions_mut().insert(view.clone());
    let res = poll_now(svc.call(req)).unwrap();
    let mut body = std::pin::pin!(res.into_body());
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0;
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        n += frame.unwrap().into_data().map_or(0, |d| d.len());
    }
    n
}

fn window_guard(c: &mut Criterion) {
    let hooks = Loader::new()
        .hooks(&json!({"output_guardrails": [{"deny": true,
            "regexMatch": {"rule": "(?i)secret code", "not": true},
            "portcullis.pii": {"kinds": ["credit_card", "ssn", "api_key", "private_key"]}}]}))
        .unwrap();
    let events = stream_events();
    let inner = tower::service_fn(move |_req: Request<BufferedBody>| {
        let body = Body::new(Chunks(events.clone()));
        std::future::ready(Ok::<_, BoxError>(
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap(),
        ))
    });
    let mut svc = GuardLayer::new(hooks).layer(inner);
    let body = Bytes::from(json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Summarise"}]}).to_string());
    let view = Arc::new(RequestView::parse(body.clone()).unwrap());
    let mut group = c.benchmark_group("stream_guard");
    group.throughput(criterion::Throughput::Elements(CHUNKS as u64));
    group.bench_function("400_chunks_window_regex_pii", |b| {
        b.iter(|| black_box(run_stream(&mut svc, &body, &view)))
    });
    let mut bare = GuardLayer::new(Default::default()).layer(tower::service_fn({
        let events = stream_events();
        move |_req: Request<BufferedBody>| {
            let body = Body::new(Chunks(events.clone()));
            std::future::ready(Ok::<_, BoxError>(
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(body)
                    .unwrap(),
            ))
        }
    }));
    group.bench_function("400_chunks_no_guard", |b| {
        b.iter(|| black_box(run_stream(&mut bare, &body, &view)))
    });
    group.finish();
}

criterion_group!(benches, checks, input_guard, json_answer, window_guard);
criterion_main!(benches);
