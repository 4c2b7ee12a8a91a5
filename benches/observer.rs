//! The stream observer: a 50-chunk SSE stream and a 1 KB JSON body, observed versus passed
//! through untouched; and the same stream with non-ASCII text and escapes in every delta.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Response;
use http_body::{Body as _, Frame};
use portcullis::observe::observe_response;
use portcullis::{Body, BoxError};
use std::hint::black_box;

mod support;

struct Frames(VecDeque<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn drain(mut body: Body) -> usize {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut n = 0;
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        n += frame.unwrap().into_data().map_or(0, |d| d.len());
    }
    n
}

fn response(content_type: &'static str, frames: &[Bytes]) -> Response<Frames> {
    Response::builder()
        .header("content-type", content_type)
        .body(Frames(frames.iter().cloned().collect()))
        .unwrap()
}

/// [`support::stream_events_50`] with every delta's text non-ASCII and escaped (quotes, a
/// newline, a `\u` escape), as chat text often is.
fn unicode_events_50() -> Vec<Bytes> {
    support::stream_events_50()
        .into_iter()
        .map(|event| {
            let text = String::from_utf8(event.to_vec()).expect("UTF-8");
            Bytes::from(text.replace(
                r#""content":"word"#,
                r#""content":"caf\u00e9 \"ünïcode\" ✓\n"#,
            ))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let events = support::stream_events_50();
    let unicode = unicode_events_50();
    let stream_len: usize = events.iter().map(Bytes::len).sum();
    let json = vec![Bytes::from(format!(
        "{{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\
          \"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{}\"}},\"finish_reason\":\"stop\"}}],\
          \"usage\":{{\"prompt_tokens\":250,\"completion_tokens\":200,\"total_tokens\":450}}}}",
        "word ".repeat(170)
    ))];

    let mut group = c.benchmark_group("observer");
    group.throughput(Throughput::Bytes(stream_len as u64));
    group.bench_function("stream_50_passthrough", |b| {
        b.iter(|| {
            drain(Body::new(
                response("text/event-stream", black_box(&events)).into_body(),
            ))
        })
    });
    group.bench_function("stream_50_observed", |b| {
        b.iter(|| {
            drain(observe_response(response("text/event-stream", black_box(&events))).into_body())
        })
    });
    group.bench_function("stream_50_observed_unicode", |b| {
        b.iter(|| {
            drain(observe_response(response("text/event-stream", black_box(&unicode))).into_body())
        })
    });
    group.throughput(Throughput::Bytes(json[0].len() as u64));
    group.bench_function("json_1kb_passthrough", |b| {
        b.iter(|| {
            drain(Body::new(
                response("application/json", black_box(&json)).into_body(),
            ))
        })
    });
    group.bench_function("json_1kb_observed", |b| {
        b.iter(|| {
            drain(observe_response(response("application/json", black_box(&json))).into_body())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
