//! Patterns as Portkey writes them (JavaScript `RegExp` syntax), compiled once with bounds.
//!
//! `fancy-regex` handles lookaround and backreferences; patterns without them run on the
//! linear-time `regex` engine underneath. Bounds: a pattern of at most [`MAX_PATTERN_LEN`]
//! bytes, a compiled size of at most 1 MiB, and at most [`BACKTRACK_LIMIT`] backtracking steps
//! per search (a search past it is a check error, never a stuck thread).

use fancy_regex::{Captures, Regex, RegexBuilder};

/// The longest pattern accepted.
pub(crate) const MAX_PATTERN_LEN: usize = 4096;
/// Backtracking steps one search may take.
pub(crate) const BACKTRACK_LIMIT: usize = 100_000;

/// A compiled pattern and whether it replaces every match (`g`).
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    pub(crate) regex: Regex,
    pub(crate) global: bool,
    pub(crate) source: String,
}

/// Compiles `pattern` as a flagless JavaScript pattern.
pub(crate) fn compile(pattern: &str) -> Result<Pattern, String> {
    build(pattern, "", false)
}

/// Compiles `rule` written as `/pattern/flags` (flags from `gimsuyd`), or as a bare pattern.
pub(crate) fn compile_literal(rule: &str) -> Result<Pattern, String> {
    if let Some(rest) = rule.strip_prefix('/')
        && let Some(end) = rest.rfind('/')
    {
        let (pattern, flags) = (&rest[..end], &rest[end + 1..]);
        if flags.chars().all(|c| "gimsuyd".contains(c)) {
            return build(pattern, flags, true);
        }
    }
    build(rule, "", false)
}

fn build(pattern: &str, flags: &str, literal: bool) -> Result<Pattern, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern is longer than {MAX_PATTERN_LEN} bytes"));
    }
    if flags.contains('y') {
        return Err("the sticky flag `y` is not supported".into());
    }
    let mut builder = RegexBuilder::new(pattern);
    builder
        .case_insensitive(flags.contains('i'))
        .multi_line(flags.contains('m'))
        .dot_matches_new_line(flags.contains('s'))
        .backtrack_limit(BACKTRACK_LIMIT)
        .delegate_size_limit(1 << 20)
        .delegate_dfa_size_limit(2 << 20);
    let regex = builder
        .build()
        .map_err(|e| format!("invalid pattern: {e}"))?;
    Ok(Pattern {
        regex,
        global: flags.contains('g'),
        source: if literal {
            format!("/{pattern}/{flags}")
        } else {
            pattern.to_owned()
        },
    })
}

/// Expands a JavaScript replacement string for one match: `$$`, `$&`, `` $` ``, `$'`,
/// `$1`…`$99` and `$<name>`; anything else is literal.
pub(crate) fn expand(replacement: &str, caps: &Captures<'_>, text: &str, out: &mut String) {
    let whole = caps.get(0).expect("group 0 is the match");
    let bytes = replacement.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some(off) = replacement[i..].find('$') else {
            out.push_str(&replacement[i..]);
            break;
        };
        out.push_str(&replacement[i..i + off]);
        i += off;
        let next = bytes.get(i + 1).copied();
        match next {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'&') => {
                out.push_str(whole.as_str());
                i += 2;
            }
            Some(b'`') => {
                out.push_str(&text[..whole.start()]);
                i += 2;
            }
            Some(b'\'') => {
                out.push_str(&text[whole.end()..]);
                i += 2;
            }
            Some(b'<') => match replacement[i + 2..].find('>') {
                Some(end) => {
                    let name = &replacement[i + 2..i + 2 + end];
                    if let Some(m) = caps.name(name) {
                        out.push_str(m.as_str());
                    }
                    i += 3 + end;
                }
                None => {
                    out.push('$');
                    i += 1;
                }
            },
            Some(d) if d.is_ascii_digit() => {
                let one = usize::from(d - b'0');
                let two = bytes
                    .get(i + 2)
                    .filter(|b| b.is_ascii_digit())
                    .map(|b| one * 10 + usize::from(b - b'0'));
                let groups = caps.len();
                match two {
                    Some(n) if n > 0 && n < groups => {
                        out.push_str(caps.get(n).map_or("", |m| m.as_str()));
                        i += 3;
                    }
                    _ if one > 0 && one < groups => {
                        out.push_str(caps.get(one).map_or("", |m| m.as_str()));
                        i += 2;
                    }
                    _ => {
                        out.push('$');
                        i += 1;
                    }
                }
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
}

/// JavaScript's `text.replace(regex, replacement)`: the first match, or every match with
/// `g`. Returns the new text and how many matches were replaced.
pub(crate) fn replace(
    pattern: &Pattern,
    text: &str,
    replacement: &str,
) -> Result<(String, usize), Box<fancy_regex::Error>> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut count = 0;
    let mut at = 0;
    if !replacement.contains('$') {
        // No group to expand: finding is enough (captures cost far more).
        while at <= text.len() {
            let Some(m) = pattern.regex.find_from_pos(text, at).map_err(Box::new)? else {
                break;
            };
            out.push_str(&text[last..m.start()]);
            out.push_str(replacement);
            last = m.end();
            count += 1;
            if !pattern.global {
                break;
            }
            at = next_from(text, m.start(), m.end());
            if at > text.len() {
                break;
            }
        }
        out.push_str(&text[last..]);
        return Ok((out, count));
    }
    while at <= text.len() {
        let Some(caps) = pattern
            .regex
            .captures_from_pos(text, at)
            .map_err(Box::new)?
        else {
            break;
        };
        let m = caps.get(0).expect("group 0 is the match");
        out.push_str(&text[last..m.start()]);
        expand(replacement, &caps, text, &mut out);
        last = m.end();
        count += 1;
        if !pattern.global {
            break;
        }
        at = next_from(text, m.start(), m.end());
    }
    out.push_str(&text[last..]);
    Ok((out, count))
}

/// Where the next search starts: after the match, or one character on after an empty one
/// (past the end when there is none).
fn next_from(text: &str, start: usize, end: usize) -> usize {
    if end > start {
        return end;
    }
    text[end..]
        .chars()
        .next()
        .map_or(text.len() + 1, |c| end + c.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_take_flags() {
        let p = compile_literal("/secret/gi").unwrap();
        assert!(p.global);
        assert_eq!(replace(&p, "Secret and SECRET", "x").unwrap().0, "x and x");
        let p = compile_literal("secret").unwrap();
        assert_eq!(
            replace(&p, "secret secret", "x").unwrap(),
            ("x secret".into(), 1)
        );
        assert!(compile_literal("/a/y").is_err());
    }

    #[test]
    fn replacement_patterns_expand_like_javascript() {
        let p = compile_literal(r"/(\w+)@(?<host>\w+)\.com/g").unwrap();
        let (out, n) = replace(&p, "mail bob@corp.com now", "<$1 at $<host>: $&> $$").unwrap();
        assert_eq!(out, "mail <bob at corp: bob@corp.com> $ now");
        assert_eq!(n, 1);
        let (out, _) = replace(&p, "a@b.com", "$9$").unwrap();
        assert_eq!(out, "$9$");
    }

    #[test]
    fn lookaround_and_backreferences_work_and_backtracking_is_bounded() {
        assert!(
            compile(r"(?<=id:)\d+")
                .unwrap()
                .regex
                .is_match("id:42")
                .unwrap()
        );
        assert!(compile(r"(\w)\1").unwrap().regex.is_match("hello").unwrap());
        let evil = compile(r"^(a+)+\1$").unwrap();
        let text = format!("{}b", "a".repeat(64));
        assert!(evil.regex.is_match(&text).is_err());
        assert!(compile(&"a".repeat(MAX_PATTERN_LEN + 1)).is_err());
        assert!(compile("(unclosed").is_err());
    }
}
