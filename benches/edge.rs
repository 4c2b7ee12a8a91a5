//! The edge step: reading and parsing a typical 1 KB chat request, with and without the fact
//! headers, around an in-process service that answers at once; and parsing a request with a
//! 32 KB prompt.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use portcullis::{Body, BoxError, BufferedBody, EdgeLayer, FactHeadersLayer, RequestView};
use std::hint::black_box;
use tower::{Layer, Service, service_fn};

mod support;

fn bench(c: &mut Criterion) {
    let body = Bytes::from(support::chat_request_1kb());
    let inner = service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, BoxError>(Response::new(Body::empty()))
    });
    let request = || {
        Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(Full::new(body.clone()))
            .unwrap()
    };

    let mut group = c.benchmark_group("edge");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse_view_1kb", |b| {
        b.iter(|| RequestView::parse(black_box(body.clone())).unwrap())
    });
    // A request with a long prompt (a document pasted into the chat): the strings the
    // reader scans to find their ends are most of its bytes.
    let long = Bytes::from(long_prompt_request());
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_function("parse_view_32kb_prompt", |b| {
        b.iter(|| RequestView::parse(black_box(long.clone())).unwrap())
    });
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("inner_service_only", |b| {
        let mut svc = inner;
        b.iter(|| {
            let req = Request::post("/")
                .body(BufferedBody::new(body.clone()))
                .unwrap();
            support::ready(svc.call(black_box(req))).unwrap()
        })
    });
    group.bench_function("edge_1kb", |b| {
        let mut svc = EdgeLayer::new().layer(inner);
        b.iter(|| support::ready(svc.call(black_box(request()))).unwrap())
    });
    group.bench_function("fact_headers_edge_1kb", |b| {
        let mut svc = FactHeadersLayer::new().layer(EdgeLayer::new().layer(inner));
        b.iter(|| support::ready(svc.call(black_box(request()))).unwrap())
    });
    group.finish();
}

/// A chat request whose user turn is 32 KB of prose (paragraphs, so a `\n` escape every few
/// hundred bytes), after a short system turn.
fn long_prompt_request() -> Vec<u8> {
    let sentence = "The gateway reads every request once, and a long prompt is mostly text. ";
    let paragraph = sentence.repeat(6) + "\n";
    let prompt = paragraph.repeat(32 * 1024 / paragraph.len());
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You answer questions about the document."},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0.2,
    }))
    .unwrap()
}

criterion_group!(benches, bench);
criterion_main!(benches);
