//! The default embedder: hashed words, word pairs and character n-grams.

use super::Embedder;
use super::text::{self, Class, Token};

/// The default embedder: offline, nothing to download, deterministic on every platform.
///
/// A question is read as the veto reads it (contractions expanded, question frames made one
/// marker, numbers with their units, words stemmed and synonyms merged), then hashed into a
/// fixed number of dimensions with a random sign per feature (the hashing trick), and
/// L2-normalised. The features, by weight:
///
/// - each content word's key, and each number with its unit (1.0);
/// - each pair of consecutive meaningful tokens (0.5), so order counts a little;
/// - the character 3-, 4- and 5-grams of each content word's key between word boundaries
///   (their joint weight 1.0), so a misspelt word stays close to its spelling;
/// - the markers: question word, modality, tense, negation, order words (0.5);
/// - words of asking and greeting (0.3), stop words (0.15); politeness not at all.
///
/// The hash is FNV-1a with a final mix (no `RandomState`), so a vector stored by one
/// process compares with one made by another. The id names the version and the dimensions:
/// vectors of other ids never compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NgramEmbedder {
    dims: usize,
    id: String,
}

impl NgramEmbedder {
    /// The dimensions of [`NgramEmbedder::new`]: 512 floats, 2 KiB a question.
    pub const DEFAULT_DIMS: usize = 512;

    /// The default embedder ([`DEFAULT_DIMS`](Self::DEFAULT_DIMS) dimensions).
    pub fn new() -> Self {
        Self::with_dims(Self::DEFAULT_DIMS)
    }

    /// An embedder into `dims` dimensions, a power of two from 64.
    ///
    /// # Panics
    ///
    /// When `dims` is not a power of two or is below 64.
    pub fn with_dims(dims: usize) -> Self {
        assert!(
            dims >= 64 && dims.is_power_of_two(),
            "NgramEmbedder dimensions must be a power of two from 64, got {dims}"
        );
        NgramEmbedder {
            dims,
            id: format!("ngram-v1-{dims}"),
        }
    }

    /// The number of dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }
}

impl Default for NgramEmbedder {
    fn default() -> Self {
        Self::new()
    }
}

const CONTENT: f32 = 1.0;
const PAIR: f32 = 0.5;
const GRAMS: f32 = 1.0;
const MARKER: f32 = 0.5;
const SOFT: f32 = 0.3;
const STOP: f32 = 0.15;

/// 64-bit FNV-1a, with a final avalanche so the low bits (the index) and the top bit (the
/// sign) are both well mixed.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new(seed: u8) -> Self {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.write(&[seed]);
        h
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

// Seeds that keep the kinds of feature apart.
const SEED_KEY: u8 = 1;
const SEED_PAIR: u8 = 2;
const SEED_GRAM: u8 = 3;
const SEED_MARKER: u8 = 4;
const SEED_STOP: u8 = 5;

fn add(v: &mut [f32], h: u64, weight: f32) {
    let i = (h as usize) & (v.len() - 1);
    v[i] += if h >> 63 == 0 { weight } else { -weight };
}

fn hash_str(seed: u8, s: &str) -> u64 {
    let mut h = Fnv::new(seed);
    h.write(s.as_bytes());
    h.finish()
}

/// The name a token contributes to word pairs, and whether it takes part in them.
fn pair_name(t: &Token) -> Option<&str> {
    match t.class {
        Class::Content(_) | Class::Number | Class::Soft => Some(t.key()),
        Class::Wh(_)
        | Class::Modal(_)
        | Class::Tense(_)
        | Class::Person(_)
        | Class::Neg(_)
        | Class::Rel(_) => Some(marker(t)),
        Class::Stop | Class::Polite => None,
    }
}

fn marker(t: &Token) -> &'static str {
    use super::lexicon::{Modal, Neg, Person, Rel, Tense, Wh};
    match t.class {
        Class::Wh(w) => match w {
            Wh::What => "?what",
            Wh::Why => "?why",
            Wh::When => "?when",
            Wh::Where => "?where",
            Wh::Who => "?who",
            Wh::Whose => "?whose",
            Wh::How => "?how",
        },
        Class::Modal(m) => match m {
            Modal::Can => "!can",
            Modal::Should => "!should",
            Modal::Must => "!must",
        },
        Class::Tense(t) => match t {
            Tense::Past => "@past",
            Tense::Future => "@future",
        },
        Class::Person(p) => match p {
            Person::First => "&first",
            Person::Second => "&second",
            Person::He => "&he",
            Person::She => "&she",
            Person::They => "&they",
        },
        Class::Neg(n) => match n {
            Neg::Not => "~not",
            Neg::Never => "~never",
            Neg::Without => "~without",
            Neg::Except => "~except",
        },
        Class::Rel(r) => match r {
            Rel::To => ">to",
            Rel::From => ">from",
            Rel::Than => ">than",
            Rel::Versus => ">vs",
            Rel::Per => ">per",
            Rel::Of => ">of",
            Rel::In => ">in",
            Rel::Before => ">before",
            Rel::After => ">after",
            Rel::For => ">for",
            Rel::About => ">about",
            Rel::With => ">with",
            Rel::On => ">on",
            Rel::At => ">at",
            Rel::By => ">by",
            Rel::And => ">and",
            Rel::Or => ">or",
        },
        _ => "",
    }
}

/// Adds the character n-grams of `word` (3 to 5 characters, with a boundary on each side).
fn add_grams(v: &mut [f32], word: &str, buf: &mut Vec<char>) {
    buf.clear();
    buf.push(' ');
    buf.extend(word.chars());
    buf.push(' ');
    let count: usize = (3..=5).map(|n| buf.len().saturating_sub(n - 1)).sum();
    if count == 0 {
        return;
    }
    let weight = GRAMS / (count as f32).sqrt();
    for n in 3..=5 {
        for window in buf.windows(n) {
            // A character at a time (not a byte): the same n-gram, the same hash.
            let mut h = u64::from(SEED_GRAM) << 8 | n as u64;
            for c in window {
                h = (h ^ u64::from(*c as u32)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            // One multiply-shift round suffices for a few characters already mixed.
            h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            add(v, h ^ (h >> 32), weight);
        }
    }
}

impl Embedder for NgramEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let (tokens, _) = text::tokens(text);
        let mut v = vec![0f32; self.dims];
        let mut buf = Vec::with_capacity(32);
        let mut previous: Option<&str> = None;
        for t in &tokens {
            match t.class {
                Class::Content(_) => {
                    add(&mut v, hash_str(SEED_KEY, t.key()), CONTENT);
                    add_grams(&mut v, t.key(), &mut buf);
                }
                Class::Number => add(&mut v, hash_str(SEED_KEY, t.key()), CONTENT),
                Class::Soft => add(&mut v, hash_str(SEED_KEY, t.key()), SOFT),
                Class::Stop => add(&mut v, hash_str(SEED_STOP, &t.surface), STOP),
                Class::Polite => {}
                _ => add(&mut v, hash_str(SEED_MARKER, marker(t)), MARKER),
            }
            if let Some(name) = pair_name(t) {
                if let Some(prev) = previous {
                    let mut h = Fnv::new(SEED_PAIR);
                    h.write(prev.as_bytes());
                    h.write(&[0xff]);
                    h.write(name.as_bytes());
                    add(&mut v, h.finish(), PAIR);
                }
                previous = Some(name);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    /// 0.70: on the tune split, recall is flat from 0.40 to 0.65 and falls after 0.70 (the
    /// pairs lost are misspellings); no false hit at any threshold, the veto refusing every
    /// different pair. Kept above the flat part as a margin for what the veto lets through.
    fn default_threshold(&self) -> f32 {
        0.70
    }
}

#[cfg(test)]
mod tests {
    use super::super::cosine;
    use super::*;

    const GOLDEN: i64 = 1_353_355;

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let e = NgramEmbedder::new();
        let v = e.embed("How do I reset my password?");
        assert_eq!(v.len(), 512);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(v, e.embed("How do I reset my password?"));
        // Fixed by the hash, not by the process or the platform: a change here changes the
        // vectors stored by every cache, and needs a new id.
        let fingerprint: i64 = v
            .iter()
            .enumerate()
            .map(|(i, x)| (i as i64 + 1) * (x * 1e4).round() as i64)
            .sum();
        assert_eq!(fingerprint, GOLDEN, "ngram-v1 vectors changed");
    }

    #[test]
    fn empty_text_is_the_zero_vector() {
        let v = NgramEmbedder::new().embed("  ?! ");
        assert!(v.iter().all(|x| *x == 0.0));
    }

    #[test]
    fn paraphrases_are_closer_than_other_questions() {
        let e = NgramEmbedder::new();
        let q = e.embed("How do I reset my password?");
        let para = e.embed("What's the best way to reset my password");
        let typo = e.embed("how do i reset my passwrod");
        let other = e.embed("How do I bake sourdough bread?");
        assert!(cosine(&q, &para) > 0.9, "{}", cosine(&q, &para));
        assert!(cosine(&q, &typo) > cosine(&q, &other));
        assert!(cosine(&q, &other) < 0.3, "{}", cosine(&q, &other));
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn dims_must_be_a_power_of_two() {
        let _ = NgramEmbedder::with_dims(100);
    }
}
