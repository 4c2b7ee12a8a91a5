//! What the translation benches share: a stream translator fed one chunk again and again,
//! and the same chunk split across two network reads. Included by `benches/*.rs` with
//! `#[path]`: benches have no support folder of their own.

use std::hint::black_box;

use bytes::Bytes;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

/// Benches each `(name, chunk)` pushed into a stream made by `started`, then `split`'s chunk
/// pushed in two pieces cut at its offset (held, then completed).
pub(crate) fn chunks<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    started: impl Fn() -> T,
    push: fn(&mut T, &[u8]) -> Bytes,
    cases: &[(&str, &[u8])],
    split: (&str, &[u8], usize),
) {
    for &(name, chunk) in cases {
        let mut stream = started();
        group.bench_function(name, |b| {
            b.iter(|| black_box(push(&mut stream, black_box(chunk))));
        });
    }
    let (name, chunk, at) = split;
    let (head, tail) = chunk.split_at(at);
    let mut stream = started();
    group.bench_function(name, |b| {
        b.iter(|| {
            black_box(push(&mut stream, black_box(head)));
            black_box(push(&mut stream, black_box(tail)));
        });
    });
}
