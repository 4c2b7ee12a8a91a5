//! The semantic matcher: embedding a question, comparing one candidate (similarity and
//! veto), and scanning a flat partition of 100 and 1,000 cached questions for the best
//! match, as the cache layer does on an exact miss.
//!
//! With the feature `bert` and `PORTCULLIS_MINILM_DIR` naming an all-MiniLM-L6-v2 folder,
//! `semantic_embed` also times the BERT embedder on the same two questions:
//!
//! ```text
//! PORTCULLIS_MINILM_DIR=/path/to/model cargo bench -p portcullis-cache --features bert --bench semantic
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portcullis_cache::semantic::{Embedder, Matcher, NgramEmbedder};

const SHORT: &str = "How do I reset my password?";
/// About 200 characters.
const LONG: &str = "I'm running a small Postgres database for our team's internal dashboard and \
                    the queries got slow after the last import. Should we add an index on the \
                    created_at column or cache the results?";

/// `n` distinct questions on mixed topics, deterministic.
fn questions(n: usize) -> Vec<String> {
    const FRAMES: [&str; 6] = [
        "How do I {v} my {o}?",
        "What is the best way to {v} a {o}?",
        "Why can't I {v} the {o} on my laptop?",
        "Can you explain how to {v} an old {o}?",
        "Is it safe to {v} a {o} every day?",
        "What happens if I {v} the {o} twice?",
    ];
    const VERBS: [&str; 14] = [
        "reset", "clean", "update", "replace", "delete", "backup", "repair", "install", "freeze",
        "paint", "sell", "rename", "share", "export",
    ];
    const OBJECTS: [&str; 12] = [
        "password",
        "router",
        "account",
        "kitchen sink",
        "bike chain",
        "git branch",
        "phone",
        "database",
        "garden fence",
        "passport",
        "spreadsheet",
        "car battery",
    ];
    let mut out = Vec::with_capacity(n);
    'fill: for f in FRAMES {
        for o in OBJECTS {
            for v in VERBS {
                if out.len() == n {
                    break 'fill;
                }
                out.push(f.replace("{v}", v).replace("{o}", o));
            }
        }
    }
    let base = out.len();
    for i in 0..n.saturating_sub(base) {
        out.push(format!("{} (variant {i})", out[i % base]));
    }
    out
}

fn bench(c: &mut Criterion) {
    let embedder = NgramEmbedder::new();
    let matcher = Matcher::new(Arc::new(embedder.clone()), None);

    let mut group = c.benchmark_group("semantic_embed");
    for (name, text) in [("short_27b", SHORT), ("long_200b", LONG)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| embedder.embed(black_box(text))));
    }
    #[cfg(feature = "bert")]
    if let Some(dir) = std::env::var_os("PORTCULLIS_MINILM_DIR") {
        let bert =
            portcullis_cache::semantic::BertEmbedder::from_dir(dir).expect("all-MiniLM-L6-v2");
        for (name, text) in [("bert_short_27b", SHORT), ("bert_long_200b", LONG)] {
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_function(name, |b| b.iter(|| bert.embed(black_box(text))));
        }
    } else {
        eprintln!("PORTCULLIS_MINILM_DIR is not set: BERT is not measured");
    }
    group.finish();

    let mut group = c.benchmark_group("semantic_accepts");
    let cases = [
        // Similar and passed by the veto: the whole path (both texts read by the veto).
        ("paraphrase_accepted", "How can I reset my password?"),
        // Similar, refused by the veto.
        ("near_miss_vetoed", "How did I reset my password?"),
        // Dissimilar: the similarity alone refuses it.
        ("unrelated_below", "What is the capital of Australia?"),
    ];
    let query_vec = matcher.embed(SHORT);
    for (name, candidate) in cases {
        let candidate_vec = matcher.embed(candidate);
        group.bench_function(name, |b| {
            b.iter(|| {
                matcher.accepts(
                    black_box(SHORT),
                    black_box(&query_vec),
                    black_box(candidate),
                    black_box(&candidate_vec),
                )
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("semantic_scan");
    for n in [100, 1_000] {
        let candidates: Vec<(String, Vec<f32>)> = questions(n)
            .into_iter()
            .map(|q| {
                let v = matcher.embed(&q);
                (q, v)
            })
            .collect();
        // A query with a few close candidates in the partition (one paraphrase, and near
        // misses the veto refuses), the rest unrelated.
        let query = "What's the best way to reset my router?";
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(
            BenchmarkId::new("embed_and_scan", n),
            &candidates,
            |b, c| {
                b.iter(|| {
                    let query_vec = matcher.embed(black_box(query));
                    c.iter()
                        .filter_map(|(text, vec)| {
                            matcher.accepts(query, &query_vec, text, vec).ok()
                        })
                        .max_by(f32::total_cmp)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
