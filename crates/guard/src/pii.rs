//! `portcullis.pii`: personal data and secrets found in one pass, without regexes.
//!
//! Kinds: `email`, `phone`, `credit_card` (13 to 19 digits, Luhn), `iban` (mod-97), `ssn`
//! (US, `ddd-dd-dddd` with valid area, group and serial), `ip_address` (IPv4 and IPv6),
//! `api_key` (`sk-…`, `sk_live_…`, `AKIA…`/`ASIA…`, `ghp_…` and the other GitHub prefixes,
//! `github_pat_…`, `xox[abeprs]-…`, `AIza…`) and `private_key` (`-----BEGIN … PRIVATE
//! KEY-----` blocks). The scanner walks the text once; every look-ahead is bounded, so the
//! cost is linear in the text whatever it holds.
//!
//! ```
//! use portcullis_guard::pii::{PiiKind, PiiScanner};
//!
//! let scanner = PiiScanner::all();
//! let text = "Mail ann@corp.com or bob@corp.com, card 4111 1111 1111 1111, again ann@corp.com.";
//! let (redacted, found) = scanner.redact(text);
//! assert_eq!(redacted, "Mail [EMAIL_1] or [EMAIL_2], card [CREDIT_CARD_1], again [EMAIL_1].");
//! assert_eq!(found, 4);
//! assert_eq!(scanner.first(text).unwrap().kind, PiiKind::Email);
//! ```

use std::fmt;
use std::net::Ipv6Addr;

use portcullis_core::BuildError;
use serde_json::{Map, Value, json};

use crate::check::params::Params;
use crate::check::{Check, Outcome, Run, Transform};
use crate::context::HookContext;

/// A kind of personal data or secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    /// An email address.
    Email,
    /// A phone number: `+` and 8 to 15 digits, or 10 or 11 digits in three or more groups
    /// ending in four (`(555) 123-4567`, `020 7946 0958`).
    Phone,
    /// A payment card number that passes the Luhn check.
    CreditCard,
    /// An IBAN that passes the mod-97 check (compact or in groups of four).
    Iban,
    /// A US social security number, `ddd-dd-dddd`.
    Ssn,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// An API key of a known shape.
    ApiKey,
    /// A PEM private key block.
    PrivateKey,
}

impl PiiKind {
    /// Every kind.
    pub const ALL: [PiiKind; 8] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CreditCard,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::IpAddress,
        PiiKind::ApiKey,
        PiiKind::PrivateKey,
    ];

    /// The name in parameters: `email`, `phone`, `credit_card`, `iban`, `ssn`,
    /// `ip_address`, `api_key`, `private_key`.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Iban => "iban",
            PiiKind::Ssn => "ssn",
            PiiKind::IpAddress => "ip_address",
            PiiKind::ApiKey => "api_key",
            PiiKind::PrivateKey => "private_key",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The stem of its placeholders: `EMAIL` gives `[EMAIL_1]`.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::CreditCard => "CREDIT_CARD",
            PiiKind::Iban => "IBAN",
            PiiKind::Ssn => "SSN",
            PiiKind::IpAddress => "IP_ADDRESS",
            PiiKind::ApiKey => "API_KEY",
            PiiKind::PrivateKey => "PRIVATE_KEY",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One finding: its kind and byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PiiSpan {
    /// What was found.
    pub kind: PiiKind,
    /// Its first byte.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
}

/// Finds the kinds it was given (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PiiScanner {
    kinds: u16,
}

impl Default for PiiScanner {
    fn default() -> Self {
        Self::all()
    }
}

/// Bytes that can be part of a token (a word, an address, a key).
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'@' | b':' | b'/');
        i += 1;
    }
    t
};

fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

fn is_num_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

impl PiiScanner {
    /// A scanner for every kind.
    pub fn all() -> Self {
        Self::new(PiiKind::ALL)
    }

    /// A scanner for `kinds`.
    pub fn new(kinds: impl IntoIterator<Item = PiiKind>) -> Self {
        Self {
            kinds: kinds.into_iter().fold(0, |acc, k| acc | k.bit()),
        }
    }

    fn wants(&self, kind: PiiKind) -> bool {
        self.kinds & kind.bit() != 0
    }

    /// Calls `f` with each finding, in order; findings never overlap.
    pub fn scan(&self, text: &str, mut f: impl FnMut(PiiSpan)) {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let boundary = i == 0 || !is_token_byte(b[i - 1]);
            if !boundary || !(is_token_byte(c) || c == b'(') {
                i += 1;
                continue;
            }
            if c == b'-'
                && b[i..].starts_with(b"-----BEGIN ")
                && let Some(end) = private_key(b, i)
            {
                if self.wants(PiiKind::PrivateKey) {
                    f(PiiSpan {
                        kind: PiiKind::PrivateKey,
                        start: i,
                        end,
                    });
                }
                i = end;
                continue;
            }
            if (c.is_ascii_digit() || c == b'+' || c == b'(')
                && let Some(span) = self.number(b, i)
            {
                f(span);
                i = span.end;
                continue;
            }
            let mut k = i;
            let mut at = false;
            let mut colons = 0u8;
            while k < b.len() && is_token_byte(b[k]) {
                at |= b[k] == b'@';
                colons = colons.saturating_add(u8::from(b[k] == b':'));
                k += 1;
            }
            if k == i {
                i += 1;
                continue;
            }
            // Most words start lowercase and hold no `@` or `:`: nothing to look at.
            let maybe = at || colons >= 2 || matches!(c, b's' | b'r' | b'g' | b'x' | b'A'..=b'Z');
            if !maybe {
                i = k;
                continue;
            }
            match self.token(b, i, k, at, colons) {
                Some(span) => {
                    f(span);
                    i = span.end;
                }
                None => i = k,
            }
        }
    }

    /// The first finding, if any.
    pub fn first(&self, text: &str) -> Option<PiiSpan> {
        let mut first = None;
        // Findings come in order: the first one is kept, the rest are ignored.
        self.scan(text, |s| {
            first.get_or_insert(s);
        });
        first
    }

    /// `text` with each finding replaced by a typed placeholder (`[EMAIL_1]`; the same value
    /// keeps its number), and how many findings there were.
    pub fn redact(&self, text: &str) -> (String, usize) {
        self.redact_counting(text, |_| {})
    }

    fn redact_counting(&self, text: &str, mut each: impl FnMut(PiiKind)) -> (String, usize) {
        let mut out = String::with_capacity(text.len());
        let mut seen: Vec<(PiiKind, &str, usize)> = Vec::new();
        let mut last = 0;
        let mut found = 0;
        self.scan(text, |s| {
            found += 1;
            each(s.kind);
            let value = &text[s.start..s.end];
            let n = match seen.iter().find(|(k, v, _)| *k == s.kind && *v == value) {
                Some((_, _, n)) => *n,
                None => {
                    let n = seen.iter().filter(|(k, _, _)| *k == s.kind).count() + 1;
                    seen.push((s.kind, value, n));
                    n
                }
            };
            out.push_str(&text[last..s.start]);
            out.push('[');
            out.push_str(s.kind.placeholder());
            out.push('_');
            out.push_str(&n.to_string());
            out.push(']');
            last = s.end;
        });
        out.push_str(&text[last..]);
        (out, found)
    }

    /// A number that spans separators: a card, an SSN, a phone, or an IPv4 address.
    fn number(&self, b: &[u8], start: usize) -> Option<PiiSpan> {
        let mut j = start;
        let plus = b[j] == b'+';
        if plus {
            j += 1;
        }
        let mut digits = 0;
        let mut groups = [(0usize, 0usize); 8];
        let mut n_groups = 0;
        let mut run_start = None;
        let mut seps_in_row = 0;
        while j < b.len() {
            let c = b[j];
            if c.is_ascii_digit() {
                digits += 1;
                if digits > 19 {
                    return None;
                }
                run_start.get_or_insert(j);
                seps_in_row = 0;
            } else if is_num_sep(c) && seps_in_row < 2 {
                if let Some(s) = run_start.take() {
                    if n_groups == groups.len() {
                        return None;
                    }
                    groups[n_groups] = (s, j);
                    n_groups += 1;
                }
                seps_in_row += 1;
            } else {
                break;
            }
            j += 1;
        }
        if let Some(s) = run_start.take() {
            if n_groups == groups.len() {
                return None;
            }
            groups[n_groups] = (s, j);
            n_groups += 1;
        }
        let groups = &groups[..n_groups];
        let end = groups.last()?.1;
        // A number glued to letters is part of a word.
        if end < b.len() && (b[end].is_ascii_alphabetic() || b[end] == b'_' || b[end] == b'@') {
            return None;
        }
        let text = &b[start..end];
        let sep_only = |allowed: &[u8]| {
            text.iter()
                .all(|c| c.is_ascii_digit() || allowed.contains(c))
        };
        let mut lens_buf = [0usize; 8];
        for (l, (s, e)) in lens_buf.iter_mut().zip(groups) {
            *l = e - s;
        }
        let lens = &lens_buf[..groups.len()];
        let span = |kind| Some(PiiSpan { kind, start, end });

        if !plus && groups.len() == 4 && sep_only(b".") && lens.iter().all(|l| (1..=3).contains(l))
        {
            let ip = groups.iter().all(|&(s, e)| {
                std::str::from_utf8(&b[s..e])
                    .ok()
                    .and_then(|x| x.parse::<u8>().ok())
                    .is_some()
            });
            if ip {
                return if self.wants(PiiKind::IpAddress) {
                    span(PiiKind::IpAddress)
                } else {
                    None
                };
            }
        }
        if !plus
            && lens == [3, 2, 4]
            && sep_only(b"-")
            && valid_ssn(b, groups)
            && self.wants(PiiKind::Ssn)
        {
            return span(PiiKind::Ssn);
        }
        // Cards are written whole, in fours (the last group of 3 or 4), or 4-6-5 / 4-6-4.
        let card_groups = lens.len() == 1
            || lens[0] == 4
                && (lens[1..lens.len() - 1].iter().all(|l| *l == 4)
                    && (3..=4).contains(&lens[lens.len() - 1])
                    || lens == [4, 6, 5]
                    || lens == [4, 6, 4]);
        if !plus
            && (13..=19).contains(&digits)
            && text[0].is_ascii_digit()
            && (sep_only(b" ") || sep_only(b"-"))
            && card_groups
            && luhn(text)
            && self.wants(PiiKind::CreditCard)
        {
            return span(PiiKind::CreditCard);
        }
        if self.wants(PiiKind::Phone) {
            let phone = if plus {
                (8..=15).contains(&digits)
            } else {
                (10..=11).contains(&digits)
                    && groups.len() >= 3
                    && lens.iter().all(|l| (1..=4).contains(l))
                    && lens.last() == Some(&4)
            };
            if phone {
                return span(PiiKind::Phone);
            }
        }
        None
    }

    /// A token without spaces: an email, an API key, an IP address or an IBAN.
    fn token(
        &self,
        b: &[u8],
        start: usize,
        end: usize,
        has_at: bool,
        colons: u8,
    ) -> Option<PiiSpan> {
        let tok = &b[start..end];
        if let Some(at) = has_at
            .then(|| tok.iter().position(|&c| c == b'@'))
            .flatten()
            && let Some((s, e)) = email(tok, at)
        {
            return self.wants(PiiKind::Email).then_some(PiiSpan {
                kind: PiiKind::Email,
                start: start + s,
                end: start + e,
            });
        }
        if let Some(len) = api_key(tok) {
            return self.wants(PiiKind::ApiKey).then_some(PiiSpan {
                kind: PiiKind::ApiKey,
                start,
                end: start + len,
            });
        }
        if colons >= 2
            && let Some(len) = ipv6(tok)
        {
            return self.wants(PiiKind::IpAddress).then_some(PiiSpan {
                kind: PiiKind::IpAddress,
                start,
                end: start + len,
            });
        }
        if tok.len() >= 4
            && tok[..2].iter().all(u8::is_ascii_uppercase)
            && tok[2..4].iter().all(u8::is_ascii_digit)
            && let Some(e) = iban(b, start)
        {
            return self.wants(PiiKind::Iban).then_some(PiiSpan {
                kind: PiiKind::Iban,
                start,
                end: e,
            });
        }
        None
    }
}

fn valid_ssn(b: &[u8], groups: &[(usize, usize)]) -> bool {
    let n = |(s, e): (usize, usize)| {
        std::str::from_utf8(&b[s..e])
            .ok()
            .and_then(|x| x.parse::<u32>().ok())
    };
    match (n(groups[0]), n(groups[1]), n(groups[2])) {
        (Some(area), Some(group), Some(serial)) => {
            area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
        }
        _ => false,
    }
}

fn luhn(text: &[u8]) -> bool {
    let mut sum = 0;
    let mut double = false;
    for &c in text.iter().rev().filter(|c| c.is_ascii_digit()) {
        let mut d = u32::from(c - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum % 10 == 0
}

/// The email around the `@` at `at` in `tok`, as a range of `tok`.
fn email(tok: &[u8], at: usize) -> Option<(usize, usize)> {
    let local_ok =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut s = at;
    while s > 0 && local_ok(tok[s - 1]) && at - s < 64 {
        s -= 1;
    }
    while s < at && tok[s] == b'.' {
        s += 1;
    }
    if s == at {
        return None;
    }
    let mut e = at + 1;
    while e < tok.len()
        && (tok[e].is_ascii_alphanumeric() || matches!(tok[e], b'.' | b'-'))
        && e - at < 255
    {
        e += 1;
    }
    while e > at + 1 && matches!(tok[e - 1], b'.' | b'-') {
        e -= 1;
    }
    let domain = &tok[at + 1..e];
    let dot = domain.iter().rposition(|&c| c == b'.')?;
    let tld = &domain[dot + 1..];
    (dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some((s, e))
}

/// The length of an API key at the start of `tok`.
fn api_key(tok: &[u8]) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum Shape {
        /// Letters, digits, `_` and `-`.
        Word,
        /// Exactly 16 uppercase letters or digits.
        Aws,
        /// Letters and digits.
        Alnum,
    }
    // Slice patterns compare bytes in place: most words fail at the first or second byte.
    let (prefix, min, shape) = match tok {
        [b's' | b'r', b'k', b'_', b'l', b'i', b'v', b'e', b'_', ..] => (8, 16, Shape::Word),
        [b's', b'k', b'_', b't', b'e', b's', b't', b'_', ..] => (8, 16, Shape::Word),
        [b's', b'k', b'-', ..] => (3, 20, Shape::Word),
        [b'A', b'K' | b'S', b'I', b'A', ..] => (4, 16, Shape::Aws),
        [b'g', b'h', b'p' | b'o' | b'u' | b's' | b'r', b'_', ..] => (4, 36, Shape::Alnum),
        [
            b'g',
            b'i',
            b't',
            b'h',
            b'u',
            b'b',
            b'_',
            b'p',
            b'a',
            b't',
            b'_',
            ..,
        ] => (11, 22, Shape::Word),
        [
            b'x',
            b'o',
            b'x',
            b'a' | b'b' | b'e' | b'p' | b'r' | b's',
            b'-',
            ..,
        ] => (5, 10, Shape::Word),
        [b'A', b'I', b'z', b'a', ..] => (4, 35, Shape::Word),
        _ => return None,
    };
    let ok = |c: u8| match shape {
        Shape::Word => c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
        Shape::Aws => c.is_ascii_uppercase() || c.is_ascii_digit(),
        Shape::Alnum => c.is_ascii_alphanumeric(),
    };
    let n = tok[prefix..].iter().take_while(|&&c| ok(c)).count();
    let whole = match shape {
        Shape::Aws => {
            n == 16
                && tok
                    .get(prefix + n)
                    .is_none_or(|c| !c.is_ascii_alphanumeric())
        }
        _ => true,
    };
    (n >= min && whole).then_some(prefix + n)
}

/// The length of an IPv6 address at the start of `tok` (brackets, a zone or a prefix
/// length after it are left out).
fn ipv6(tok: &[u8]) -> Option<usize> {
    let (skip, body) = match tok.first() {
        Some(b'[') => (1, &tok[1..]),
        _ => (0, tok),
    };
    let n = body
        .iter()
        .take_while(|c| c.is_ascii_hexdigit() || **c == b':' || **c == b'.')
        .count();
    let mut n = n;
    while n > 0 {
        let cand = std::str::from_utf8(&body[..n]).ok()?;
        if cand.len() >= 3
            && cand.bytes().any(|c| c.is_ascii_hexdigit())
            && cand.parse::<Ipv6Addr>().is_ok()
        {
            return Some(skip + n + usize::from(skip == 1 && body.get(n) == Some(&b']')));
        }
        // A trailing `:` or `.` is punctuation, not part of the address.
        if matches!(body[n - 1], b':' | b'.') {
            n -= 1;
        } else {
            return None;
        }
    }
    None
}

/// The end of an IBAN starting at `start`: compact, or in space-separated groups.
fn iban(b: &[u8], start: usize) -> Option<usize> {
    let upper_alnum = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    // Candidate ends: after each group.
    let mut ends = Vec::new();
    let mut j = start;
    let mut chars = 0;
    loop {
        let g = b[j..].iter().take_while(|&&c| upper_alnum(c)).count();
        if g == 0 {
            break;
        }
        j += g;
        chars += g;
        ends.push((j, chars));
        if chars > 34 || g > 34 {
            break;
        }
        if j + 1 < b.len() && b[j] == b' ' && upper_alnum(b[j + 1]) && g == 4 {
            j += 1;
        } else {
            break;
        }
    }
    if j < b.len() && b[j].is_ascii_alphanumeric() {
        return None;
    }
    for &(end, n) in ends.iter().rev() {
        if (15..=34).contains(&n) && mod97(&b[start..end]) {
            return Some(end);
        }
    }
    None
}

fn mod97(raw: &[u8]) -> bool {
    let chars: Vec<u8> = raw.iter().copied().filter(|c| *c != b' ').collect();
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// The end of a private key block starting at `start` (to the end of the text when it has
/// not ended yet).
fn private_key(b: &[u8], start: usize) -> Option<usize> {
    let head = &b[start + 11..b.len().min(start + 11 + 40)];
    let label = head.windows(16).position(|w| w == b"PRIVATE KEY-----")?;
    let after = start + 11 + label + 16;
    let limit = b.len().min(after + 16 * 1024);
    let Some(end_at) = b[after..limit].windows(8).position(|w| w == b"-----END") else {
        // Not ended (yet, in a stream window): everything after the header is the key.
        return Some(b.len());
    };
    let tail = after + end_at;
    let close = b[tail + 8..b.len().min(tail + 8 + 40)]
        .windows(5)
        .position(|w| w == b"-----")
        .map_or(b.len(), |p| tail + 8 + p + 5);
    Some(close)
}

/// The `portcullis.pii` check.
#[derive(Debug)]
pub(crate) struct PiiCheck {
    scanner: PiiScanner,
    redact: bool,
    fail_on_detection: bool,
}

impl PiiCheck {
    pub(crate) fn parse(p: &Params<'_>, force_redact: bool) -> Result<Self, BuildError> {
        let scanner = match p.strings("kinds", true)? {
            None => PiiScanner::all(),
            Some(names) => {
                let mut kinds = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    let kind = PiiKind::from_name(n).ok_or_else(|| {
                        let all: Vec<&str> = PiiKind::ALL.iter().map(|k| k.name()).collect();
                        BuildError::new(format!("unknown kind `{n}`; one of: {}", all.join(", ")))
                            .in_index(i)
                            .in_key("kinds")
                    })?;
                    kinds.push(kind);
                }
                PiiScanner::new(kinds)
            }
        };
        Ok(Self {
            scanner,
            redact: force_redact || p.bool("redact", false)?,
            fail_on_detection: p.bool("failOnDetection", false)?,
        })
    }
}

fn counts(scanner: &PiiScanner, text: &str) -> Map<String, Value> {
    let mut counts = Map::new();
    scanner.scan(text, |s| {
        let n = counts.entry(s.kind.name()).or_insert(Value::from(0u64));
        *n = Value::from(n.as_u64().unwrap_or(0) + 1);
    });
    counts
}

impl Check for PiiCheck {
    fn run(&self, cx: &HookContext) -> Run {
        if !self.redact {
            let detected = counts(&self.scanner, cx.text());
            let clean = detected.is_empty();
            return Run::Done(Outcome::verdict(
                clean,
                json!({"verdict": clean, "detected": detected,
                       "explanation": if clean { "No PII found." } else { "PII found." }}),
            ));
        }
        let mut parts = Vec::new();
        let mut total = 0;
        let mut detected = Map::new();
        for part in cx.parts() {
            let (new, n) = self.scanner.redact_counting(part, |kind| {
                let n = detected.entry(kind.name()).or_insert(Value::from(0u64));
                *n = Value::from(n.as_u64().unwrap_or(0) + 1);
            });
            total += n;
            parts.push(new);
        }
        let verdict = !(self.fail_on_detection && total > 0);
        let outcome = Outcome::verdict(
            verdict,
            json!({"verdict": verdict, "detected": detected, "redacted": total,
                   "explanation": if total > 0 { "PII was redacted." } else { "No PII found." }}),
        );
        Run::Done(if total > 0 {
            outcome.with_transform(Transform::Parts(parts))
        } else {
            outcome
        })
    }

    fn judges_windows(&self) -> bool {
        !self.redact
    }

    fn fails_window(&self, window: &str) -> bool {
        !self.redact && self.scanner.first(window).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        let mut out = Vec::new();
        PiiScanner::all().scan(text, |s| out.push((s.kind, &text[s.start..s.end])));
        out
    }

    #[test]
    fn finds_each_kind() {
        let cases: &[(&str, PiiKind, &str)] = &[
            (
                "write to <jane.doe+x@mail.example.co.uk>.",
                PiiKind::Email,
                "jane.doe+x@mail.example.co.uk",
            ),
            (
                "call +1 415 555 2671 now",
                PiiKind::Phone,
                "+1 415 555 2671",
            ),
            ("call (555) 123-4567.", PiiKind::Phone, "(555) 123-4567"),
            ("UK 020 7946 0958", PiiKind::Phone, "020 7946 0958"),
            (
                "card 4111-1111-1111-1111 ok",
                PiiKind::CreditCard,
                "4111-1111-1111-1111",
            ),
            (
                "amex 378282246310005",
                PiiKind::CreditCard,
                "378282246310005",
            ),
            (
                "iban DE89 3704 0044 0532 0130 00 thanks",
                PiiKind::Iban,
                "DE89 3704 0044 0532 0130 00",
            ),
            (
                "iban GB82WEST12345698765432",
                PiiKind::Iban,
                "GB82WEST12345698765432",
            ),
            ("ssn 123-45-6789", PiiKind::Ssn, "123-45-6789"),
            ("from 192.168.10.1:8080", PiiKind::IpAddress, "192.168.10.1"),
            (
                "v6 2001:db8::8a2e:370:7334.",
                PiiKind::IpAddress,
                "2001:db8::8a2e:370:7334",
            ),
            (
                "key sk-proj-abcdefghijklmnopqrstuvwx",
                PiiKind::ApiKey,
                "sk-proj-abcdefghijklmnopqrstuvwx",
            ),
            (
                "aws AKIAIOSFODNN7EXAMPLE",
                PiiKind::ApiKey,
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                "gh ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
                PiiKind::ApiKey,
                "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            ),
            (
                "slack xoxb-1234567890-abc",
                PiiKind::ApiKey,
                "xoxb-1234567890-abc",
            ),
        ];
        for (text, kind, found) in cases {
            assert_eq!(kinds(text), [(*kind, *found)], "{text}");
        }
    }

    #[test]
    fn private_key_blocks_are_one_finding() {
        let text =
            "x -----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY----- y";
        let found = kinds(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, PiiKind::PrivateKey);
        assert!(found[0].1.ends_with("KEY-----"));
    }

    #[test]
    fn lookalikes_are_left_alone() {
        for text in [
            "order 4111111111111112 (bad Luhn)",
            "on 2024-01-15 10:30:00 at 12:30:45",
            "version 1.2.3.4.5 and 999.1.1.1",
            "ssn 000-12-3456 and 666-12-3456",
            "DE89 3704 0044 0532 0130 01",
            "sk-short and AKIASHORT",
            "word@nodot and @handle",
            "phone 5551234567",
        ] {
            assert_eq!(kinds(text), [], "{text}");
        }
    }

    #[test]
    fn kinds_can_be_chosen() {
        let s = PiiScanner::new([PiiKind::Email]);
        assert!(s.first("123-45-6789").is_none());
        assert!(s.first("a@b.io").is_some());
    }
}
