//! The default semantic matcher against the crate's labelled pairs: the false-hit rate the
//! project allows (at most 1%, none on the tune split) and recall floors below what is
//! measured, so a change that trades wrong answers for hits, or loses hits, fails here.

use std::sync::Arc;

use portcullis_cache::semantic::{
    Evaluation, LabelledPair, Matcher, NgramEmbedder, evaluate, evaluate_similarity,
};

const TUNE: &str = include_str!("../eval/pairs.jsonl");
const HELDOUT: &str = include_str!("../eval/heldout.jsonl");

/// Measured at the default threshold (0.70): tune 0.932, heldout 0.757.
const TUNE_RECALL_FLOOR: f64 = 0.90;
const HELDOUT_RECALL_FLOOR: f64 = 0.72;

fn default_matcher() -> Matcher {
    Matcher::new(Arc::new(NgramEmbedder::new()), None)
}

fn describe(pairs: &[LabelledPair], e: &Evaluation) -> String {
    let list = |indices: &[usize]| {
        indices
            .iter()
            .map(|&i| {
                format!(
                    "\n  [{}] {:?} / {:?}",
                    pairs[i].kind, pairs[i].a, pairs[i].b
                )
            })
            .collect::<String>()
    };
    format!(
        "precision {:.3}, recall {:.3}, false-hit rate {:.3}\nfalse hits:{}\nmisses:{}",
        e.precision(),
        e.recall(),
        e.false_hit_rate(),
        list(&e.false_hit_pairs),
        list(&e.missed_pairs)
    )
}

#[test]
fn the_sets_are_well_formed() {
    let tune = LabelledPair::parse_jsonl(TUNE).unwrap();
    let heldout = LabelledPair::parse_jsonl(HELDOUT).unwrap();
    assert!(tune.len() + heldout.len() >= 300);
    // About 30% held out, both kinds in each split.
    let share = heldout.len() as f64 / (tune.len() + heldout.len()) as f64;
    assert!((0.25..=0.4).contains(&share), "{share}");
    for split in [&tune, &heldout] {
        assert!(split.iter().filter(|p| p.same).count() > split.len() / 4);
        assert!(split.iter().filter(|p| !p.same).count() > split.len() / 3);
    }
}

#[test]
fn tune_split_no_false_hit() {
    let pairs = LabelledPair::parse_jsonl(TUNE).unwrap();
    let e = evaluate(&default_matcher(), &pairs);
    assert_eq!(e.false_hits, 0, "{}", describe(&pairs, &e));
    assert!(e.recall() >= TUNE_RECALL_FLOOR, "{}", describe(&pairs, &e));
}

#[test]
fn heldout_split_at_most_one_percent_false_hits() {
    let pairs = LabelledPair::parse_jsonl(HELDOUT).unwrap();
    let e = evaluate(&default_matcher(), &pairs);
    assert!(e.false_hit_rate() <= 0.01, "{}", describe(&pairs, &e));
    assert!(
        e.recall() >= HELDOUT_RECALL_FLOOR,
        "{}",
        describe(&pairs, &e)
    );
}

#[test]
fn the_veto_carries_the_precision() {
    // The similarity alone at the default threshold serves many wrong answers: the veto is
    // what keeps them out (if this ever passes, the embedder has become good enough to
    // revisit the threshold).
    let pairs = LabelledPair::parse_jsonl(TUNE).unwrap();
    let embedder = NgramEmbedder::new();
    let alone = evaluate_similarity(&embedder, default_matcher().threshold(), &pairs);
    assert!(alone.false_hit_rate() > 0.2, "{}", describe(&pairs, &alone));
}

#[test]
fn decisions_do_not_depend_on_which_side_is_cached() {
    let matcher = default_matcher();
    for text in [TUNE, HELDOUT] {
        for p in LabelledPair::parse_jsonl(text).unwrap() {
            let (va, vb) = (matcher.embed(&p.a), matcher.embed(&p.b));
            assert_eq!(
                matcher.accepts(&p.a, &va, &p.b, &vb).is_ok(),
                matcher.accepts(&p.b, &vb, &p.a, &va).is_ok(),
                "{:?} / {:?}",
                p.a,
                p.b
            );
        }
    }
}
