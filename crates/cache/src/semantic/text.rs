//! From text to classified tokens: the one reading of a question that the veto and the
//! n-gram embedder share.
//!
//! 1. **Lexing** splits words, numbers (`1,000`, `3.5`, `$45`, `10%`, `5km`, `3rd`), code
//!    identifiers, URLs and e-mails (kept whole), operator symbols (`==`, `+=`), and
//!    characters of scripts written without spaces (one token each). It notes which tokens
//!    open a sentence, so a capital there is not taken for a name.
//! 2. **Normalising** lowercases, folds Latin diacritics, expands contractions (`what's`,
//!    `doesn't`, `dont`, `I'd`) and joins hyphenated words (`e-mail` → `email`).
//! 3. **Phrases** rewrite the frames of a question to one marker each ("how do I", "how can
//!    I", "what's the best way to", "is there a way to" → *how*; "is it OK to", "am I
//!    allowed to" → *can*; "have to", "need to" → *must*; "explain how" → *how*), drop
//!    polite openings at the start of a clause ("could you please", "I was wondering", "do
//!    you know"), and merge a few two-word forms ("log in" → `login`, "set up" → `setup`).
//! 4. **Numbers** read digits and number words (`twenty five`, `a dozen`, `third`) into one
//!    value, with the unit written after them (`5 km`, `180 degrees Celsius`, `15 percent`).
//! 5. **Classes** sort the rest: content words (stemmed, synonyms merged), stop words,
//!    politeness, words of asking, and the markers the veto compares one by one (question
//!    word, modality, tense, person, negation, order words).

use std::borrow::Cow;

use super::lexicon::{self, Lang, Modal, Neg, Person, Rel, Tense, Wh};

/// What a token is, for the veto and the embedder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// A word that must be in both questions (its key, after stemming and synonyms).
    Content(Flavor),
    /// A quantity: value and unit (the key, e.g. `5 km`).
    Number,
    /// A word without content of its own.
    Stop,
    /// Politeness: free everywhere.
    Polite,
    /// Words of asking and greeting: free beside content words.
    Soft,
    Wh(Wh),
    Modal(Modal),
    Tense(Tense),
    Person(Person),
    Neg(Neg),
    Rel(Rel),
}

/// The kind of a content token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// A word of a language (the only kind a typo allowance may apply to).
    Word,
    /// A code identifier, URL, e-mail, version or model name: compared verbatim.
    Ident,
    /// A word of time (`tomorrow`, `June`, `Monday`).
    Time,
    /// A unit named without a number (`miles`, `Celsius`).
    Unit,
    /// An operator (`+`, `==`, `>=`).
    Symbol,
    /// A character of a script written without spaces.
    Glyph,
}

/// One token of a question.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) class: Class,
    /// The comparison key: the content key, the quantity, the symbol.
    key: Cow<'static, str>,
    /// The lowercased, folded form as written.
    pub(crate) surface: String,
    /// A name: capitalised inside a sentence, an acronym, or an identifier.
    pub(crate) entity: bool,
}

impl Token {
    /// The comparison key: the content key (stemmed, synonyms merged), the quantity
    /// (`5 km`), the symbol, the key of a word of asking.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

/// A question read once.
#[derive(Clone, Debug)]
pub(crate) struct Analysed {
    pub(crate) tokens: Vec<Token>,
    pub(crate) lang: Option<Lang>,
    pub(crate) script: Option<Script>,
    pub(crate) quotes: Vec<String>,
}

/// Reads a question.
pub(crate) fn analyse(text: &str) -> Analysed {
    let (tokens, lang) = tokens(text);
    Analysed {
        tokens,
        lang,
        script: dominant_script(text),
        quotes: quotes(text),
    }
}

/// The tokens of a question and its language (all the embedder needs).
pub(crate) fn tokens(text: &str) -> (Vec<Token>, Option<Lang>) {
    let pieces = normalise(lex(text));
    let lang = lexicon::detect_lang(
        pieces
            .iter()
            .filter(|p| p.kind == Kind::Word)
            .map(|p| p.w.as_str()),
    );
    let pieces = numbers(phrases(pieces));
    (classify(pieces, lang), lang)
}

// ---------------------------------------------------------------------------------------
// Scripts

/// The writing system of a text's letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Script {
    Latin,
    Greek,
    Cyrillic,
    Armenian,
    Hebrew,
    Arabic,
    Devanagari,
    Bengali,
    Thai,
    Hangul,
    /// Kana, with the Han characters of a text that has kana.
    Japanese,
    Han,
    Other,
}

fn script_of(c: char) -> Option<Script> {
    if !c.is_alphabetic() {
        return None;
    }
    Some(match c as u32 {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => Script::Latin,
        0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
        0x400..=0x52F => Script::Cyrillic,
        0x530..=0x58F => Script::Armenian,
        0x590..=0x5FF => Script::Hebrew,
        0x600..=0x6FF | 0x750..=0x77F => Script::Arabic,
        0x900..=0x97F => Script::Devanagari,
        0x980..=0x9FF => Script::Bengali,
        0xE00..=0xE7F => Script::Thai,
        0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => Script::Hangul,
        0x3040..=0x30FF => Script::Japanese,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF => Script::Han,
        _ => Script::Other,
    })
}

/// The script most of a text's letters are in (Han counted as Japanese when the text has
/// kana); `None` for a text without letters.
fn dominant_script(text: &str) -> Option<Script> {
    let mut counts = [0usize; 13];
    for s in text.chars().filter_map(script_of) {
        counts[s as usize] += 1;
    }
    if counts[Script::Japanese as usize] > 0 {
        counts[Script::Japanese as usize] += counts[Script::Han as usize];
        counts[Script::Han as usize] = 0;
    }
    const ALL: [Script; 13] = [
        Script::Latin,
        Script::Greek,
        Script::Cyrillic,
        Script::Armenian,
        Script::Hebrew,
        Script::Arabic,
        Script::Devanagari,
        Script::Bengali,
        Script::Thai,
        Script::Hangul,
        Script::Japanese,
        Script::Han,
        Script::Other,
    ];
    let (i, n) = counts
        .iter()
        .enumerate()
        .max_by_key(|&(i, n)| (*n, usize::MAX - i))?;
    (*n > 0).then_some(ALL[i])
}

/// Characters of scripts written without spaces between words: each is a token.
fn unspaced(c: char) -> bool {
    matches!(
        c as u32,
        0x3040..=0x30FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xF900..=0xFAFF
            | 0xE00..=0xE7F
            | 0xE80..=0xEFF
            | 0x1000..=0x109F
            | 0x1780..=0x17FF
    )
}

// ---------------------------------------------------------------------------------------
// Quotes

/// The quoted strings of a text ("…", “…”, «…», `…`, and '…' around words), their inner
/// whitespace collapsed.
fn quotes(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    // A kind of quote found without its closing mark has none further on either: later
    // openers of that kind are skipped (linear on texts full of stray quote marks).
    let mut unclosed = [false; 6];
    let mut i = 0;
    while i < chars.len() {
        let (kind, close): (usize, &[char]) = match chars[i] {
            '"' => (0, &['"']),
            '\u{201C}' | '\u{201E}' => (1, &['\u{201D}', '\u{201C}']),
            '\u{AB}' => (2, &['\u{BB}']),
            '`' => (3, &['`']),
            '\u{300C}' => (4, &['\u{300D}']),
            '\'' | '\u{2018}'
                if (i == 0 || chars[i - 1].is_whitespace() || "([{".contains(chars[i - 1]))
                    && chars.get(i + 1).is_some_and(|c| !c.is_whitespace()) =>
            {
                (5, &['\'', '\u{2019}'])
            }
            _ => {
                i += 1;
                continue;
            }
        };
        if unclosed[kind] {
            i += 1;
            continue;
        }
        let single = matches!(chars[i], '\'' | '\u{2018}');
        let end = (i + 1..chars.len()).find(|&j| {
            close.contains(&chars[j])
                && (!single
                    || chars
                        .get(j + 1)
                        .is_none_or(|c| !c.is_alphanumeric() && *c != '\''))
        });
        match end {
            Some(j) => {
                let inner: String = chars[i + 1..j].iter().collect();
                let inner = inner.split_whitespace().collect::<Vec<_>>().join(" ");
                if !inner.is_empty() {
                    out.push(inner);
                }
                i = j + 1;
            }
            None => {
                unclosed[kind] = true;
                i += 1;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Lexing

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word,
    Number,
    Ident,
    Symbol,
    Glyph,
}

#[derive(Debug)]
struct Lexeme {
    text: String,
    kind: Kind,
    /// Opens a sentence.
    start: bool,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !unspaced(c)
}

/// Characters that join two word characters into one token (`e-mail`, `os.path`, `it's`).
const JOINERS: &[char] = &['-', '_', '.', '\'', '/', ':', '@', '&'];
/// Characters of operators.
const SYMBOLS: &[char] = &[
    '=', '<', '>', '!', '+', '-', '*', '/', '%', '^', '&', '|', '~',
];
/// Characters that end a sentence.
const ENDS: &[char] = &[
    '.', '!', '?', ':', ';', '\n', '\u{3002}', '\u{FF1F}', '\u{FF01}',
];

fn lex(text: &str) -> Vec<Lexeme> {
    let chars: Vec<char> = text
        .chars()
        .map(|c| match c {
            '\u{2019}' | '\u{2018}' | '\u{02BC}' => '\'',
            c => c,
        })
        .collect();
    let mut out: Vec<Lexeme> = Vec::new();
    let mut start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = if i > 0 { Some(chars[i - 1]) } else { None };
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            start |= c == '\n';
            i += 1;
            continue;
        }
        // A URL or an e-mail address, whole, at the start of a chunk.
        if prev.is_none_or(|p| p.is_whitespace() || "([{<\"'".contains(p)) {
            let end = (i..chars.len())
                .find(|&j| chars[j].is_whitespace())
                .unwrap_or(chars.len());
            let maybe = chars[i..end].contains(&'@')
                || chars[i..end].windows(3).any(|w| w == [':', '/', '/'])
                || chars[i..end].starts_with(&['w', 'w', 'w', '.']);
            let chunk: String = if maybe {
                chars[i..end].iter().collect()
            } else {
                String::new()
            };
            let trimmed = chunk.trim_end_matches(|c: char| ".,;:!?)]}>\"'".contains(c));
            if maybe && (is_url(trimmed) || is_email(trimmed)) {
                out.push(Lexeme {
                    text: trimmed.to_owned(),
                    kind: Kind::Ident,
                    start,
                });
                start = chunk[trimmed.len()..].contains(['.', '!', '?']);
                i = end;
                continue;
            }
        }
        let numeric_start = |n: Option<char>| n.is_some_and(|n| n.is_ascii_digit());
        if is_word_char(c)
            || ("$€£¥".contains(c) && numeric_start(next))
            || (c == '-' && numeric_start(next) && prev.is_none_or(|p| !is_word_char(p)))
        {
            let begin = i;
            i += 1;
            while i < chars.len() {
                let c = chars[i];
                let prev = chars[i - 1];
                let next = chars.get(i + 1).copied();
                let joins = is_word_char(c)
                    || (c == '°' && next.is_some_and(char::is_alphabetic))
                    || (JOINERS.contains(&c)
                        && is_word_char(prev)
                        && next.is_some_and(is_word_char))
                    || (c == ',' && prev.is_ascii_digit() && numeric_start(next));
                if joins {
                    i += 1;
                } else if c == ':'
                    && next == Some(':')
                    && is_word_char(prev)
                    && chars.get(i + 2).is_some_and(|&n| is_word_char(n))
                {
                    i += 2;
                } else if (c == '+' || c == '#') && prev.is_alphabetic() {
                    // c++, c#, f#
                    while i < chars.len() && (chars[i] == '+' || chars[i] == '#') {
                        i += 1;
                    }
                    break;
                } else if c == '%' && prev.is_ascii_digit() {
                    i += 1;
                    break;
                } else {
                    break;
                }
            }
            let mut run = String::with_capacity(i - begin);
            run.extend(&chars[begin..i]);
            push_run(run, start, &mut out);
            start = false;
        } else if unspaced(c) {
            out.push(Lexeme {
                text: c.to_string(),
                kind: Kind::Glyph,
                start,
            });
            start = false;
            i += 1;
        } else if SYMBOLS.contains(&c) {
            let begin = i;
            while i < chars.len() && SYMBOLS.contains(&chars[i]) {
                i += 1;
            }
            let run: String = chars[begin..i].iter().collect();
            if run.chars().all(|c| c == '!') {
                start = true;
            } else {
                out.push(Lexeme {
                    text: run,
                    kind: Kind::Symbol,
                    start: false,
                });
            }
        } else {
            start |= ENDS.contains(&c);
            i += 1;
        }
    }
    out
}

fn is_url(s: &str) -> bool {
    s.contains("://") || (s.starts_with("www.") && s.len() > 4)
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, host)) => {
            !user.is_empty()
                && host.contains('.')
                && !host.starts_with('.')
                && !host.ends_with('.')
                && user
                    .chars()
                    .all(|c| c.is_alphanumeric() || "._-+".contains(c))
        }
        None => false,
    }
}

/// Pushes one run of word characters: a number, an identifier or a word. A run that starts
/// with a number and goes on with hyphens (`100-word`, `5-year-old`) is split; a list of
/// numbers with commas (`1,2,3`) too.
fn push_run(run: String, start: bool, out: &mut Vec<Lexeme>) {
    let has_digit = run.bytes().any(|c| c.is_ascii_digit());
    if has_digit && parse_number(&run).is_some() {
        out.push(Lexeme {
            text: run,
            kind: Kind::Number,
            start,
        });
        return;
    }
    if has_digit && run.contains('-') {
        let first = run.split('-').next().unwrap_or_default();
        if parse_number(first).is_some() {
            for (k, part) in run.split('-').filter(|p| !p.is_empty()).enumerate() {
                push_run(part.to_owned(), start && k == 0, out);
            }
            return;
        }
    }
    if has_digit && run.contains(',') {
        for (k, part) in run.split(',').filter(|p| !p.is_empty()).enumerate() {
            push_run(part.to_owned(), start && k == 0, out);
        }
        return;
    }
    let code = run.contains(['_', '.', '/', ':', '@', '&', '+', '#', '°']);
    let kind = if has_digit || code {
        Kind::Ident
    } else {
        Kind::Word
    };
    out.push(Lexeme {
        text: run,
        kind,
        start,
    });
}

/// A number as written: optional currency or sign, digits with thousands commas and one
/// decimal point, and an optional unit or ordinal suffix (`5km`, `3rd`, `10%`, `$45`), in
/// any case.
fn parse_number(s: &str) -> Option<(f64, Option<&'static str>)> {
    let mut s = s;
    let mut prefix = None;
    for (sym, unit) in [("$", "$"), ("€", "€"), ("£", "£"), ("¥", "¥")] {
        if let Some(rest) = s.strip_prefix(sym) {
            prefix = Some(unit);
            s = rest;
        }
    }
    let negative = s.starts_with('-');
    if negative {
        s = &s[1..];
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(end);
    if !num.starts_with(|c: char| c.is_ascii_digit()) || num.ends_with(['.', ',']) {
        return None;
    }
    let digits: String = if num.contains(',') {
        let mut groups = num.split(',');
        let head = groups.next()?;
        if head.is_empty() || head.len() > 3 || head.contains('.') {
            return None;
        }
        let mut joined = head.to_owned();
        let tail: Vec<&str> = groups.collect();
        for (k, g) in tail.iter().enumerate() {
            let int = if k + 1 == tail.len() {
                g.split('.').next().unwrap_or(g)
            } else {
                g
            };
            if int.len() != 3 || (k + 1 < tail.len() && g.contains('.')) {
                return None;
            }
            joined.push_str(g);
        }
        joined
    } else {
        num.to_owned()
    };
    if digits.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = digits.parse().ok()?;
    let unit = match (suffix, prefix) {
        ("", prefix) => prefix,
        (_, Some(_)) => return None,
        (suffix, None) => Some(lexicon::unit(&suffix.to_lowercase())?.0),
    };
    Some((if negative { -value } else { value }, unit))
}

// ---------------------------------------------------------------------------------------
// Normalising

#[derive(Clone, Debug)]
struct Piece {
    /// Lowercased and folded (words), lowercased (identifiers), as written (symbols).
    w: String,
    kind: Kind,
    start: bool,
    entity: bool,
    /// Set by a phrase: the class the piece is.
    class: Option<Class>,
}

impl Piece {
    fn word(w: impl Into<String>, start: bool) -> Self {
        Piece {
            w: w.into(),
            kind: Kind::Word,
            start,
            entity: false,
            class: None,
        }
    }
}

impl Default for Piece {
    fn default() -> Self {
        Piece::word(String::new(), false)
    }
}

fn lower_fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        for l in c.to_lowercase() {
            lexicon::fold(l, &mut out);
        }
    }
    out
}

fn normalise(lexemes: Vec<Lexeme>) -> Vec<Piece> {
    let mut out = Vec::with_capacity(lexemes.len() + 4);
    for lx in lexemes {
        match lx.kind {
            Kind::Word => push_word(lx, &mut out),
            Kind::Ident | Kind::Number => out.push(Piece {
                w: if lx.text.bytes().any(|b| b.is_ascii_uppercase()) || !lx.text.is_ascii() {
                    lx.text.to_lowercase()
                } else {
                    lx.text
                },
                kind: lx.kind,
                start: lx.start,
                entity: lx.kind == Kind::Ident,
                class: None,
            }),
            Kind::Symbol | Kind::Glyph => out.push(Piece {
                w: lx.text,
                kind: lx.kind,
                start: lx.start,
                entity: false,
                class: None,
            }),
        }
    }
    out
}

fn push_word(lx: Lexeme, out: &mut Vec<Piece>) {
    let start = lx.start;
    let mut chars = lx.text.chars();
    let first_upper = chars.next().is_some_and(char::is_uppercase);
    let inner_upper = chars.any(char::is_uppercase);
    let entity = (first_upper && !start) || inner_upper;
    let w = if lx.text.is_ascii() {
        let mut w = lx.text;
        w.make_ascii_lowercase();
        w
    } else {
        lower_fold(&lx.text)
    };

    let expand = |words: &[&str], out: &mut Vec<Piece>| {
        for (k, word) in words.iter().enumerate() {
            out.push(Piece::word(*word, start && k == 0));
        }
    };
    if w.contains('\'') {
        if let Some(words) = lexicon::contraction(&w) {
            expand(words, out);
            return;
        }
        let (head, tail) = w.split_once('\'').unwrap_or((&w, ""));
        if tail == "t" && head.ends_with('n') && head.len() > 1 {
            expand(&[&head[..head.len() - 1], "not"], out);
        } else if let Some(clitic) = lexicon::clitic(tail) {
            out.push(Piece {
                entity,
                ..Piece::word(head, start)
            });
            // "what's" is "what is"; "John's" is a possessive, dropped.
            let clitic = match (tail, head) {
                (
                    "s",
                    "what" | "that" | "there" | "it" | "here" | "he" | "she" | "who" | "where"
                    | "how" | "why" | "when" | "which",
                ) => "is",
                _ => clitic,
            };
            if !clitic.is_empty() {
                out.push(Piece::word(clitic, false));
            }
        } else if head.chars().count() <= 2 || head.ends_with("ll") {
            // French and Italian elisions: l'amour, qu'est, dell'Italia.
            out.push(Piece::word(head, start));
            out.push(Piece {
                entity,
                ..Piece::word(tail.replace('\'', ""), false)
            });
        } else {
            out.push(Piece {
                entity,
                ..Piece::word(w.replace('\'', ""), start)
            });
        }
        return;
    }
    if !entity && let Some(words) = lexicon::contraction(&w) {
        expand(words, out);
        return;
    }
    if w.contains('-') {
        let parts: Vec<&str> = w.split('-').filter(|p| !p.is_empty()).collect();
        if parts.iter().all(|p| lexicon::number_word(p).is_some()) {
            expand(&parts, out);
        } else {
            out.push(Piece {
                entity,
                ..Piece::word(parts.concat(), start)
            });
        }
        return;
    }
    out.push(Piece {
        entity,
        ..Piece::word(w, start)
    });
}

// ---------------------------------------------------------------------------------------
// Phrases

#[derive(Clone, Copy)]
enum Act {
    /// Replace the phrase with these markers.
    Mark(&'static [Class]),
    /// Replace the phrase with one word.
    Word(&'static str),
    /// Replace the phrase with an operator.
    Symbol(&'static str),
    /// Drop the phrase (politeness); only at the start of a clause.
    Drop,
}

const HOW: &[Class] = &[Class::Wh(Wh::How)];
const WHY: &[Class] = &[Class::Wh(Wh::Why)];
const WHAT: &[Class] = &[Class::Wh(Wh::What)];
const WHERE: &[Class] = &[Class::Wh(Wh::Where)];
const WHEN: &[Class] = &[Class::Wh(Wh::When)];
const WHO: &[Class] = &[Class::Wh(Wh::Who)];
const CAN: &[Class] = &[Class::Modal(Modal::Can)];
const SHOULD: &[Class] = &[Class::Modal(Modal::Should)];
const MUST: &[Class] = &[Class::Modal(Modal::Must)];
const FUTURE: &[Class] = &[Class::Tense(Tense::Future)];
const NOT: &[Class] = &[Class::Neg(Neg::Not)];
const WITHOUT: &[Class] = &[Class::Neg(Neg::Without)];
const EXCEPT: &[Class] = &[Class::Neg(Neg::Except)];

/// The phrases, tried in order at each word. A pattern is words separated by spaces; `a|b`
/// is either word, a trailing `?` makes a word optional, a leading `^` keeps the phrase to
/// the start of a clause (as every dropped phrase is).
const PHRASES: &[(&str, Act)] = &[
    // Polite openings (dropped at the start of a clause only).
    ("can|could|would|will you|u please|kindly?", Act::Drop),
    ("would you mind", Act::Drop),
    (
        "can|could someone|anyone|anybody|somebody please?",
        Act::Drop,
    ),
    (
        "do|does you|anyone|anybody|someone|somebody know",
        Act::Drop,
    ),
    ("anyone|anybody know", Act::Drop),
    ("i was|am just? wondering|curious", Act::Drop),
    ("just? wondering", Act::Drop),
    ("i wonder", Act::Drop),
    (
        "i would|want|need|wanted|wish like|love? to know|ask",
        Act::Drop,
    ),
    ("i have a question", Act::Drop),
    ("a? quick question", Act::Drop),
    ("tell|show me", Act::Drop),
    ("let me know", Act::Drop),
    ("help me understand", Act::Drop),
    // "Explain how…" asks the question it names ("explain the joke" is a task: content).
    ("explain|describe to? me? how", Act::Mark(HOW)),
    ("explain|describe to? me? why", Act::Mark(WHY)),
    ("explain|describe to? me? what|which", Act::Mark(WHAT)),
    ("explain|describe to? me? where", Act::Mark(WHERE)),
    ("explain|describe to? me? when", Act::Mark(WHEN)),
    ("explain|describe to? me? who", Act::Mark(WHO)),
    // Frames of "how".
    (
        "how do|does|can|could|should|would|might|may i|you|we|one|someone|people|u",
        Act::Mark(HOW),
    ),
    (
        "how i|you|we|one can|could|should|would|might",
        Act::Mark(HOW),
    ),
    ("how to", Act::Mark(HOW)),
    (
        "what is|are the|a|some? best|right|proper|correct|recommended|good|easiest|simplest|easy|simple? way|ways|steps|method|methods to",
        Act::Mark(HOW),
    ),
    (
        "is|are there a|an|any? best|easy|simple|good|better? way|ways to",
        Act::Mark(HOW),
    ),
    (
        "^best|easiest|simplest|right|proper|correct|good? way|ways|steps to",
        Act::Mark(HOW),
    ),
    (
        "what do|should|can|must|would i|we|you|one do to",
        Act::Mark(HOW),
    ),
    (
        "what do|does i|we|you|one need|have to do to",
        Act::Mark(HOW),
    ),
    // Frames of "why".
    ("how come", Act::Mark(WHY)),
    ("what is the reason why|that?", Act::Mark(WHY)),
    ("for what reason", Act::Mark(WHY)),
    ("why is it that", Act::Mark(WHY)),
    // Modality.
    (
        "is|was it|this|that possible|ok|okay|alright|fine|allowed|acceptable to",
        Act::Mark(CAN),
    ),
    // "Am I allowed to": the pronoun stays, a person.
    ("allowed|permitted|able to", Act::Mark(CAN)),
    ("is it necessary to", Act::Mark(MUST)),
    ("is it a good idea to", Act::Mark(SHOULD)),
    ("have|has|had|need|needs|got to", Act::Mark(MUST)),
    ("ought to", Act::Mark(SHOULD)),
    ("going to", Act::Mark(FUTURE)),
    // Negation.
    ("with no|zero", Act::Mark(WITHOUT)),
    ("no one", Act::Mark(NOT)),
    (
        "other than|apart from|aside from|except for",
        Act::Mark(EXCEPT),
    ),
    // Two-word forms.
    ("log|sign in|on|into", Act::Word("login")),
    ("log|sign out|off", Act::Word("logout")),
    ("sign up", Act::Word("signup")),
    ("set up", Act::Word("setup")),
    ("per cent", Act::Word("percent")),
    ("thank|thanks you|u? in advance", Act::Word("thanks")),
    ("thank you|u", Act::Word("thanks")),
    ("to the power of", Act::Symbol("^")),
];

/// A compiled pattern: each item is its alternatives and whether it may be left out.
struct Pattern {
    items: Vec<(Vec<&'static str>, bool)>,
    act: Act,
    /// Only at the start of a clause.
    at_start: bool,
}

/// The patterns, and for each word the patterns that may start with it (in order).
struct Patterns {
    all: Vec<Pattern>,
    by_first: lexicon::WordMap<Vec<usize>>,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: std::sync::OnceLock<Patterns> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        let all: Vec<Pattern> = PHRASES
            .iter()
            .map(|(pattern, act)| Pattern {
                items: pattern
                    .trim_start_matches('^')
                    .split(' ')
                    .map(|item| {
                        let optional = item.ends_with('?');
                        let item = item.trim_end_matches('?');
                        (item.split('|').collect(), optional)
                    })
                    .collect(),
                act: *act,
                at_start: matches!(act, Act::Drop) || pattern.starts_with('^'),
            })
            .collect();
        let mut by_first = lexicon::WordMap::<Vec<usize>>::default();
        for (i, p) in all.iter().enumerate() {
            // The words it may start with: its first item's, and the next item's while the
            // ones before are optional.
            for (alts, optional) in &p.items {
                for w in alts {
                    let list = by_first.entry(*w).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
                if !optional {
                    break;
                }
            }
        }
        Patterns { all, by_first }
    })
}

/// The end of the longest match of `items` at `i` (words only), if any.
fn match_at(items: &[(Vec<&'static str>, bool)], pieces: &[Piece], i: usize) -> Option<usize> {
    let Some(((alts, optional), rest)) = items.split_first() else {
        return Some(i);
    };
    let here = pieces
        .get(i)
        .filter(|p| p.kind == Kind::Word && p.class.is_none() && alts.contains(&p.w.as_str()))
        .and_then(|_| match_at(rest, pieces, i + 1));
    match here {
        Some(end) => Some(end),
        None if *optional => match_at(rest, pieces, i),
        None => None,
    }
}

/// Words after which a polite opening still opens the clause ("Hi, could you…", "OK so
/// can you…").
fn keeps_clause_start(w: &str) -> bool {
    lexicon::polite(w)
        || lexicon::soft(w).is_some_and(lexicon::social)
        || matches!(w, "and" | "but" | "now" | "well")
}

fn phrases(mut pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len());
    let mut at_start = true;
    let mut i = 0;
    while i < pieces.len() {
        let piece = &pieces[i];
        if piece.start {
            at_start = true;
        }
        let found = if piece.kind == Kind::Word {
            let patterns = patterns();
            patterns
                .by_first
                .get(piece.w.as_str())
                .and_then(|candidates| {
                    candidates.iter().find_map(|&k| {
                        let p = &patterns.all[k];
                        if p.at_start && !at_start {
                            return None;
                        }
                        match_at(&p.items, &pieces, i)
                            .filter(|&end| end > i)
                            .map(|end| (end, p.act))
                    })
                })
        } else {
            None
        };
        match found {
            Some((end, act)) => {
                let start = piece.start;
                match act {
                    Act::Drop => {}
                    Act::Mark(classes) => {
                        at_start = false;
                        for (k, class) in classes.iter().enumerate() {
                            let w = pieces[i..end]
                                .iter()
                                .map(|p| p.w.as_str())
                                .collect::<Vec<_>>()
                                .join(" ");
                            out.push(Piece {
                                class: Some(*class),
                                ..Piece::word(w, start && k == 0)
                            });
                        }
                    }
                    Act::Word(w) => {
                        at_start = false;
                        out.push(Piece::word(w, start));
                    }
                    Act::Symbol(s) => {
                        at_start = false;
                        out.push(Piece {
                            kind: Kind::Symbol,
                            ..Piece::word(s, start)
                        });
                    }
                }
                i = end;
            }
            None => {
                if !(piece.kind == Kind::Word && keeps_clause_start(&piece.w)) {
                    at_start = false;
                }
                out.push(std::mem::take(&mut pieces[i]));
                i += 1;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Numbers

/// Words before "one" that make it a pronoun ("which one", "the second one").
fn one_is_pronoun(prev: Option<&Piece>) -> bool {
    prev.is_some_and(|p| {
        p.kind == Kind::Number
            || matches!(
                p.w.as_str(),
                "which"
                    | "this"
                    | "that"
                    | "the"
                    | "each"
                    | "every"
                    | "any"
                    | "no"
                    | "another"
                    | "other"
                    | "a"
                    | "an"
                    | "some"
                    | "last"
                    | "next"
                    | "only"
                    | "same"
                    | "new"
                    | "old"
                    | "right"
                    | "wrong"
                    | "good"
                    | "best"
                    | "little"
                    | "big"
            )
            || matches!(
                lexicon::number_word(&p.w),
                Some((_, lexicon::NumberWord::Ordinal))
            )
    })
}

/// The operator a word names between two numbers.
fn operator_word(w: &str) -> Option<&'static str> {
    Some(match w {
        "plus" => "+",
        "minus" => "-",
        "times" | "x" | "multiplied" => "*",
        "divided" | "over" => "/",
        _ => return None,
    })
}

fn is_numeric_piece(p: Option<&Piece>) -> bool {
    p.is_some_and(|p| {
        p.kind == Kind::Number
            || (p.kind == Kind::Word && p.class.is_none() && lexicon::number_word(&p.w).is_some())
    })
}

/// Formats a quantity: `5`, `0.5`, `5 km`, `2 ord`.
fn quantity(value: f64, unit: Option<&str>) -> String {
    let mut s = if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    };
    if let Some(unit) = unit {
        s.push(' ');
        s.push_str(unit);
    }
    s
}

fn numbers(mut pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    let mut i = 0;
    while i < pieces.len() {
        let p = &pieces[i];
        let mut read: Option<(f64, Option<&'static str>, usize)> = None;
        if p.class.is_none() {
            if p.kind == Kind::Number {
                if let Some((v, u)) = parse_number(&p.w) {
                    read = Some((v, u, i + 1));
                }
            } else if p.kind == Kind::Word {
                read = read_number_words(&pieces, i, out.last());
            }
        }
        let Some((mut value, mut unit, mut end)) = read else {
            // An operator between two numbers.
            let between = out.last().is_some_and(|p| p.class == Some(Class::Number))
                && is_numeric_piece(pieces.get(i + 1));
            let between_by = out.last().is_some_and(|p| p.class == Some(Class::Number))
                && pieces.get(i + 1).is_some_and(|n| n.w == "by")
                && is_numeric_piece(pieces.get(i + 2));
            match (p.kind, operator_word(&p.w)) {
                (Kind::Word, Some(op)) if between || between_by => {
                    out.push(Piece {
                        kind: Kind::Symbol,
                        ..Piece::word(op, p.start)
                    });
                    i += if between_by { 2 } else { 1 };
                }
                _ => {
                    out.push(std::mem::take(&mut pieces[i]));
                    i += 1;
                }
            }
            continue;
        };
        // A scale after digits: "5 million".
        if let Some(next) = pieces.get(end)
            && let Some((scale, lexicon::NumberWord::Scale)) = lexicon::number_word(&next.w)
            && unit.is_none()
        {
            value *= scale;
            end += 1;
        }
        // A unit after the number, unless it is an operator between two numbers.
        if unit.is_none()
            && let Some(next) = pieces.get(end)
            && next.kind == Kind::Word
            && next.class.is_none()
            && !(operator_word(&next.w).is_some() && is_numeric_piece(pieces.get(end + 1)))
            && let Some((u, _)) = lexicon::unit(&next.w)
        {
            unit = Some(u);
            end += 1;
            // "180 degrees Celsius"
            if u == "deg"
                && let Some(scale) = pieces
                    .get(end)
                    .and_then(|n| lexicon::unit(&n.w))
                    .filter(|(t, _)| matches!(*t, "°C" | "°F" | "K"))
            {
                unit = Some(scale.0);
                end += 1;
            }
        }
        out.push(Piece {
            w: quantity(value, unit),
            kind: Kind::Number,
            start: p.start,
            entity: false,
            class: Some(Class::Number),
        });
        i = end;
    }
    out
}

/// Reads number words at `i` ("twenty five", "one hundred and five", "a dozen", "third").
fn read_number_words(
    pieces: &[Piece],
    i: usize,
    prev: Option<&Piece>,
) -> Option<(f64, Option<&'static str>, usize)> {
    use lexicon::NumberWord;
    let word = |j: usize| {
        pieces
            .get(j)
            .filter(|p| p.kind == Kind::Word && p.class.is_none())
            .map(|p| p.w.as_str())
    };
    let mut j = i;
    let (mut total, mut current) = (0.0f64, 0.0f64);
    let mut any = false;
    if word(j) == Some("a")
        && word(j + 1).is_some_and(|w| {
            w == "dozen" || matches!(lexicon::number_word(w), Some((_, NumberWord::Scale)))
        })
    {
        // "a hundred", "a dozen"
        current = 1.0;
        j += 1;
    } else if word(j) == Some("one") && one_is_pronoun(prev) {
        return None;
    }
    while let Some(w) = word(j) {
        match lexicon::number_word(w) {
            Some((v, NumberWord::Unit)) => {
                if w == "dozen" {
                    current = current.max(1.0) * v;
                } else {
                    current += v;
                }
            }
            Some((v, NumberWord::Scale)) => {
                if v >= 1e3 {
                    total += current.max(1.0) * v;
                    current = 0.0;
                } else {
                    current = current.max(1.0) * v;
                }
            }
            Some((v, NumberWord::Ordinal)) => {
                // "second" right after a number is a unit, read by that number.
                return Some((total + current + v, Some("ord"), j + 1));
            }
            None if w == "and"
                && any
                && word(j + 1).is_some_and(|w| lexicon::number_word(w).is_some()) =>
            {
                j += 1;
                continue;
            }
            None => break,
        }
        any = true;
        j += 1;
    }
    any.then_some((total + current, None, j))
}

// ---------------------------------------------------------------------------------------
// Classes

/// Words before a capitalised "May" or a lowercase "may" that make it the month.
fn may_is_month(prev: Option<&Piece>, next: Option<&Piece>, entity: bool) -> bool {
    entity
        || prev.is_some_and(|p| {
            matches!(
                p.w.as_str(),
                "in" | "of"
                    | "early"
                    | "late"
                    | "mid"
                    | "since"
                    | "until"
                    | "by"
                    | "next"
                    | "last"
                    | "this"
            )
        })
        || next.is_some_and(|n| n.kind == Kind::Number)
}

fn classify(pieces: Vec<Piece>, lang: Option<Lang>) -> Vec<Token> {
    let english = lang.is_none_or(|l| l == Lang::En);
    let mut classes = Vec::with_capacity(pieces.len());
    // Whether nothing but politeness and greetings came before in the sentence: a greeting
    // there opens it ("Hi! How do I…"); elsewhere it is what is asked about ("how do I say
    // hello in Korean").
    let mut opening = true;
    for (i, p) in pieces.iter().enumerate() {
        opening |= p.start;
        let none = Cow::Borrowed("");
        let own = || Cow::Owned(p.w.clone());
        let (class, key) = match (p.class, p.kind) {
            (Some(Class::Number), _) | (None, Kind::Number) => (Class::Number, own()),
            (Some(class), _) => (class, none),
            (None, Kind::Ident) => (Class::Content(Flavor::Ident), own()),
            (None, Kind::Glyph) => (Class::Content(Flavor::Glyph), own()),
            (None, Kind::Symbol) => {
                // "-" and "/" alone are punctuation unless between numbers.
                let math =
                    p.w.contains(['=', '<', '>', '+', '*', '^', '&', '|', '~', '%'])
                        || (i > 0
                            && pieces[i - 1].kind == Kind::Number
                            && pieces.get(i + 1).is_some_and(|n| n.kind == Kind::Number));
                if !math {
                    classes.push(None);
                    continue;
                }
                (Class::Content(Flavor::Symbol), own())
            }
            (None, Kind::Word) => {
                let w = p.w.as_str();
                if lexicon::polite(w) {
                    (Class::Polite, none)
                } else if let Some(key) = lexicon::soft(w) {
                    if lexicon::social(key) && !opening {
                        (Class::Content(Flavor::Word), Cow::Borrowed(key))
                    } else {
                        (Class::Soft, Cow::Borrowed(key))
                    }
                } else if let Some(q) = lexicon::wh(w) {
                    (Class::Wh(q), none)
                } else if w == "may"
                    && may_is_month(
                        i.checked_sub(1).map(|k| &pieces[k]),
                        pieces.get(i + 1),
                        p.entity,
                    )
                {
                    (Class::Content(Flavor::Time), Cow::Borrowed("may"))
                } else if let Some(m) = lexicon::modal(w) {
                    (Class::Modal(m), none)
                } else if let Some(t) = lexicon::tense(w) {
                    (Class::Tense(t), none)
                } else if let Some(who) = lexicon::person(w) {
                    (Class::Person(who), none)
                } else if let Some(n) = lexicon::negation(w, lang) {
                    (Class::Neg(n), none)
                } else if let Some(r) = lexicon::relation(w) {
                    (Class::Rel(r), none)
                } else if lexicon::stopword(w, lang) {
                    (Class::Stop, none)
                } else if let Some(t) = lexicon::time_word(w) {
                    (Class::Content(Flavor::Time), Cow::Borrowed(t))
                } else if let Some((u, false)) = lexicon::unit(w) {
                    (Class::Content(Flavor::Unit), Cow::Borrowed(u))
                } else if english {
                    (Class::Content(Flavor::Word), lexicon::content_key(w))
                } else {
                    (Class::Content(Flavor::Word), own())
                }
            }
        };
        opening &=
            matches!(class, Class::Polite) || (class == Class::Soft && lexicon::social(&key));
        classes.push(Some((class, key)));
    }
    // The surfaces are moved rather than copied.
    pieces
        .into_iter()
        .zip(classes)
        .filter_map(|(p, class)| {
            let (class, key) = class?;
            Some(Token {
                class,
                key,
                entity: p.entity && matches!(class, Class::Content(_)),
                surface: p.w,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        analyse(text)
            .tokens
            .iter()
            .map(|t| match t.class {
                Class::Content(_) => t.key().to_owned(),
                Class::Number => format!("#{}", t.key()),
                Class::Stop => "_".to_owned(),
                Class::Polite => "~".to_owned(),
                Class::Soft => t.key().to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn frames_become_one_marker() {
        let how = keys("How do I reset my password?");
        assert_eq!(how, keys("What's the best way to reset my password"));
        assert_eq!(how, keys("how can i reset my password"));
        assert_eq!(how, keys("Is there a way to reset my password?"));
        assert_eq!(
            how,
            keys("Could you please tell me how to reset my password?")
        );
        assert_eq!(how, ["Wh(How)", "reset", "Person(First)", "password"]);
    }

    #[test]
    fn numbers_read_digits_words_and_units() {
        assert_eq!(keys("25% of 80"), keys("twenty-five percent of 80"));
        assert_eq!(keys("1,000 km"), ["#1000 km"]);
        assert_eq!(keys("a dozen eggs"), ["#12", "egg"]);
        assert_eq!(keys("the 3rd step"), keys("the third step"));
        assert_eq!(keys("$45"), keys("45 dollars"));
        assert_eq!(keys("180 degrees Celsius"), ["#180 °C"]);
        assert_eq!(keys("which one"), ["Wh(What)", "_"]);
        assert_eq!(keys("12 times 8"), ["#12", "*", "#8"]);
        assert_eq!(keys("1,2,3"), ["#1", "#2", "#3"]);
    }

    #[test]
    fn lexes_code_urls_and_emails_whole() {
        let a = analyse(
            "See https://example.com/a?x=1, mail bob@example.com about os.path.join and Vec::new",
        );
        let idents: Vec<&str> = a
            .tokens
            .iter()
            .filter(|t| t.class == Class::Content(Flavor::Ident))
            .map(|t| t.key())
            .collect();
        assert_eq!(
            idents,
            [
                "https://example.com/a?x=1",
                "bob@example.com",
                "os.path.join",
                "vec::new"
            ]
        );
    }

    #[test]
    fn contractions_expand() {
        assert_eq!(keys("Why doesn't it work?"), keys("why does not it work"));
        assert_eq!(keys("I can't log in"), keys("I cannot log in"));
        assert_eq!(keys("whats up"), keys("what's up"));
    }

    #[test]
    fn quotes_are_found() {
        assert_eq!(
            quotes("What does \"carpe diem\" mean and `git  rebase`? It's 'fine'."),
            ["carpe diem", "git rebase", "fine"]
        );
        assert!(quotes("It's John's dog").is_empty());
    }

    #[test]
    fn scripts() {
        assert_eq!(dominant_script("How are you?"), Some(Script::Latin));
        assert_eq!(dominant_script("Как дела?"), Some(Script::Cyrillic));
        assert_eq!(dominant_script("東京の人口は？"), Some(Script::Japanese));
        assert_eq!(dominant_script("东京的人口是多少？"), Some(Script::Han));
        assert_eq!(dominant_script("42?"), None);
    }
}
