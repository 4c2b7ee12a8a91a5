//! Precision, recall and false-hit rate of the semantic matcher on the crate's labelled
//! pairs, per embedder and threshold, on the tune split and the held-out split.
//!
//! ```text
//! cargo run -p portcullis-cache --release --example semantic_eval            # the tables
//! cargo run -p portcullis-cache --release --example semantic_eval -- --pairs # each error
//! cargo run -p portcullis-cache --release --example semantic_eval -- --explain "A" "B"
//! ```
//!
//! The row marked `*` is the default (the embedder's own threshold). The last table is the
//! similarity alone, without the lexical veto: what the veto is worth.
//!
//! With the feature `bert` and `PORTCULLIS_MINILM_DIR` naming an all-MiniLM-L6-v2 folder,
//! the BERT embedder is measured too (each question embedded once):
//!
//! ```text
//! PORTCULLIS_MINILM_DIR=/path/to/model cargo run -p portcullis-cache --release --features bert --example semantic_eval
//! ```

use std::sync::Arc;

use portcullis_cache::semantic::{
    Embedder, Evaluation, LabelledPair, Matcher, NgramEmbedder, Reject, evaluate,
    evaluate_similarity,
};

const TUNE: &str = include_str!("../eval/pairs.jsonl");
const HELDOUT: &str = include_str!("../eval/heldout.jsonl");

const THRESHOLDS: [f32; 12] = [
    0.40, 0.50, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.93, 0.95, 0.98,
];

fn cells(e: &Evaluation) -> String {
    format!(
        "{:>5.3} | {:>5.3} | {:>5.3} ({}/{})",
        e.precision(),
        e.recall(),
        e.false_hit_rate(),
        e.false_hits,
        e.negatives
    )
}

fn header(first: &str) {
    println!(
        "| {first:<16} | thr   | tune: P | R     | false-hit rate | heldout: P | R     | false-hit rate |"
    );
    println!(
        "|------------------|-------|---------|-------|----------------|------------|-------|----------------|"
    );
}

/// The thresholds swept for an embedder: finer where BERT's similarities lie.
fn thresholds_for(embedder: &dyn Embedder) -> Vec<f32> {
    if embedder.id().starts_with("ngram") {
        THRESHOLDS.to_vec()
    } else {
        vec![
            0.50, 0.60, 0.65, 0.70, 0.72, 0.75, 0.78, 0.80, 0.82, 0.85, 0.88, 0.90, 0.93, 0.95,
        ]
    }
}

#[cfg(feature = "bert")]
mod bert {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use portcullis_cache::semantic::{BertEmbedder, Embedder};

    /// BERT, each text embedded once: the sweep asks for the same questions at every
    /// threshold.
    #[derive(Debug)]
    struct Memo {
        inner: BertEmbedder,
        vectors: Mutex<HashMap<String, Vec<f32>>>,
    }

    impl Embedder for Memo {
        fn id(&self) -> &str {
            self.inner.id()
        }

        fn embed(&self, text: &str) -> Vec<f32> {
            if let Some(v) = self.vectors.lock().unwrap().get(text) {
                return v.clone();
            }
            let v = self.inner.embed(text);
            self.vectors
                .lock()
                .unwrap()
                .insert(text.to_owned(), v.clone());
            v
        }

        fn default_threshold(&self) -> f32 {
            self.inner.default_threshold()
        }
    }

    /// BERT from `PORTCULLIS_MINILM_DIR`, or `None` (said on stderr) without it.
    pub(crate) fn load() -> Option<Arc<dyn Embedder>> {
        let Some(dir) = std::env::var_os("PORTCULLIS_MINILM_DIR") else {
            eprintln!("PORTCULLIS_MINILM_DIR is not set: BERT is not measured\n");
            return None;
        };
        let inner = BertEmbedder::from_dir(dir).expect("all-MiniLM-L6-v2");
        Some(Arc::new(Memo {
            inner,
            vectors: Mutex::default(),
        }))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, a, b] = args.as_slice()
        && flag == "--explain"
    {
        let matcher = Matcher::new(Arc::new(NgramEmbedder::new()), None);
        let (va, vb) = (matcher.embed(a), matcher.embed(b));
        println!(
            "similarity {:.3}",
            portcullis_cache::semantic::cosine(&va, &vb)
        );
        match matcher.accepts(a, &va, b, &vb) {
            Ok(s) => println!("accepted ({s:.3})"),
            Err(reject) => println!("refused: {reject}"),
        }
        // The veto alone, whatever the similarity.
        let veto_only = Matcher::new(Arc::new(NgramEmbedder::new()), Some(f32::NEG_INFINITY));
        match veto_only.accepts(a, &va, b, &vb) {
            Err(Reject::Veto(veto)) => println!("veto: {veto}"),
            _ => println!("veto: passes"),
        }
        return;
    }
    let show_pairs = args.iter().any(|a| a == "--pairs");
    let tune = LabelledPair::parse_jsonl(TUNE).expect("eval/pairs.jsonl");
    let heldout = LabelledPair::parse_jsonl(HELDOUT).expect("eval/heldout.jsonl");
    let count = |p: &[LabelledPair]| (p.iter().filter(|p| p.same).count(), p.len());
    println!(
        "tune: {} same / {} pairs; heldout: {} same / {} pairs\n",
        count(&tune).0,
        count(&tune).1,
        count(&heldout).0,
        count(&heldout).1
    );

    #[allow(unused_mut)] // pushed to with the feature `bert`
    let mut embedders: Vec<Arc<dyn Embedder>> = vec![
        Arc::new(NgramEmbedder::new()),
        Arc::new(NgramEmbedder::with_dims(256)),
        Arc::new(NgramEmbedder::with_dims(1024)),
    ];
    #[cfg(feature = "bert")]
    if let Some(bert) = bert::load() {
        embedders.push(bert);
    }
    println!("Matcher (similarity and veto)\n");
    header("embedder");
    for embedder in &embedders {
        let default = embedder.default_threshold();
        let mut thresholds = thresholds_for(embedder.as_ref());
        if !thresholds.contains(&default) {
            thresholds.push(default);
            thresholds.sort_by(f32::total_cmp);
        }
        for t in thresholds {
            let matcher = Matcher::new(embedder.clone(), Some(t));
            let mark = if t == default { "*" } else { " " };
            println!(
                "| {:<16} | {t:.2}{mark} | {} | {} |",
                embedder.id(),
                cells(&evaluate(&matcher, &tune)),
                cells(&evaluate(&matcher, &heldout)),
            );
        }
    }

    // The default embedder, and BERT when it is measured.
    let main_embedders: Vec<_> = embedders
        .iter()
        .filter(|e| e.id() != "ngram-v1-256" && e.id() != "ngram-v1-1024")
        .collect();
    for embedder in &main_embedders {
        println!("\nSimilarity alone (no veto), {}\n", embedder.id());
        header("embedder");
        for t in thresholds_for(embedder.as_ref()) {
            println!(
                "| {:<16} | {t:.2}  | {} | {} |",
                embedder.id(),
                cells(&evaluate_similarity(embedder.as_ref(), t, &tune)),
                cells(&evaluate_similarity(embedder.as_ref(), t, &heldout)),
            );
        }
    }

    if !show_pairs {
        return;
    }
    for embedder in &main_embedders {
        let matcher = Matcher::new(Arc::clone(embedder), None);
        for (name, pairs) in [("tune", &tune), ("heldout", &heldout)] {
            let e = evaluate(&matcher, pairs);
            println!("\n{}, {name}: false hits", embedder.id());
            for &i in &e.false_hit_pairs {
                println!("  [{}] {:?} / {:?}", pairs[i].kind, pairs[i].a, pairs[i].b);
            }
            println!("{}, {name}: misses", embedder.id());
            for &i in &e.missed_pairs {
                let p = &pairs[i];
                let why =
                    match matcher.accepts(&p.a, &matcher.embed(&p.a), &p.b, &matcher.embed(&p.b)) {
                        Err(Reject::Veto(v)) => v.to_string(),
                        Err(r) => r.to_string(),
                        Ok(_) => String::new(),
                    };
                println!("  [{}] {:?} / {:?}: {why}", p.kind, p.a, p.b);
            }
        }
    }
}
