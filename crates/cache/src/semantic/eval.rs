//! Measuring a matcher on labelled pairs of questions.
//!
//! A pair is a cached question `a`, a new question `b`, and whether one answer serves both
//! (`same`). The files are JSON lines:
//!
//! ```text
//! {"a": "How do I reset my password?", "b": "How can I reset my password?", "same": true, "kind": "frame"}
//! ```
//!
//! The crate's own sets are `eval/pairs.jsonl` (the tune split, which the rules were shaped
//! on) and `eval/heldout.jsonl` (written before the first run and never tuned on; other
//! topics, a chattier style).

use std::fmt;

use super::{Embedder, Matcher, cosine};

/// One labelled pair: `a` the query, `b` the cached question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledPair {
    /// The new question.
    pub a: String,
    /// The cached question.
    pub b: String,
    /// Whether the answer to `b` answers `a`.
    pub same: bool,
    /// What the pair tests (`frame`, `typo`, `number`, `negation`...).
    pub kind: String,
}

impl LabelledPair {
    /// Reads pairs from JSON lines (blank lines and lines starting with `#` are skipped).
    pub fn parse_jsonl(text: &str) -> Result<Vec<LabelledPair>, ParseError> {
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: String| ParseError {
                line: n + 1,
                message,
            };
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| error(e.to_string()))?;
            let text = |field: &str| {
                value[field]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| error(format!("`{field}`: expected a string")))
            };
            pairs.push(LabelledPair {
                a: text("a")?,
                b: text("b")?,
                same: value["same"]
                    .as_bool()
                    .ok_or_else(|| error("`same`: expected true or false".to_owned()))?,
                kind: value["kind"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(pairs)
    }
}

/// A line of a pairs file that is not a pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    line: usize,
    message: String,
}

impl ParseError {
    /// The line, from 1.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The outcome of a matcher on a set of pairs.
///
/// A *hit* is a pair the matcher accepts. Precision is the share of hits that are right,
/// recall the share of `same` pairs hit, and the **false-hit rate** the share of the other
/// pairs hit: how often a question would be served an answer to a different one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Pairs labelled `same`.
    pub positives: usize,
    /// Pairs labelled different.
    pub negatives: usize,
    /// `same` pairs accepted.
    pub true_hits: usize,
    /// Different pairs accepted: wrong answers served.
    pub false_hits: usize,
    /// The indices of the false hits.
    pub false_hit_pairs: Vec<usize>,
    /// The indices of the `same` pairs refused.
    pub missed_pairs: Vec<usize>,
}

impl Evaluation {
    /// Right hits among all hits (1 when nothing was hit).
    pub fn precision(&self) -> f64 {
        let hits = self.true_hits + self.false_hits;
        if hits == 0 {
            1.0
        } else {
            self.true_hits as f64 / hits as f64
        }
    }

    /// `same` pairs hit, among all `same` pairs.
    pub fn recall(&self) -> f64 {
        ratio(self.true_hits, self.positives)
    }

    /// Different pairs hit, among all different pairs.
    pub fn false_hit_rate(&self) -> f64 {
        ratio(self.false_hits, self.negatives)
    }

    fn record(&mut self, index: usize, same: bool, hit: bool) {
        match (same, hit) {
            (true, true) => self.true_hits += 1,
            (true, false) => self.missed_pairs.push(index),
            (false, true) => {
                self.false_hits += 1;
                self.false_hit_pairs.push(index);
            }
            (false, false) => {}
        }
        if same {
            self.positives += 1;
        } else {
            self.negatives += 1;
        }
    }
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Runs `matcher` on every pair, `a` as the query and `b` as the cached candidate.
pub fn evaluate(matcher: &Matcher, pairs: &[LabelledPair]) -> Evaluation {
    let mut evaluation = Evaluation::default();
    for (i, pair) in pairs.iter().enumerate() {
        let (va, vb) = (matcher.embed(&pair.a), matcher.embed(&pair.b));
        let hit = matcher.accepts(&pair.a, &va, &pair.b, &vb).is_ok();
        evaluation.record(i, pair.same, hit);
    }
    evaluation
}

/// Runs the similarity alone (no veto) at `threshold`: what the embedder would do by itself.
pub fn evaluate_similarity(
    embedder: &dyn Embedder,
    threshold: f32,
    pairs: &[LabelledPair],
) -> Evaluation {
    let mut evaluation = Evaluation::default();
    for (i, pair) in pairs.iter().enumerate() {
        let similarity = cosine(&embedder.embed(&pair.a), &embedder.embed(&pair.b));
        evaluation.record(i, pair.same, similarity >= threshold);
    }
    evaluation
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn parses_lines_and_reports_the_bad_one() {
        let pairs = LabelledPair::parse_jsonl(
            "{\"a\": \"x\", \"b\": \"y\", \"same\": true, \"kind\": \"k\"}\n\n# note\n",
        )
        .unwrap();
        assert_eq!(pairs.len(), 1);
        assert!(pairs[0].same);
        let err =
            LabelledPair::parse_jsonl("{\"a\": \"x\", \"b\": \"y\", \"same\": true}\n{\"a\": 1}")
                .unwrap_err();
        assert_eq!(err.line(), 2);
    }

    #[test]
    fn counts_hits_and_rates() {
        let pair = |a: &str, b: &str, same| LabelledPair {
            a: a.into(),
            b: b.into(),
            same,
            kind: String::new(),
        };
        let pairs = [
            pair(
                "How do I reset my password?",
                "How can I reset my password?",
                true,
            ),
            pair(
                "How do I reset my password?",
                "How do I reset my username?",
                false,
            ),
            pair("Why?", "Explain the theory of relativity", true),
        ];
        let matcher = Matcher::new(Arc::new(super::super::NgramEmbedder::new()), None);
        let e = evaluate(&matcher, &pairs);
        assert_eq!(
            (e.positives, e.negatives, e.true_hits, e.false_hits),
            (2, 1, 1, 0)
        );
        assert_eq!(e.missed_pairs, [2]);
        assert_eq!(e.precision(), 1.0);
        assert_eq!(e.recall(), 0.5);
        assert_eq!(e.false_hit_rate(), 0.0);
    }
}
