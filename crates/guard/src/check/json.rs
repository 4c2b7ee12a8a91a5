//! Checks over JSON in the answer: `jsonSchema` and `jsonKeys`.
//!
//! Both look for JSON the way Portkey does: the contents of fenced ```` ```json ```` blocks,
//! and every lazy `{…}` stretch (from a `{` to the first `}` after it). Lazy stretches cut
//! nested objects short, so each `{` is also tried with its balanced `}` (our addition: a
//! nested object or a whole-JSON answer is found).

use portcullis_core::BuildError;
use serde_json::{Value, json};

use super::params::{Operator, Params};
use super::schema::Schema;
use super::{Check, Outcome, Run};
use crate::context::HookContext;

/// The contents of fenced ```` ```json ```` blocks.
fn fenced(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("```json") {
        let body = &rest[i + 7..];
        match body.find("```") {
            Some(end) => {
                out.push(body[..end].trim());
                rest = &body[end + 3..];
            }
            None => break,
        }
    }
    out
}

/// Lazy `{…}` stretches, each followed by the balanced stretch from the same `{` when longer.
fn braces(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = text[i..].find('{') {
        let start = i + off;
        let Some(close) = text[start..].find('}') else {
            break;
        };
        out.push(&text[start..=start + close]);
        if let Some(end) = balanced(bytes, start)
            && end > start + close
        {
            out.push(&text[start..=end]);
        }
        i = start + close + 1;
    }
    out
}

/// The index of the `}` closing the `{` at `start`, skipping strings.
fn balanced(bytes: &[u8], start: usize) -> Option<usize> {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `default.jsonSchema`.
#[derive(Debug)]
pub(crate) struct JsonSchema {
    schema: Schema,
    not: bool,
}

impl JsonSchema {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        let schema = match p.get("schema") {
            Some(s @ Value::Object(_)) => Schema::compile(s).map_err(|e| e.in_key("schema"))?,
            _ => return Err(BuildError::new("is required (a JSON Schema object)").in_key("schema")),
        };
        Ok(Self {
            schema,
            not: p.not()?,
        })
    }
}

impl Check for JsonSchema {
    fn run(&self, cx: &HookContext) -> Run {
        let text = cx.text();
        let mut candidates = fenced(text);
        if candidates.is_empty() {
            candidates = braces(text);
        }
        let mut found = false;
        let mut last_errors = Vec::new();
        for c in candidates {
            let Ok(value) = serde_json::from_str::<Value>(c) else {
                continue;
            };
            found = true;
            let mut errors = Vec::new();
            self.schema.validate(&value, "", &mut errors);
            if errors.is_empty() {
                let verdict = !self.not;
                return Run::Done(Outcome::verdict(
                    verdict,
                    json!({"verdict": verdict, "not": self.not, "matchedJson": value,
                           "explanation": "The JSON in the text matches the schema.",
                           "validationErrors": []}),
                ));
            }
            last_errors = errors;
        }
        if !found {
            // No JSON at all fails, `not` or not (as Portkey does).
            return Run::Done(Outcome::verdict(
                false,
                json!({"verdict": false, "not": self.not, "explanation": "No valid JSON found in the text."}),
            ));
        }
        let verdict = self.not;
        Run::Done(Outcome::verdict(
            verdict,
            json!({"verdict": verdict, "not": self.not, "validationErrors": last_errors,
                   "explanation": "No JSON in the text matches the schema."}),
        ))
    }
}

/// `default.jsonKeys`: top-level keys of the first JSON object found.
#[derive(Debug)]
pub(crate) struct JsonKeys {
    keys: Vec<String>,
    operator: Operator,
}

impl JsonKeys {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        Ok(Self {
            keys: p.required_strings("keys")?,
            operator: Operator::parse(p, "operator")?,
        })
    }
}

impl Check for JsonKeys {
    fn run(&self, cx: &HookContext) -> Run {
        let text = cx.text();
        let mut candidates = fenced(text);
        candidates.extend(braces(text));
        let mut best: Option<(bool, Vec<&str>, Vec<&str>)> = None;
        for c in candidates {
            let Ok(Value::Object(map)) = serde_json::from_str::<Value>(c) else {
                continue;
            };
            let (present, missing): (Vec<&str>, Vec<&str>) = self
                .keys
                .iter()
                .map(String::as_str)
                .partition(|k| map.contains_key(*k));
            let verdict = self.operator.verdict(present.len(), self.keys.len());
            let stop = verdict;
            best = Some((verdict, present, missing));
            if stop {
                break;
            }
        }
        Run::Done(match best {
            None => Outcome::verdict(
                false,
                json!({"verdict": false, "operator": self.operator.as_str(),
                       "explanation": "No valid JSON object found in the text."}),
            ),
            Some((verdict, present, missing)) => Outcome::verdict(
                verdict,
                json!({"verdict": verdict, "operator": self.operator.as_str(),
                       "presentKeys": present, "missingKeys": missing}),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fenced_lazy_and_balanced_json() {
        assert_eq!(fenced("a ```json\n{\"a\":1}\n``` b"), ["{\"a\":1}"]);
        let found = braces(r#"x {"a":{"b":"}"}} y {"c":2}"#);
        assert_eq!(
            found,
            [r#"{"a":{"b":"}"#, r#"{"a":{"b":"}"}}"#, r#"{"c":2}"#]
        );
    }
}
