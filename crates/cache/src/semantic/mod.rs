//! Semantic matching: is a cached question the same question as this one?
//!
//! PLACEHOLDER: the interface the cache layer uses; the implementation is being written.

use std::fmt;
use std::sync::Arc;

/// Turns text into a vector. Vectors are L2-normalised, so cosine similarity is a dot product.
pub trait Embedder: Send + Sync + fmt::Debug + 'static {
    /// A stable id naming the embedder and its version (entries from different ids never
    /// compare).
    fn id(&self) -> &str;
    /// The vector of `text`, L2-normalised.
    fn embed(&self, text: &str) -> Vec<f32>;
    /// The similarity at or above which two questions are the same, for this embedder.
    fn default_threshold(&self) -> f32;
}

/// Cosine similarity of two L2-normalised vectors (0 when their lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The default embedder: hashed words (placeholder).
#[derive(Clone, Debug, Default)]
pub struct NgramEmbedder;

impl NgramEmbedder {
    /// The default embedder.
    pub fn new() -> Self {
        Self
    }
}

impl Embedder for NgramEmbedder {
    fn id(&self) -> &str {
        "placeholder"
    }
    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; 64];
        for w in text.split_whitespace() {
            let h = w
                .to_lowercase()
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            v[(h % 64) as usize] += 1.0;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
    fn default_threshold(&self) -> f32 {
        0.99
    }
}

/// Why a candidate was refused before or after its similarity was computed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Reject {
    /// A lexical difference that changes the answer (the reason in words).
    Veto(String),
    /// Similar, but below the threshold.
    Below(f32),
}

/// An embedder with its threshold: decides whether a cached question answers this one.
#[derive(Clone, Debug)]
pub struct Matcher {
    embedder: Arc<dyn Embedder>,
    threshold: f32,
}

impl Matcher {
    /// `embedder` with `threshold` (its default when `None`).
    pub fn new(embedder: Arc<dyn Embedder>, threshold: Option<f32>) -> Self {
        let threshold = threshold.unwrap_or_else(|| embedder.default_threshold());
        Self {
            embedder,
            threshold,
        }
    }

    /// The embedder's id.
    pub fn embedder_id(&self) -> &str {
        self.embedder.id()
    }

    /// The threshold in use.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The vector of a question.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        self.embedder.embed(text)
    }

    /// The similarity of `query` to a cached `candidate` when it may answer it.
    pub fn accepts(
        &self,
        query: &str,
        query_vec: &[f32],
        candidate: &str,
        candidate_vec: &[f32],
    ) -> Result<f32, Reject> {
        if query.trim().eq_ignore_ascii_case(candidate.trim()) {
            return Ok(1.0);
        }
        let s = cosine(query_vec, candidate_vec);
        if s >= self.threshold {
            Ok(s)
        } else {
            Err(Reject::Below(s))
        }
    }
}
