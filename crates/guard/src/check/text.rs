//! Checks over the text: patterns, counts, case, suffix, words, code blocks, URLs, emptiness.

use std::time::Duration;

use portcullis_core::BuildError;
use serde_json::{Map, Value, json};

use super::params::{Operator, Params};
use super::{Check, Outcome, Run, Transform, excerpt, utf16_len};
use crate::context::HookContext;
use crate::regex::{self, Pattern};

fn invert(verdict: bool, not: bool) -> bool {
    verdict != not
}

/// `default.regexMatch`: passes when `rule` matches (fails with `not`).
#[derive(Debug)]
pub(crate) struct RegexMatch {
    pattern: Pattern,
    not: bool,
}

impl RegexMatch {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        let rule = p.required_str("rule")?;
        let pattern = regex::compile(rule).map_err(|e| BuildError::new(e).in_key("rule"))?;
        Ok(Self {
            pattern,
            not: p.not()?,
        })
    }
}

/// A byte offset of `text` in UTF-16 units (JavaScript's `index`).
fn utf16_index(text: &str, byte: usize) -> usize {
    utf16_len(&text[..byte])
}

impl Check for RegexMatch {
    fn run(&self, cx: &HookContext) -> Run {
        let text = cx.text();
        if text.is_empty() {
            return Run::Done(Outcome::error("Missing text to match"));
        }
        // Finding first is cheap; captures are taken only around a match.
        let caps = match self.pattern.regex.find(text) {
            Ok(None) => Ok(None),
            Ok(Some(m)) => self.pattern.regex.captures_from_pos(text, m.start()),
            Err(e) => Err(e),
        };
        let caps = match caps {
            Ok(caps) => caps,
            Err(e) => return Run::Done(Outcome::error(format!("regex search failed: {e}"))),
        };
        let verdict = invert(caps.is_some(), self.not);
        let details = caps.as_ref().map(|c| {
            let m = c.get(0).expect("group 0 is the match");
            let groups: serde_json::Map<String, Value> = self
                .pattern
                .regex
                .capture_names()
                .enumerate()
                .filter_map(|(i, name)| {
                    let name = name?;
                    Some((
                        name.to_owned(),
                        c.get(i).map_or(Value::Null, |m| m.as_str().into()),
                    ))
                })
                .collect();
            let captures: Vec<Value> = (1..c.len())
                .map(|i| c.get(i).map_or(Value::Null, |m| m.as_str().into()))
                .collect();
            json!({"matchedText": m.as_str(), "index": utf16_index(text, m.start()),
                   "groups": groups, "captures": captures})
        });
        let explanation = match (caps.is_some(), self.not) {
            (true, false) => "The regex pattern matched the text.",
            (false, false) => "The regex pattern did not match the text.",
            (true, true) => "The regex pattern matched the text, but `not` is set.",
            (false, true) => "The regex pattern did not match the text, as `not` asks.",
        };
        Run::Done(Outcome::verdict(
            verdict,
            json!({"regexPattern": self.pattern.source, "not": self.not, "verdict": verdict,
                   "explanation": explanation, "matchDetails": details,
                   "textExcerpt": excerpt(text)}),
        ))
    }

    fn judges_windows(&self) -> bool {
        // A banned pattern found anywhere fails for good; a required one needs the whole text.
        self.not
    }

    fn fails_window(&self, window: &str) -> bool {
        self.not && self.pattern.regex.is_match(window).unwrap_or(false)
    }
}

/// `default.regexReplace`: replaces matches of `rule` in every text part.
#[derive(Debug)]
pub(crate) struct RegexReplace {
    pattern: Pattern,
    redact_text: String,
    fail_on_detection: bool,
}

impl RegexReplace {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        let rule = p.required_str("rule")?;
        let pattern =
            regex::compile_literal(rule).map_err(|e| BuildError::new(e).in_key("rule"))?;
        Ok(Self {
            pattern,
            redact_text: p.str("redactText")?.unwrap_or("[REDACTED]").to_owned(),
            fail_on_detection: p.bool("failOnDetection", false)?,
        })
    }
}

impl Check for RegexReplace {
    fn run(&self, cx: &HookContext) -> Run {
        let mut parts = Vec::new();
        let mut matches = 0;
        for part in cx.parts() {
            match regex::replace(&self.pattern, part, &self.redact_text) {
                Ok((new, n)) => {
                    matches += n;
                    parts.push(new);
                }
                Err(e) => return Run::Done(Outcome::error(format!("regex search failed: {e}"))),
            }
        }
        let verdict = !(self.fail_on_detection && matches > 0);
        let outcome = Outcome::verdict(
            verdict,
            json!({"regexPattern": self.pattern.source, "matches": matches, "verdict": verdict,
                   "explanation": if matches > 0 { "Matches were replaced." } else { "Nothing matched." }}),
        );
        Run::Done(if matches > 0 {
            outcome.with_transform(Transform::Parts(parts))
        } else {
            outcome
        })
    }
}

/// What a count check counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counted {
    Sentences,
    Words,
    Characters,
}

impl Counted {
    /// The data's key for the count.
    fn key(self) -> &'static str {
        match self {
            Counted::Sentences => "sentenceCount",
            Counted::Words => "wordCount",
            Counted::Characters => "characterCount",
        }
    }

    /// What the explanation calls the things counted.
    fn what(self) -> &'static str {
        match self {
            Counted::Sentences => "sentences",
            Counted::Words => "words",
            Counted::Characters => "characters",
        }
    }
}

/// `default.sentenceCount`, `default.wordCount`, `default.characterCount`.
#[derive(Debug)]
pub(crate) struct Count {
    counted: Counted,
    min: f64,
    max: f64,
    not: bool,
    /// The end of the explanation, which only the parameters decide: ` the range 1 to 500.`
    /// (written once, not per answer: a float's formatting is most of the explanation's cost).
    range: String,
    /// The data with what the parameters decide filled in, the rest placeholders: a copy of
    /// a map costs less than building it key by key.
    data: Map<String, Value>,
}

impl Count {
    pub(crate) fn parse(p: &Params<'_>, counted: Counted) -> Result<Self, BuildError> {
        let (min, max) = match counted {
            Counted::Sentences => (
                p.number("minSentences", 0.0)?,
                p.number("maxSentences", 99_999.0)?,
            ),
            Counted::Words => (
                p.integer("minWords", 0)? as f64,
                p.integer("maxWords", 99_999)? as f64,
            ),
            Counted::Characters => (
                p.integer("minCharacters", 0)? as f64,
                p.integer("maxCharacters", 9_999_999)? as f64,
            ),
        };
        let not = p.not()?;
        let data = Map::from_iter([
            (counted.key().to_owned(), Value::from(0)),
            ("min".to_owned(), Value::from(min)),
            ("max".to_owned(), Value::from(max)),
            ("not".to_owned(), Value::Bool(not)),
            ("verdict".to_owned(), Value::Bool(false)),
            ("explanation".to_owned(), Value::String(String::new())),
            ("textExcerpt".to_owned(), Value::String(String::new())),
        ]);
        Ok(Self {
            counted,
            min,
            max,
            not,
            range: format!(
                " the range {min} to {max}{}.",
                if not { " (inverted by `not`)" } else { "" }
            ),
            data,
        })
    }

    /// `The text has {count} {what}, {within|outside} the range {min} to {max}[ (inverted by
    /// `not`)].`
    fn explanation(&self, count: usize, what: &str, within: bool) -> String {
        let place = if within { "within" } else { "outside" };
        let mut out = String::with_capacity(40 + what.len() + self.range.len());
        out.push_str("The text has ");
        push_decimal(&mut out, count);
        out.push(' ');
        out.push_str(what);
        out.push_str(", ");
        out.push_str(place);
        out.push_str(&self.range);
        out
    }
}

/// Writes `n` in decimal, as `{n}` formats it.
fn push_decimal(out: &mut String, n: usize) {
    let mut digits = [0u8; 20];
    out.push_str(portcullis_core::digits::decimal(n as u64, &mut digits));
}

/// The number of words in `text`: what `text.split_whitespace().count()` counts (runs of
/// characters that are not white space), in one pass without an iterator of slices; ASCII
/// text eight bytes at a time.
pub(crate) fn count_words(text: &str) -> usize {
    if text.is_ascii() {
        return count_ascii_words(text.as_bytes());
    }
    let mut words = 0;
    let mut in_word = false;
    for c in text.chars() {
        let word = !c.is_whitespace();
        words += usize::from(word && !in_word);
        in_word = word;
    }
    words
}

/// [`count_words`] of ASCII bytes. White space as `char::is_whitespace` has it in ASCII: tab
/// to carriage return (9 to 13) and space. A word starts at a byte that is not white space
/// after one that is (or at the start). Eight bytes at a time, each byte's answer in its high
/// bit: every byte is below 128, so adding up to 127 to a byte never carries into the next.
fn count_ascii_words(bytes: &[u8]) -> usize {
    const LOW: u64 = u64::from_ne_bytes([0x7f; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const SPACE: u64 = u64::from_ne_bytes([b' '; 8]);
    // High bit set where a byte is at least 9, and where at least 14.
    const FROM_TAB: u64 = u64::from_ne_bytes([0x80 - 9; 8]);
    const PAST_CR: u64 = u64::from_ne_bytes([0x80 - 14; 8]);
    let mut words = 0;
    // The high bit of the byte before the current one, if it was white space (the start of
    // the text counts as white space).
    let mut space_before: u64 = 0x80;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let not_space_char = (x ^ SPACE).wrapping_add(LOW) & HIGH;
        let control = (x.wrapping_add(FROM_TAB) & !x.wrapping_add(PAST_CR)) & HIGH;
        let space = (!not_space_char & HIGH) | control;
        let starts = !space & HIGH & ((space << 8) | space_before);
        words += starts.count_ones() as usize;
        space_before = (space >> 56) & 0x80;
    }
    let mut in_word = space_before == 0;
    for &b in chunks.remainder() {
        let word = !matches!(b, b'\t'..=b'\r' | b' ');
        words += usize::from(word && !in_word);
        in_word = word;
    }
    words
}

impl Check for Count {
    fn run(&self, cx: &HookContext) -> Run {
        let text = cx.text();
        let count = match self.counted {
            // JavaScript's `split(/[.!?]/).length - 1`: the number of terminators.
            Counted::Sentences => text
                .bytes()
                .filter(|b| matches!(b, b'.' | b'!' | b'?'))
                .count(),
            Counted::Words => {
                if text.is_empty() {
                    return Run::Done(Outcome::error("Missing text to count words"));
                }
                count_words(text).max(1)
            }
            Counted::Characters => {
                if text.is_empty() {
                    return Run::Done(Outcome::error("Missing text to count characters"));
                }
                utf16_len(text)
            }
        };
        let within = (count as f64) >= self.min && (count as f64) <= self.max;
        let verdict = invert(within, self.not);
        let mut explanation = self.explanation(count, self.counted.what(), within);
        let mut text_excerpt = excerpt(text);
        let mut data = self.data.clone();
        for (key, value) in &mut data {
            match key.as_str() {
                "verdict" => *value = Value::Bool(verdict),
                "explanation" => *value = Value::String(std::mem::take(&mut explanation)),
                "textExcerpt" => *value = Value::String(std::mem::take(&mut text_excerpt)),
                "min" | "max" | "not" => {}
                _ => *value = Value::from(count),
            }
        }
        Run::Done(Outcome::verdict(verdict, Value::Object(data)))
    }
}

/// `default.alluppercase` and `default.alllowercase`.
#[derive(Debug)]
pub(crate) struct Case {
    upper: bool,
    not: bool,
}

impl Case {
    pub(crate) fn parse(p: &Params<'_>, upper: bool) -> Result<Self, BuildError> {
        Ok(Self {
            upper,
            not: p.not()?,
        })
    }
}

impl Check for Case {
    fn run(&self, cx: &HookContext) -> Run {
        let text = cx.text();
        if text.is_empty() {
            return Run::Done(Outcome::error("Missing text to check"));
        }
        // Only ASCII letters count; a text with none passes.
        let all = if self.upper {
            !text.bytes().any(|b| b.is_ascii_lowercase())
        } else {
            !text.bytes().any(|b| b.is_ascii_uppercase())
        };
        let verdict = invert(all, self.not);
        let case = if self.upper { "uppercase" } else { "lowercase" };
        Run::Done(Outcome::verdict(
            verdict,
            json!({"verdict": verdict, "not": self.not,
                   "explanation": format!("The text is {}all {case}.", if all { "" } else { "not " }),
                   "textExcerpt": excerpt(text)}),
        ))
    }

    fn judges_windows(&self) -> bool {
        !self.not
    }

    fn fails_window(&self, window: &str) -> bool {
        let bytes = window.bytes();
        !self.not
            && if self.upper {
                bytes.into_iter().any(|b| b.is_ascii_lowercase())
            } else {
                bytes.into_iter().any(|b| b.is_ascii_uppercase())
            }
    }
}

/// `default.endsWith`.
#[derive(Debug)]
pub(crate) struct EndsWith {
    suffix: String,
    not: bool,
}

impl EndsWith {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        Ok(Self {
            suffix: p.required_str("suffix")?.to_owned(),
            not: p.not()?,
        })
    }
}

impl Check for EndsWith {
    fn run(&self, cx: &HookContext) -> Run {
        let text = cx.text();
        if text.is_empty() {
            return Run::Done(Outcome::error("Missing text to check"));
        }
        let ends = text.ends_with(&self.suffix)
            || text
                .strip_suffix('.')
                .is_some_and(|t| t.ends_with(&self.suffix));
        let verdict = invert(ends, self.not);
        Run::Done(Outcome::verdict(
            verdict,
            json!({"suffix": self.suffix, "not": self.not, "verdict": verdict,
                   "explanation": format!("The text {} with the suffix.", if ends { "ends" } else { "does not end" }),
                   "textExcerpt": excerpt(text)}),
        ))
    }
}

/// `default.contains`: case-sensitive substrings.
#[derive(Debug)]
pub(crate) struct Contains {
    words: Vec<String>,
    operator: Operator,
}

impl Contains {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        Ok(Self {
            words: p.required_strings("words")?,
            operator: Operator::parse(p, "operator")?,
        })
    }
}

impl Check for Contains {
    fn run(&self, cx: &HookContext) -> Run {
        let text = cx.text();
        let found: Vec<&str> = self
            .words
            .iter()
            .filter(|w| text.contains(w.as_str()))
            .map(String::as_str)
            .collect();
        let missing: Vec<&str> = self
            .words
            .iter()
            .filter(|w| !found.contains(&w.as_str()))
            .map(String::as_str)
            .collect();
        let verdict = self.operator.verdict(found.len(), self.words.len());
        Run::Done(Outcome::verdict(
            verdict,
            json!({"operator": self.operator.as_str(), "foundWords": found, "missingWords": missing,
                   "verdict": verdict, "textExcerpt": excerpt(text)}),
        ))
    }

    fn judges_windows(&self) -> bool {
        self.operator == Operator::None
    }

    fn fails_window(&self, window: &str) -> bool {
        self.operator == Operator::None && self.words.iter().any(|w| window.contains(w.as_str()))
    }
}

/// `default.notNull`.
#[derive(Debug)]
pub(crate) struct NotNull {
    not: bool,
}

impl NotNull {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        Ok(Self { not: p.not()? })
    }
}

impl Check for NotNull {
    fn run(&self, cx: &HookContext) -> Run {
        let present = cx.parts().any(|p| !p.trim().is_empty());
        let verdict = invert(present, self.not);
        Run::Done(Outcome::verdict(
            verdict,
            json!({"verdict": verdict, "not": self.not,
                   "explanation": if present { "The content is not empty." } else { "The content is null or empty." }}),
        ))
    }
}

/// Languages `default.containsCode` knows, and the fence tags that name them.
const LANGUAGES: &[(&str, &[&str])] = &[
    ("SQL", &["sql"]),
    ("Python", &["py", "python"]),
    ("TypeScript", &["ts", "typescript", "tsx"]),
    ("JavaScript", &["js", "javascript", "jsx"]),
    ("Java", &["java"]),
    ("C#", &["cs", "csharp", "c#"]),
    ("C++", &["cpp", "c++", "cxx", "hpp"]),
    ("C", &["c", "h"]),
    ("Ruby", &["rb", "ruby"]),
    ("PHP", &["php"]),
    ("Swift", &["swift"]),
    ("Kotlin", &["kt", "kotlin"]),
    ("Go", &["go", "golang"]),
    ("Rust", &["rs", "rust"]),
    ("Scala", &["scala"]),
    ("R", &["r"]),
    ("Perl", &["pl", "perl"]),
    ("Shell", &["sh", "bash", "shell", "zsh"]),
    ("HTML", &["html", "htm"]),
    ("CSS", &["css"]),
    ("XML", &["xml"]),
    ("JSON", &["json"]),
    ("YAML", &["yml", "yaml"]),
    ("Markdown", &["md", "markdown"]),
    ("Dockerfile", &["dockerfile", "docker"]),
];

/// `default.containsCode`: fenced blocks whose tag names `format`.
#[derive(Debug)]
pub(crate) struct ContainsCode {
    format: &'static str,
    not: bool,
}

impl ContainsCode {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        let format = p.required_str("format")?;
        let Some((name, _)) = LANGUAGES.iter().find(|(name, _)| *name == format) else {
            let names: Vec<&str> = LANGUAGES.iter().map(|(n, _)| *n).collect();
            return Err(BuildError::new(format!(
                "unknown format `{format}`; one of: {}",
                names.join(", ")
            ))
            .in_key("format"));
        };
        Ok(Self {
            format: name,
            not: p.not()?,
        })
    }
}

/// The language tags of the fenced blocks of `text`.
fn fence_tags(text: &str) -> Vec<&str> {
    let mut tags = Vec::new();
    let mut open = false;
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix("```") {
            if open {
                open = false;
            } else {
                open = true;
                let tag = rest.split_whitespace().next().unwrap_or("");
                if !tag.is_empty() {
                    tags.push(tag);
                }
            }
        }
    }
    tags
}

fn language_of(tag: &str) -> Option<&'static str> {
    let tag = tag.to_ascii_lowercase();
    LANGUAGES
        .iter()
        .find(|(_, tags)| tags.contains(&tag.as_str()))
        .map(|(name, _)| *name)
}

impl Check for ContainsCode {
    fn run(&self, cx: &HookContext) -> Run {
        let tags = fence_tags(cx.text());
        if tags.is_empty() {
            return Run::Done(Outcome::verdict(
                self.not,
                json!({"explanation": "No fenced code block with a language tag was found.",
                       "format": self.format, "not": self.not}),
            ));
        }
        let found: Vec<&str> = tags.iter().filter_map(|t| language_of(t)).collect();
        let has = found.contains(&self.format);
        let verdict = invert(has, self.not);
        Run::Done(Outcome::verdict(
            verdict,
            json!({"format": self.format, "foundLanguages": found, "not": self.not, "verdict": verdict}),
        ))
    }
}

/// `default.validUrls`: every URL in the text is well formed and its host resolves.
///
/// Portkey sends a `HEAD` to each URL (or asks 1.1.1.1 over HTTPS with `onlyDNS`): a
/// request to any host a model wrote. Here no URL is ever connected to: a URL is valid when
/// it parses (`http`/`https`, a host) and its host is an IP literal or resolves through the
/// system resolver, within 3 s.
#[derive(Debug)]
pub(crate) struct ValidUrls {
    only_dns: bool,
    not: bool,
}

impl ValidUrls {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        Ok(Self {
            only_dns: p.bool("onlyDNS", false)?,
            not: p.not()?,
        })
    }
}

/// The URLs of `text`: `http(s)://` up to whitespace, a quote, a brace, a bracket or a comma.
pub(crate) fn find_urls(text: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    let mut rest = text;
    let mut base = 0;
    while let Some(i) = rest.find("http") {
        let at = &rest[i..];
        let scheme = if at.starts_with("https://") {
            8
        } else if at.starts_with("http://") {
            7
        } else {
            base += i + 4;
            rest = &text[base..];
            continue;
        };
        let end = at[scheme..]
            .find(|c: char| c.is_whitespace() || "\"'<>{}[](),".contains(c))
            .map_or(at.len(), |e| e + scheme);
        urls.push(&at[..end]);
        base += i + end.max(1);
        rest = &text[base..];
    }
    urls
}

/// The host of a URL if it is well formed.
fn url_host(url: &str) -> Option<(String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok = bare.parse::<std::net::IpAddr>().is_ok()
        || (bare.contains('.') || bare == "localhost")
            && bare.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
    ok.then(|| (bare.to_owned(), port))
}

impl Check for ValidUrls {
    fn run(&self, cx: &HookContext) -> Run {
        let urls: Vec<String> = find_urls(cx.text())
            .into_iter()
            .map(str::to_owned)
            .collect();
        let not = self.not;
        let only_dns = self.only_dns;
        if urls.is_empty() {
            return Run::Done(Outcome::verdict(
                false,
                json!({"validUrls": [], "invalidUrls": [], "explanation": "No URLs found in the text.", "not": not}),
            ));
        }
        let hosts: Vec<Option<(String, u16)>> = urls.iter().map(|u| url_host(u)).collect();
        let conclude = move |valid: Vec<bool>| {
            let (mut good, mut bad) = (Vec::new(), Vec::new());
            for (url, ok) in urls.iter().zip(&valid) {
                if *ok {
                    good.push(url.clone())
                } else {
                    bad.push(url.clone())
                }
            }
            let all = bad.is_empty();
            let verdict = invert(all, not);
            Outcome::verdict(
                verdict,
                json!({"validUrls": good, "invalidUrls": bad, "onlyDNS": only_dns, "not": not,
                       "verdict": verdict}),
            )
        };
        let needs_lookup = hosts
            .iter()
            .flatten()
            .any(|(h, _)| h.parse::<std::net::IpAddr>().is_err());
        if !needs_lookup {
            return Run::Done(conclude(hosts.iter().map(Option::is_some).collect()));
        }
        Run::Pending(Box::pin(async move {
            let mut valid = Vec::with_capacity(hosts.len());
            for host in hosts {
                valid.push(match host {
                    None => false,
                    Some((h, _)) if h.parse::<std::net::IpAddr>().is_ok() => true,
                    Some((h, port)) => {
                        let lookup = tokio::net::lookup_host((h.as_str(), port));
                        match tokio::time::timeout(Duration::from_secs(3), lookup).await {
                            Ok(Ok(mut addrs)) => addrs.next().is_some(),
                            _ => false,
                        }
                    }
                });
            }
            conclude(valid)
        }))
    }

    fn is_async(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// How a count's data was built before: `format!` and `json!`.
    fn old_count_data(c: &Count, text: &str) -> Option<(bool, Value)> {
        let (count, key, what) = match c.counted {
            Counted::Sentences => (
                text.bytes()
                    .filter(|b| matches!(b, b'.' | b'!' | b'?'))
                    .count(),
                "sentenceCount",
                "sentences",
            ),
            Counted::Words if text.is_empty() => return None,
            Counted::Words => (text.split_whitespace().count().max(1), "wordCount", "words"),
            Counted::Characters if text.is_empty() => return None,
            Counted::Characters => (
                text.chars().map(char::len_utf16).sum(),
                "characterCount",
                "characters",
            ),
        };
        let within = (count as f64) >= c.min && (count as f64) <= c.max;
        let verdict = invert(within, c.not);
        let explanation = format!(
            "The text has {count} {what}, {} the range {} to {}{}.",
            if within { "within" } else { "outside" },
            c.min,
            c.max,
            if c.not { " (inverted by `not`)" } else { "" }
        );
        Some((
            verdict,
            json!({key: count, "min": c.min, "max": c.max, "not": c.not,
                   "verdict": verdict, "explanation": explanation, "textExcerpt": old_excerpt(text)}),
        ))
    }

    /// Portkey's `textExcerpt`, as it was written before its fast paths.
    fn old_excerpt(text: &str) -> String {
        let mut units = 0;
        for (i, c) in text.char_indices() {
            units += c.len_utf16();
            if units > 100 {
                return format!("{}...", &text[..i]);
            }
        }
        text.to_owned()
    }

    /// Texts with every kind of white space (ASCII, Unicode, none), characters of every
    /// UTF-8 length, and sentence ends, from empty to past an excerpt's length.
    fn text() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "a", "word", " ", "  ", "\t", "\n", "\r\n", "\u{b}", "\u{c}", "\u{85}", "\u{a0}",
            "\u{1680}", "\u{2003}", "\u{2028}", "\u{3000}", "\u{200b}", "é", "中", "😀", ".", "!",
            "?", "x.y", "\u{0}", "\u{7f}",
        ]);
        prop::collection::vec(pieces, 0..80).prop_map(|p| p.concat())
    }

    fn count_check(counted: Counted, min: f64, max: f64, not: bool) -> Count {
        let params = match counted {
            Counted::Sentences => json!({"minSentences": min, "maxSentences": max, "not": not}),
            Counted::Words => json!({"minWords": min as i64, "maxWords": max as i64, "not": not}),
            Counted::Characters => {
                json!({"minCharacters": min as i64, "maxCharacters": max as i64, "not": not})
            }
        };
        Count::parse(&Params::new(&params).unwrap(), counted).unwrap()
    }

    fn window_context(text: &str) -> HookContext {
        let view = portcullis_core::RequestView::parse(bytes::Bytes::from_static(
            br#"{"model":"m","messages":[]}"#,
        ))
        .unwrap();
        let mut cx = HookContext::window(
            std::sync::Arc::new(view),
            crate::context::RequestType::ChatComplete,
        );
        cx.set_window_text(text);
        cx
    }

    proptest! {
        /// Counts, explanations and data are what `split_whitespace`, `format!` and `json!`
        /// gave: the same verdict, the same JSON to the byte.
        #[test]
        fn counts_write_the_data_they_wrote_before(
            text in text(),
            counted in prop::sample::select(vec![Counted::Sentences, Counted::Words, Counted::Characters]),
            min in prop::sample::select(vec![0.0, 1.0, 2.0, 7.0, 30.0]),
            max in prop::sample::select(vec![0.0, 3.0, 10.0, 500.0, 2000.0, 99_999.0]),
            half in any::<bool>(),
            not in any::<bool>(),
        ) {
            // Sentences take any number, halves included.
            let (min, max) = match (counted, half) {
                (Counted::Sentences, true) => (min + 0.5, max + 0.25),
                _ => (min, max),
            };
            let check = count_check(counted, min, max, not);
            let Run::Done(outcome) = check.run(&window_context(&text)) else {
                panic!("counts answer at once");
            };
            match old_count_data(&check, &text) {
                None => prop_assert!(outcome.error.is_some()),
                Some((verdict, data)) => {
                    prop_assert_eq!(outcome.verdict, verdict);
                    prop_assert_eq!(
                        serde_json::to_string(&outcome.data).unwrap(),
                        serde_json::to_string(&data).unwrap()
                    );
                    prop_assert_eq!(outcome.data, data);
                }
            }
        }

        #[test]
        fn words_are_counted_as_split_whitespace_counts_them(text in text()) {
            prop_assert_eq!(count_words(&text), text.split_whitespace().count());
        }

        /// ASCII text takes a path of its own: every control character around the white space.
        #[test]
        fn ascii_words_are_counted_as_split_whitespace_counts_them(
            pieces in prop::collection::vec(prop::sample::select(vec![
                "a", "word", " ", "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{1c}", "\u{1f}", "\u{8}",
                "\u{0}", "\u{7f}", ".", "\u{e}", "!", "\u{1}",
            ]), 0..120)
        ) {
            let text = pieces.concat();
            prop_assert_eq!(count_words(&text), text.split_whitespace().count());
        }

        #[test]
        fn excerpts_and_lengths_are_what_they_were(text in text()) {
            prop_assert_eq!(excerpt(&text), old_excerpt(&text));
            prop_assert_eq!(utf16_len(&text), text.chars().map(char::len_utf16).sum::<usize>());
        }
    }

    #[test]
    fn count_data_keeps_its_number_formats() {
        let check = count_check(Counted::Words, 1.0, 2000.0, false);
        let Run::Done(outcome) = check.run(&window_context("one two  three\n")) else {
            panic!("counts answer at once");
        };
        assert_eq!(
            serde_json::to_string(&outcome.data).unwrap(),
            r#"{"explanation":"The text has 3 words, within the range 1 to 2000.","max":2000.0,"min":1.0,"not":false,"textExcerpt":"one two  three\n","verdict":true,"wordCount":3}"#
        );
        for (n, text) in [
            (0, "0"),
            (7, "7"),
            (1234567890, "1234567890"),
            (usize::MAX, "18446744073709551615"),
        ] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, text);
        }
    }

    #[test]
    fn urls_stop_at_delimiters() {
        let urls = find_urls("see https://a.com/x?y=1, and (http://b.org) \"https://c.io/\" httpx");
        assert_eq!(
            urls,
            ["https://a.com/x?y=1", "http://b.org", "https://c.io/"]
        );
        assert!(url_host("https://a.com/x").is_some());
        assert!(url_host("http://[::1]:8080/").is_some());
        assert!(url_host("https://no_underscores.com").is_none());
        assert!(url_host("https://").is_none());
    }

    #[test]
    fn fences_name_languages() {
        let text = "Here:\n```py\nprint(1)\n```\nand\n```\nplain\n```\n```RS\nfn x(){}\n```";
        assert_eq!(fence_tags(text), ["py", "RS"]);
        assert_eq!(language_of("RS"), Some("Rust"));
        assert_eq!(language_of("yml"), Some("YAML"));
    }
}
