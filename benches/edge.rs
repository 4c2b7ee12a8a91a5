//! The edge step: reading and parsing a typical 1 KB chat request, with and without the fact
//! headers, around an in-process service that answers at once.

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

criterion_group!(benches, bench);
criterion_main!(benches);
