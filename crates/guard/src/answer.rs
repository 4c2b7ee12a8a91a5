//! The answers hooks give: 446 with `hook_results`, 246 and 200 bodies with `hook_results`,
//! the SSE error event that cuts a stream; and where verdicts are recorded.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use portcullis_core::Body;
use portcullis_core::error::ErrorBody;
use portcullis_core::facts::{GuardResult, ResponseFacts};
use serde_json::{Map, Value, json};

use crate::context::Phase;
use crate::hook::{Hook, HookResult, Stamps, Verdict, write_str, write_value};

/// Portkey's status for a denying hook that failed.
pub const DENIED: u16 = 446;
/// Portkey's status for a 200 whose hooks failed without denying ("Hooks failed").
pub const HOOKS_FAILED: u16 = 246;

const DENIED_MESSAGE: &str = "The guardrail checks defined in the config failed. You can find more information in the `hook_results` object.";

/// `{"before_request_hooks": […], "after_request_hooks": […]}`.
pub fn hook_results_json(before: &[HookResult], after: &[HookResult]) -> Value {
    json!({
        "before_request_hooks": before.iter().map(HookResult::to_json).collect::<Vec<_>>(),
        "after_request_hooks": after.iter().map(HookResult::to_json).collect::<Vec<_>>(),
    })
}

const RESULTS_KEY: &str = "hook_results";

/// `hook_results`, written from the results themselves: no [`Value`] tree, no copy of a
/// check's data.
#[derive(Clone, Copy)]
pub(crate) struct HookResults<'a> {
    pub(crate) before: &'a [HookResult],
    pub(crate) after: &'a [HookResult],
}

impl HookResults<'_> {
    /// Writes the bytes `serde_json` writes for [`hook_results_json`] (keys sorted: see
    /// [`HookResult::write_json`]).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let mut stamps = Stamps::default();
        let mut list = |out: &mut Vec<u8>, results: &[HookResult]| {
            out.push(b'[');
            for (i, r) in results.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                r.write_json(out, &mut stamps);
            }
            out.push(b']');
        };
        out.extend_from_slice(b"{\"after_request_hooks\":");
        list(out, self.after);
        out.extend_from_slice(b",\"before_request_hooks\":");
        list(out, self.before);
        out.push(b'}');
    }

    /// About how many bytes the results take: a guess that saves regrowing the buffer.
    fn estimate(&self) -> usize {
        let results = |rs: &[HookResult]| rs.iter().map(|r| 1 + r.checks.len()).sum::<usize>();
        64 + 400 * (results(self.before) + results(self.after))
    }
}

/// A JSON answer (an object, with whatever whitespace around and inside it) with
/// `hook_results` added as its last member, the upstream's bytes kept as they came.
///
/// Written anew (see [`with_results`]) the answer would differ only in how it is written:
/// here the upstream's key order and spacing, there sorted keys and no spacing. Clients parse
/// the answer as JSON (an object's members have no order, whitespace between tokens means
/// nothing), so both are the same answer, and this one costs a copy instead of a
/// serialisation. `empty` says the object has no members (no comma before the results).
/// `None` when `answer` does not end in `}` (not an object).
pub(crate) fn splice_results(
    answer: &[u8],
    empty: bool,
    results: HookResults<'_>,
) -> Option<Vec<u8>> {
    let close = answer
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .filter(|&i| answer[i] == b'}')?;
    let mut out = Vec::with_capacity(answer.len() + results.estimate());
    out.extend_from_slice(&answer[..close]);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(b"\"hook_results\":");
    results.write_json(&mut out);
    out.extend_from_slice(&answer[close..]);
    Some(out)
}

/// `object` with `hook_results` set, as bytes: the bytes `serde_json` writes for the object
/// after `object["hook_results"] = hook_results_json(…)` (members in the byte order of their
/// keys, an object's own `hook_results` replaced), without cloning the object or building
/// the results as a [`Value`].
pub(crate) fn with_results(object: &Map<String, Value>, results: HookResults<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(results.estimate() + 512);
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, key: &str| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
    };
    let mut written = false;
    for (key, value) in object {
        if !written && key.as_str() >= RESULTS_KEY {
            member(&mut out, RESULTS_KEY);
            results.write_json(&mut out);
            written = true;
        }
        if key != RESULTS_KEY {
            member(&mut out, key);
            write_value(&mut out, value);
        }
    }
    if !written {
        member(&mut out, RESULTS_KEY);
        results.write_json(&mut out);
    }
    out.push(b'}');
    out
}

fn denied_body() -> ErrorBody {
    ErrorBody::new("hooks_failed", DENIED_MESSAGE)
}

/// A 446's JSON: `{"error": {…}}` as [`ErrorBody`] writes it, read back as a map so that its
/// keys come out sorted (as they always have), with `hook_results`.
fn denied_json(results: HookResults<'_>) -> Vec<u8> {
    let error: Map<String, Value> =
        serde_json::from_slice(&denied_body().to_json()).expect("error JSON");
    with_results(&error, results)
}

/// The 446 answer: an OpenAI error of type `hooks_failed` plus `hook_results`.
pub(crate) fn denied(before: &[HookResult], after: &[HookResult]) -> Response<Body> {
    let body = denied_json(HookResults { before, after });
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(DENIED).expect("446 is a status");
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    record_facts(response.extensions_mut(), before.iter().chain(after));
    response
}

/// The SSE event that ends a stream a hook denied: the 446 error and the results.
pub(crate) fn denied_event(before: &[HookResult], after: &[HookResult]) -> Bytes {
    sse(&denied_json(HookResults { before, after }))
}

/// A `data: {"hook_results": …}` event.
pub(crate) fn results_event(before: &[HookResult], after: &[HookResult]) -> Bytes {
    let results = HookResults { before, after };
    let mut json = Vec::with_capacity(results.estimate());
    json.extend_from_slice(b"{\"hook_results\":");
    results.write_json(&mut json);
    json.push(b'}');
    sse(&json)
}

fn sse(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// Adds each hook's verdict to the response's facts.
pub(crate) fn record_facts<'a>(
    extensions: &mut http::Extensions,
    results: impl Iterator<Item = &'a HookResult>,
) {
    let facts = extensions.get_or_insert_default::<ResponseFacts>();
    facts.guards.extend(results.map(guard_result));
}

/// A hook's verdict in core's terms.
pub fn guard_result(r: &HookResult) -> GuardResult {
    let failed = r.failed_checks();
    GuardResult {
        id: Arc::clone(&r.id),
        passed: r.verdict,
        deny: r.deny,
        explanation: (!failed.is_empty()).then(|| format!("failed checks: {}", failed.join(", "))),
    }
}

/// Logs and counts each verdict. `hooks` are the hooks that gave `results`: a result's counter
/// is its hook's (found by its shared id), registered once; a result of no hook in `hooks` is
/// counted through the registry.
pub(crate) fn report(phase: Phase, results: &[HookResult], hooks: &[Arc<Hook>]) {
    for r in results {
        // A hook that failed is logged at `info`; one that passed only at `debug`: a line per
        // passing hook per request doubled the default log (and cost as much as the request's
        // own line), while every verdict is in the response's facts, the request span
        // (`portcullis.guards`), the console and the counter below.
        macro_rules! verdict {
            ($level:expr) => {
                tracing::event!(
                    target: "portcullis_guard",
                    $level,
                    hook = &*r.id,
                    phase = phase.as_str(),
                    kind = r.kind.as_str(),
                    verdict = r.verdict,
                    deny = r.deny,
                    is_async = r.is_async,
                    transformed = r.transformed,
                    failed = %FailedChecks(r),
                    execution_ms = r.execution_time,
                    "guardrail verdict"
                )
            };
        }
        if r.verdict {
            verdict!(tracing::Level::DEBUG);
        } else {
            verdict!(tracing::Level::INFO);
        }
        let verdict = Verdict::of(r);
        // The hook's id is shared, not copied, into the label.
        let register = || {
            metrics::counter!(
                "portcullis_guard_verdicts_total",
                "hook" => Arc::clone(&r.id),
                "phase" => phase.as_str(),
                "verdict" => verdict.as_str(),
            )
        };
        match hooks.iter().find(|h| Arc::ptr_eq(&h.id, &r.id)) {
            Some(hook) => hook.verdicts.get(phase, verdict, register).increment(1),
            None => register().increment(1),
        }
    }
}

/// The ids of a result's failed checks, comma-joined, written only when a log line is.
struct FailedChecks<'a>(&'a HookResult);

impl fmt::Display for FailedChecks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.failed_checks_iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::tests::{old_hook_json, sample_results};

    #[test]
    fn verdicts_are_counted_by_hook_phase_and_verdict_through_each_hooks_handle() {
        use crate::hook::HookKind;
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        use std::collections::BTreeMap;

        let hook = Arc::new(Hook::new("guard-1", HookKind::Guardrail));
        let result = |id: &Arc<str>, verdict: bool, deny: bool| {
            let mut r = sample_results().remove(0);
            r.id = Arc::clone(id);
            r.verdict = verdict;
            r.deny = deny;
            r
        };
        // Not one of the hooks passed: counted through the registry.
        let stranger: Arc<str> = Arc::from("guard-2");
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let hooks = [Arc::clone(&hook)];
            for _ in 0..2 {
                let before = [
                    result(&hook.id, true, false),
                    result(&hook.id, false, false),
                    result(&stranger, false, true),
                ];
                report(Phase::Before, &before, &hooks);
                report(Phase::After, &[result(&hook.id, false, true)], &hooks);
            }
        });
        let mut counts = BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            assert_eq!(key.name(), "portcullis_guard_verdicts_total");
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let DebugValue::Counter(n) = value else {
                panic!("{key:?} is not a counter");
            };
            counts.insert(labels.join(","), n);
        }
        let expected: BTreeMap<String, u64> = [
            ("hook=guard-1,phase=before,verdict=pass", 2),
            ("hook=guard-1,phase=before,verdict=fail", 2),
            ("hook=guard-2,phase=before,verdict=deny", 2),
            ("hook=guard-1,phase=after,verdict=deny", 2),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
        assert_eq!(counts, expected);
        // The hook kept its handles: counting again registers nothing.
        let _ = hook.verdicts.get(Phase::Before, Verdict::Pass, || {
            unreachable!("registered once")
        });
    }

    #[test]
    fn passing_verdicts_are_logged_at_debug_failing_ones_at_info() {
        #[derive(Clone, Default)]
        struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let results = sample_results();
        let logged = |max: tracing::Level| {
            let lines = Lines::default();
            let writer = lines.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(max)
                .with_ansi(false)
                .without_time()
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || report(Phase::After, &results, &[]));
            String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
        };
        let failing = results.iter().filter(|r| !r.verdict).count();
        assert!(
            failing > 0 && failing < results.len(),
            "the sample has both"
        );
        let info = logged(tracing::Level::INFO);
        assert_eq!(info.lines().count(), failing, "{info}");
        assert!(
            info.lines()
                .all(|l| l.contains(" INFO ") && l.contains("verdict=false"))
        );
        let debug = logged(tracing::Level::DEBUG);
        assert_eq!(debug.lines().count(), results.len(), "{debug}");
        let at_debug = debug.lines().filter(|l| l.starts_with("DEBUG ")).count();
        assert_eq!(at_debug, results.len() - failing, "{debug}");
    }

    /// What `hook_results` was: a tree of each result's old JSON.
    fn old_results(before: &[HookResult], after: &[HookResult]) -> Value {
        json!({
            "before_request_hooks": before.iter().map(old_hook_json).collect::<Vec<_>>(),
            "after_request_hooks": after.iter().map(old_hook_json).collect::<Vec<_>>(),
        })
    }

    /// What an answer with results was: the parsed object, results set, serialised.
    fn old_answer(object: &Value, before: &[HookResult], after: &[HookResult]) -> Vec<u8> {
        let mut object = object.clone();
        object["hook_results"] = old_results(before, after);
        serde_json::to_vec(&object).unwrap()
    }

    fn splits(results: &[HookResult]) -> Vec<(&[HookResult], &[HookResult])> {
        vec![
            (&[], &[]),
            (results, &[]),
            (&[], results),
            (&results[..1], &results[1..]),
        ]
    }

    #[test]
    fn hook_results_are_the_bytes_of_their_json_tree() {
        let results = sample_results();
        for (before, after) in splits(&results) {
            let old = serde_json::to_vec(&old_results(before, after)).unwrap();
            let results = HookResults { before, after };
            let mut written = Vec::new();
            results.write_json(&mut written);
            assert_eq!(written, old);
            assert_eq!(hook_results_json(before, after), old_results(before, after));
        }
    }

    #[test]
    fn results_take_their_sorted_place_in_an_object() {
        let results = sample_results();
        let objects = [
            json!({}),
            json!({"a": 1}),
            json!({"zzz": [1, {"b": 2, "a": 1}]}),
            json!({"error": {"type": "x"}, "id": "c", "object": "chat.completion"}),
            json!({"hook_results": "the upstream's own", "hook": 1, "hook_resultz": 2}),
            json!({"hook_results": null}),
            json!({"\u{0}": 0, "hook_results\u{0}": 1, "Z": "upper sorts first"}),
        ];
        for object in &objects {
            let map = object.as_object().unwrap();
            for (before, after) in splits(&results) {
                assert_eq!(
                    with_results(map, HookResults { before, after }),
                    old_answer(object, before, after),
                    "{object}"
                );
            }
        }
    }

    #[test]
    fn denied_answers_and_events_keep_their_bytes() {
        let results = sample_results();
        let (before, after) = (&results[..1], &results[1..]);
        let mut old: Value = serde_json::from_slice(&denied_body().to_json()).unwrap();
        old["hook_results"] = old_results(before, after);
        let old = serde_json::to_vec(&old).unwrap();

        let body = denied(before, after).into_body();
        let body = now(http_body_util::BodyExt::collect(body))
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], &old[..]);

        let event = denied_event(before, after);
        assert_eq!(&event[..], [&b"data: "[..], &old, b"\n\n"].concat());

        let event = results_event(before, after);
        let old = json!({"hook_results": old_results(before, after)});
        let old = [&b"data: "[..], &serde_json::to_vec(&old).unwrap(), b"\n\n"].concat();
        assert_eq!(&event[..], &old[..]);
    }

    /// The output of a future that is ready at once (a full body).
    fn now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("a full body is ready at once"),
        }
    }

    #[test]
    fn spliced_answers_are_the_same_json_as_rewritten_ones() {
        let results = sample_results();
        let answers: [&[u8]; 5] = [
            br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"}}]}"#,
            b"\r\n\t {  \"z\" : [ 1 , 2 ] ,\n  \"a\\u00e9\" : { \"y\" : 1.50 , \"x\" : 1e3 } } \n\t",
            b"{}",
            b" {\n} ",
            br#"{"closing":"}","nested":{"}":"}"}}"#,
        ];
        for answer in answers {
            let parsed: Value = serde_json::from_slice(answer).unwrap();
            let empty = parsed.as_object().unwrap().is_empty();
            for (before, after) in splits(&results) {
                let spliced = splice_results(answer, empty, HookResults { before, after })
                    .expect("an object");
                let spliced: Value = serde_json::from_slice(&spliced).unwrap_or_else(|e| {
                    panic!("{e}: {}", String::from_utf8_lossy(&spliced));
                });
                let old: Value =
                    serde_json::from_slice(&old_answer(&parsed, before, after)).unwrap();
                assert_eq!(spliced, old, "{}", String::from_utf8_lossy(answer));
            }
        }
        // The upstream's spacing and order stay as they were, the results come last.
        let spliced = splice_results(
            b"{\"b\": 1, \"a\": 2}\n",
            false,
            HookResults {
                before: &[],
                after: &[],
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(spliced).unwrap(),
            "{\"b\": 1, \"a\": 2,\"hook_results\":{\"after_request_hooks\":[],\"before_request_hooks\":[]}}\n"
        );
        let none = HookResults {
            before: &[],
            after: &[],
        };
        assert!(splice_results(b"[1]", false, none).is_none());
        assert!(splice_results(b"", true, none).is_none());
    }
}
