//! Hooks: checks grouped under an id, a kind, and what a failure does; and their results in
//! Portkey's `hook_results` shape.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use portcullis_core::RequestView;
//! use portcullis_guard::{Hook, HookContext, HookKind, Loader, Phase, RequestType};
//!
//! let loader = Loader::new();
//! let hook = loader
//!     .hook(&serde_json::json!({
//!         "id": "no-secrets", "type": "guardrail", "deny": true,
//!         "checks": [{"id": "default.regexMatch", "parameters": {"rule": "secret", "not": true}}]
//!     }), Phase::Before)
//!     .unwrap();
//! let view = RequestView::parse(Bytes::from_static(
//!     br#"{"model":"m","messages":[{"role":"user","content":"my secret plan"}]}"#,
//! )).unwrap();
//! let mut cx = HookContext::before(Arc::new(view), RequestType::ChatComplete);
//! let result = hook.run_now(&mut cx);
//! assert!(!result.verdict);
//! assert!(result.denied());
//! assert_eq!(result.to_json()["checks"][0]["id"], "default.regexMatch");
//! ```

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::check::{Check, CheckError, CheckFuture, Outcome, Run, Transform};
use crate::context::{HookContext, Phase};
use crate::response::ResponseDoc;
pub(crate) use portcullis_core::observe::json::{write_str, write_value};

/// A guardrail judges; a mutator runs its checks strictly in order and may rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `guardrail`.
    Guardrail,
    /// `mutator`.
    Mutator,
}

impl HookKind {
    /// `guardrail` or `mutator`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Guardrail => "guardrail",
            HookKind::Mutator => "mutator",
        }
    }
}

/// One check of a hook: its id, the check, and how it counts.
#[derive(Clone)]
pub struct CheckSpec {
    pub(crate) id: Arc<str>,
    pub(crate) check: Arc<dyn Check>,
    pub(crate) enabled: bool,
    pub(crate) fail_on_error: bool,
}

impl CheckSpec {
    /// A check under `id` (e.g. `default.regexMatch`), enabled, passing on error.
    pub fn new(id: impl Into<Arc<str>>, check: Arc<dyn Check>) -> Self {
        Self {
            id: id.into(),
            check,
            enabled: true,
            fail_on_error: false,
        }
    }

    /// Sets `is_enabled` (a disabled check is skipped, in guardrails and mutators alike).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets `failOnError`: an error fails the check instead of passing it.
    pub fn fail_on_error(mut self, fail: bool) -> Self {
        self.fail_on_error = fail;
        self
    }

    /// The check's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The check.
    pub fn check(&self) -> &Arc<dyn Check> {
        &self.check
    }

    /// Whether the check runs.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether an error fails it.
    pub fn fails_on_error(&self) -> bool {
        self.fail_on_error
    }
}

impl fmt::Debug for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckSpec")
            .field("id", &self.id)
            .field("check", &self.check)
            .field("enabled", &self.enabled)
            .field("fail_on_error", &self.fail_on_error)
            .finish()
    }
}

/// A hook (Portkey's hook object): checks, and what their failure means.
#[derive(Clone, Debug)]
pub struct Hook {
    pub(crate) id: Arc<str>,
    pub(crate) kind: HookKind,
    pub(crate) checks: Vec<CheckSpec>,
    pub(crate) deny: bool,
    pub(crate) is_async: bool,
    pub(crate) sequential: bool,
    pub(crate) on_fail: Option<Value>,
    pub(crate) on_success: Option<Value>,
    /// `portcullis_guard_verdicts_total` for this hook, by phase and verdict: registered at
    /// the first verdict of each kind (see [`crate::answer::report`]).
    pub(crate) verdicts: Arc<VerdictCounters>,
}

/// A hook's verdict counters, by [`Phase`] and verdict (`pass`, `fail`, `deny`): registered
/// with the recorder current at the first count of each, then incremented through the handle
/// (the registry's lookup, a hash of the name and three labels, was most of a verdict's cost).
#[derive(Debug, Default)]
pub(crate) struct VerdictCounters([std::sync::OnceLock<metrics::Counter>; 6]);

/// A hook's verdict, as the counter's `verdict` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Fail,
    Deny,
}

impl Verdict {
    /// The verdict of `result`: passed, failed without denying, or denied.
    pub(crate) fn of(result: &HookResult) -> Self {
        match (result.verdict, result.deny) {
            (true, _) => Verdict::Pass,
            (false, false) => Verdict::Fail,
            (false, true) => Verdict::Deny,
        }
    }

    /// The label: `pass`, `fail` or `deny`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Deny => "deny",
        }
    }
}

impl VerdictCounters {
    /// The counter of `phase` and `verdict`, registered by `register` at its first use.
    pub(crate) fn get(
        &self,
        phase: Phase,
        verdict: Verdict,
        register: impl FnOnce() -> metrics::Counter,
    ) -> &metrics::Counter {
        let phase = match phase {
            Phase::Before => 0,
            Phase::After => 3,
        };
        let verdict = match verdict {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Deny => 2,
        };
        self.0[phase + verdict].get_or_init(register)
    }
}

impl Hook {
    /// An empty hook of `kind`: no checks, no deny, sync, parallel.
    pub fn new(id: impl Into<Arc<str>>, kind: HookKind) -> Self {
        Self {
            id: id.into(),
            kind,
            checks: Vec::new(),
            deny: false,
            is_async: false,
            sequential: false,
            on_fail: None,
            on_success: None,
            verdicts: Arc::default(),
        }
    }

    /// Adds a check.
    pub fn check(mut self, check: CheckSpec) -> Self {
        self.checks.push(check);
        self
    }

    /// Sets `deny`: a failed verdict answers 446.
    pub fn deny(mut self, deny: bool) -> Self {
        self.deny = deny;
        self
    }

    /// Sets `async`: the hook runs detached and never changes the answer.
    pub fn asynchronous(mut self, is_async: bool) -> Self {
        self.is_async = is_async;
        self
    }

    /// Sets `sequential`: checks run one after another, each seeing the previous rewrite.
    pub fn sequential(mut self, sequential: bool) -> Self {
        self.sequential = sequential;
        self
    }

    /// The feedback (`{value, weight, metadata}`) attached to a failed or passed result.
    pub fn feedback(mut self, on_fail: Option<Value>, on_success: Option<Value>) -> Self {
        self.on_fail = on_fail;
        self.on_success = on_success;
        self
    }

    /// The hook's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Guardrail or mutator.
    pub fn kind(&self) -> HookKind {
        self.kind
    }

    /// Whether a failure denies.
    pub fn denies(&self) -> bool {
        self.deny
    }

    /// Whether the hook runs detached.
    pub fn is_async(&self) -> bool {
        self.is_async
    }

    /// Whether checks run one after another.
    pub fn is_sequential(&self) -> bool {
        self.sequential
    }

    /// The feedback for a failed and for a passed result.
    pub fn feedbacks(&self) -> (Option<&Value>, Option<&Value>) {
        (self.on_fail.as_ref(), self.on_success.as_ref())
    }

    /// The checks.
    pub fn checks(&self) -> &[CheckSpec] {
        &self.checks
    }

    /// Whether every enabled check answers at once (no I/O).
    pub fn is_sync(&self) -> bool {
        !self.active().any(|c| c.check.is_async())
    }

    fn active(&self) -> impl Iterator<Item = &CheckSpec> {
        self.checks.iter().filter(|c| c.enabled)
    }

    fn in_order(&self) -> bool {
        self.sequential || self.kind == HookKind::Mutator
    }

    /// Runs a sync hook now. A check that would do I/O is recorded as an error (run such
    /// hooks with [`run`](Self::run)).
    pub fn run_now(&self, cx: &mut HookContext) -> HookResult {
        let started = Instant::now();
        let created = SystemTime::now();
        let mut results = Vec::with_capacity(self.checks.len());
        let mut pending_transforms = Vec::new();
        let mut transformed = false;
        for spec in self.active() {
            let t0 = Instant::now();
            let outcome = match spec.check.run(cx) {
                Run::Done(o) => o,
                Run::Pending(_) => Outcome::error("this check does I/O and cannot run here"),
            };
            let (result, transform) = record(spec, outcome, t0);
            if let Some(t) = transform {
                transformed = true;
                if self.in_order() {
                    apply(cx, t);
                } else {
                    pending_transforms.push(t);
                }
            }
            results.push(result);
        }
        for t in pending_transforms {
            apply(cx, t);
        }
        self.conclude(results, transformed, started, created)
    }

    /// Runs the hook, awaiting checks that do I/O (in parallel unless the hook runs in
    /// order).
    pub async fn run(&self, cx: &mut HookContext) -> HookResult {
        if self.is_sync() {
            return self.run_now(cx);
        }
        let started = Instant::now();
        let created = SystemTime::now();
        let mut transformed = false;
        let mut results = Vec::with_capacity(self.checks.len());
        if self.in_order() {
            for spec in self.active() {
                let t0 = Instant::now();
                let outcome = match spec.check.run(cx) {
                    Run::Done(o) => o,
                    Run::Pending(f) => f.await,
                };
                let (result, transform) = record(spec, outcome, t0);
                if let Some(t) = transform {
                    transformed = true;
                    apply(cx, t);
                }
                results.push(result);
            }
        } else {
            let t0 = Instant::now();
            let specs: Vec<&CheckSpec> = self.active().collect();
            let runs: Vec<Run> = specs.iter().map(|s| s.check.run(cx)).collect();
            let outcomes = join_all(runs).await;
            let mut transforms = Vec::new();
            for (spec, (outcome, done_at)) in specs.into_iter().zip(outcomes) {
                let (mut result, transform) = record(spec, outcome, t0);
                result.execution_time = done_at.duration_since(t0).as_millis() as u64;
                if let Some(t) = transform {
                    transformed = true;
                    transforms.push(t);
                }
                results.push(result);
            }
            for t in transforms {
                apply(cx, t);
            }
        }
        self.conclude(results, transformed, started, created)
    }

    fn conclude(
        &self,
        checks: Vec<CheckResult>,
        transformed: bool,
        started: Instant,
        created: SystemTime,
    ) -> HookResult {
        let verdict = checks
            .iter()
            .all(|c| c.verdict || (c.error.is_some() && !c.fail_on_error));
        let feedback = if verdict {
            &self.on_success
        } else {
            &self.on_fail
        };
        let feedback = feedback.as_ref().map(|f| {
            let mut f = f.clone();
            let ids = |pick: &dyn Fn(&CheckResult) -> bool| {
                checks
                    .iter()
                    .filter(|c| pick(c))
                    .map(|c| &*c.id)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let meta = json!({
                "successfulChecks": ids(&|c| c.verdict),
                "failedChecks": ids(&|c| !c.verdict && c.error.is_none()),
                "erroredChecks": ids(&|c| c.error.is_some()),
            });
            if let Value::Object(obj) = &mut f {
                let m = obj
                    .entry("metadata")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let (Value::Object(m), Value::Object(extra)) = (m, meta) {
                    m.extend(extra);
                }
            }
            f
        });
        HookResult {
            id: self.id.clone(),
            kind: self.kind,
            verdict,
            deny: self.deny,
            is_async: self.is_async,
            transformed,
            execution_time: started.elapsed().as_millis() as u64,
            created_at: created,
            feedback,
            checks,
        }
    }
}

fn record(spec: &CheckSpec, outcome: Outcome, t0: Instant) -> (CheckResult, Option<Transform>) {
    let result = CheckResult {
        id: spec.id.clone(),
        verdict: outcome.verdict,
        data: outcome.data,
        error: outcome.error,
        transformed: outcome.transform.is_some(),
        execution_time: t0.elapsed().as_millis() as u64,
        created_at: SystemTime::now(),
        fail_on_error: spec.fail_on_error,
    };
    (result, outcome.transform)
}

/// Applies a rewrite to the context (request rewrites only before the call, response
/// rewrites only after it).
pub(crate) fn apply(cx: &mut HookContext, transform: Transform) {
    match (transform, cx.phase) {
        (Transform::Parts(parts), _) => cx.set_parts(&parts),
        (Transform::Request(patch), Phase::Before) => {
            for (k, v) in patch {
                cx.request.set(&k, v);
            }
            cx.transformed_request = true;
            cx.refresh_text();
        }
        (Transform::RequestBody(body), Phase::Before) => {
            cx.request.replace(body);
            cx.transformed_request = true;
            cx.refresh_text();
        }
        (Transform::ResponseBody(body), Phase::After) => {
            cx.response = Some(ResponseDoc::from_value(body));
            cx.transformed_response = true;
            cx.refresh_text();
        }
        _ => {}
    }
}

/// Awaits every run at once; each outcome comes with when it finished.
async fn join_all(runs: Vec<Run>) -> Vec<(Outcome, Instant)> {
    let now = Instant::now();
    let mut slots: Vec<Result<(Outcome, Instant), CheckFuture>> = runs
        .into_iter()
        .map(|r| match r {
            Run::Done(o) => Ok((o, now)),
            Run::Pending(f) => Err(f),
        })
        .collect();
    poll_fn(|cx| {
        let mut waiting = false;
        for slot in &mut slots {
            if let Err(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(o) => *slot = Ok((o, Instant::now())),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|_| (Outcome::error("not finished"), now)))
        .collect()
}

/// The result of one check (Portkey's check result).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    /// The check's id.
    pub id: Arc<str>,
    /// Whether it passed.
    pub verdict: bool,
    /// Its details.
    pub data: Value,
    /// Why it could not judge.
    pub error: Option<CheckError>,
    /// Whether it rewrote anything.
    pub transformed: bool,
    /// Milliseconds it took.
    pub execution_time: u64,
    /// When it ran.
    pub created_at: SystemTime,
    /// Whether an error fails it.
    pub fail_on_error: bool,
}

impl CheckResult {
    /// Portkey's JSON: `{id, verdict, data, error?, transformed, execution_time,
    /// created_at, log, fail_on_error}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": &*self.id,
            "verdict": self.verdict,
            "data": self.data,
            "transformed": self.transformed,
            "execution_time": self.execution_time,
            "created_at": Iso8601::new(self.created_at).as_str(),
            "log": Value::Null,
            "fail_on_error": self.fail_on_error,
        });
        if let Some(e) = &self.error {
            v["error"] = json!({"name": e.name, "message": e.message});
        }
        v
    }

    /// Writes the bytes `serde_json` writes for [`to_json`](Self::to_json) to `out`, without
    /// building it: keys and punctuation as literals, values by reference. The keys come in
    /// byte order, as `serde_json`'s maps (sorted, no `preserve_order`) write them.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>, stamps: &mut Stamps) {
        out.extend_from_slice(b"{\"created_at\":\"");
        out.extend_from_slice(stamps.get(self.created_at).as_bytes());
        out.extend_from_slice(b"\",\"data\":");
        write_value(out, &self.data);
        if let Some(e) = &self.error {
            out.extend_from_slice(b",\"error\":{\"message\":");
            write_str(out, &e.message);
            out.extend_from_slice(b",\"name\":");
            write_str(out, &e.name);
            out.push(b'}');
        }
        out.extend_from_slice(b",\"execution_time\":");
        append_json(out, &self.execution_time);
        out.extend_from_slice(b",\"fail_on_error\":");
        write_bool(out, self.fail_on_error);
        out.extend_from_slice(b",\"id\":");
        write_str(out, &self.id);
        out.extend_from_slice(b",\"log\":null,\"transformed\":");
        write_bool(out, self.transformed);
        out.extend_from_slice(b",\"verdict\":");
        write_bool(out, self.verdict);
        out.push(b'}');
    }
}

/// The result of one hook (Portkey's `GuardrailResult`).
#[derive(Clone, Debug, PartialEq)]
pub struct HookResult {
    /// The hook's id.
    pub id: Arc<str>,
    /// Guardrail or mutator.
    pub kind: HookKind,
    /// Whether the hook passed: every enabled check passed, or erred without `failOnError`.
    pub verdict: bool,
    /// The hook's `deny`.
    pub deny: bool,
    /// The hook's `async`.
    pub is_async: bool,
    /// Whether a check rewrote the request or response.
    pub transformed: bool,
    /// Milliseconds the hook took.
    pub execution_time: u64,
    /// When it ran.
    pub created_at: SystemTime,
    /// `on_success.feedback` or `on_fail.feedback`, with the ids of the successful, failed
    /// and errored checks added to its metadata.
    pub feedback: Option<Value>,
    /// Each check's result, in order.
    pub checks: Vec<CheckResult>,
}

impl HookResult {
    /// Whether this result denies the request: `deny` and a failed verdict.
    pub fn denied(&self) -> bool {
        self.deny && !self.verdict
    }

    /// Portkey's JSON: `{verdict, id, type, deny, async, transformed, execution_time,
    /// created_at, feedback, checks}`.
    pub fn to_json(&self) -> Value {
        json!({
            "verdict": self.verdict,
            "id": &*self.id,
            "type": self.kind.as_str(),
            "deny": self.deny,
            "async": self.is_async,
            "transformed": self.transformed,
            "execution_time": self.execution_time,
            "created_at": Iso8601::new(self.created_at).as_str(),
            "feedback": self.feedback,
            "checks": self.checks.iter().map(CheckResult::to_json).collect::<Vec<_>>(),
        })
    }

    /// Writes the bytes `serde_json` writes for [`to_json`](Self::to_json) to `out` (see
    /// [`CheckResult::write_json`]).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>, stamps: &mut Stamps) {
        out.extend_from_slice(b"{\"async\":");
        write_bool(out, self.is_async);
        out.extend_from_slice(b",\"checks\":[");
        for (i, check) in self.checks.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            check.write_json(out, stamps);
        }
        out.extend_from_slice(b"],\"created_at\":\"");
        out.extend_from_slice(stamps.get(self.created_at).as_bytes());
        out.extend_from_slice(b"\",\"deny\":");
        write_bool(out, self.deny);
        out.extend_from_slice(b",\"execution_time\":");
        append_json(out, &self.execution_time);
        out.extend_from_slice(b",\"feedback\":");
        match &self.feedback {
            Some(feedback) => write_value(out, feedback),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"id\":");
        write_str(out, &self.id);
        out.extend_from_slice(b",\"transformed\":");
        write_bool(out, self.transformed);
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"verdict\":");
        write_bool(out, self.verdict);
        out.push(b'}');
    }

    /// The ids of the checks that failed (an error without `failOnError` passes).
    pub fn failed_checks(&self) -> Vec<&str> {
        self.failed_checks_iter().collect()
    }

    pub(crate) fn failed_checks_iter(&self) -> impl Iterator<Item = &str> {
        self.checks
            .iter()
            .filter(|c| !(c.verdict || (c.error.is_some() && !c.fail_on_error)))
            .map(|c| &*c.id)
    }
}

/// A number (or anything), as `serde_json` writes it.
fn append_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("JSON into memory cannot fail");
}

fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// The timestamps of one write of results: the last one written, by its millisecond. A hook
/// and its checks mostly run within one millisecond, and formatting a time is most of a
/// result's fixed cost.
#[derive(Default)]
pub(crate) struct Stamps {
    last: Option<((u64, u32), Iso8601)>,
}

impl Stamps {
    /// `t` as [`Iso8601`] writes it.
    pub(crate) fn get(&mut self, t: SystemTime) -> Iso8601 {
        // The key is what the text shows: the time since the epoch (none before it), to the
        // millisecond.
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let key = (d.as_secs(), d.subsec_millis());
        if let Some((at, text)) = self.last
            && at == key
        {
            return text;
        }
        let text = Iso8601::new(t);
        self.last = Some((key, text));
        text
    }
}

/// A time as `2026-01-02T03:04:05.678Z` (UTC, milliseconds), in a buffer on the stack: every
/// result carries one, so writing it must not allocate.
#[derive(Clone, Copy)]
pub(crate) struct Iso8601 {
    buf: [u8; Self::CAP],
    len: usize,
}

impl Iso8601 {
    /// Room for the longest year a `SystemTime` reaches (12 digits) and the 20 bytes after it.
    const CAP: usize = 32;

    pub(crate) fn new(t: SystemTime) -> Self {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Never before 1970 (the epoch is the earliest time written): the year is not negative.
        let (year, month, day) = portcullis_core::clock::civil_from_days(days as i64);
        let (year, month, day) = (year as u64, u64::from(month), u64::from(day));

        let mut out = Self {
            buf: [0; Self::CAP],
            len: 0,
        };
        // At least four digits, as `{year:04}` gives, more past the year 9999.
        let year_digits = year.checked_ilog10().map_or(1, |l| l as usize + 1).max(4);
        out.digits(year, year_digits);
        out.byte(b'-');
        out.digits(month, 2);
        out.byte(b'-');
        out.digits(day, 2);
        out.byte(b'T');
        out.digits(rem / 3600, 2);
        out.byte(b':');
        out.digits(rem % 3600 / 60, 2);
        out.byte(b':');
        out.digits(rem % 60, 2);
        out.byte(b'.');
        out.digits(u64::from(d.subsec_millis()), 3);
        out.byte(b'Z');
        out
    }

    /// `n` zero-padded to `width` digits (`n` has at most `width` digits).
    fn digits(&mut self, mut n: u64, width: usize) {
        let end = self.len + width;
        for b in self.buf[self.len..end].iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len = end;
    }

    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("digits and ASCII punctuation")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    // How results were written before `write_json`: `json!` trees serialised whole, and
    // `format!` for the timestamps. The writers must give the same bytes.

    pub(crate) fn old_iso8601(t: SystemTime) -> String {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            d.subsec_millis()
        )
    }

    pub(crate) fn old_check_json(c: &CheckResult) -> Value {
        let mut v = json!({
            "id": &*c.id,
            "verdict": c.verdict,
            "data": c.data,
            "transformed": c.transformed,
            "execution_time": c.execution_time,
            "created_at": old_iso8601(c.created_at),
            "log": Value::Null,
            "fail_on_error": c.fail_on_error,
        });
        if let Some(e) = &c.error {
            v["error"] = json!({"name": e.name, "message": e.message});
        }
        v
    }

    pub(crate) fn old_hook_json(h: &HookResult) -> Value {
        json!({
            "verdict": h.verdict,
            "id": &*h.id,
            "type": h.kind.as_str(),
            "deny": h.deny,
            "async": h.is_async,
            "transformed": h.transformed,
            "execution_time": h.execution_time,
            "created_at": old_iso8601(h.created_at),
            "feedback": h.feedback,
            "checks": h.checks.iter().map(old_check_json).collect::<Vec<_>>(),
        })
    }

    fn at(millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// Ids that need escaping, data of every shape, errors and feedback of both kinds.
    pub(crate) fn sample_results() -> Vec<HookResult> {
        let check = |id: &str, data: Value, error: Option<CheckError>| CheckResult {
            id: id.into(),
            verdict: error.is_none() && !data.is_null(),
            data,
            error,
            transformed: id.len().is_multiple_of(2),
            execution_time: id.len() as u64,
            created_at: at(1_767_323_045_678 + id.len() as u64),
            fail_on_error: id.contains('f'),
        };
        let mut odd_error = CheckError::new("tab\there, \"quoted\", \u{7f} and \u{1f}");
        odd_error.name = "Webhook error".into();
        let checks = vec![
            check(
                "default.wordCount",
                json!({"wordCount": 7, "minWords": 1, "maxWords": 500.5, "verdict": true, "not": false, "explanation": "The text has 7 words."}),
                None,
            ),
            check("default.regexMatch", Value::Null, None),
            check(
                "a\"quote\\back/slash\ncontrol\u{1}é😀",
                json!(["list", -3, 1e300, u64::MAX, i64::MIN, null, {"z": {}, "a": []}]),
                None,
            ),
            check(
                "default.webhook",
                json!("just a string \u{2028}"),
                Some(odd_error),
            ),
            check(
                "portcullis.pii",
                json!(false),
                Some(CheckError::new("this check does I/O and cannot run here")),
            ),
            check("", json!({}), None),
            check(
                "escapes",
                json!({"k\"ey\n": "tab\there", "\u{0}": [[], {}, [{"\\": -0.0}]], "f": 0.1}),
                None,
            ),
        ];
        let hook = |id: &str, kind, feedback, checks: Vec<CheckResult>| HookResult {
            id: id.into(),
            kind,
            verdict: checks.iter().all(|c| c.verdict),
            deny: id.len() % 2 == 1,
            is_async: id.len().is_multiple_of(3),
            transformed: checks.iter().any(|c| c.transformed),
            execution_time: if id.is_empty() { u64::MAX } else { 3 },
            created_at: at(951_782_400_000 - id.len() as u64 * 86_400_000),
            feedback,
            checks,
        };
        vec![
            hook(
                "input_guardrail_x1a",
                HookKind::Guardrail,
                None,
                checks[..1].to_vec(),
            ),
            hook(
                "out \"hook\"\t<\u{0}>",
                HookKind::Mutator,
                Some(
                    json!({"value": -5, "weight": 0.5, "metadata": {"failedChecks": "a,b", "user": {"nested": [1, 2]}}}),
                ),
                checks.clone(),
            ),
            hook(
                "",
                HookKind::Guardrail,
                Some(json!("not an object")),
                Vec::new(),
            ),
        ]
    }

    #[test]
    fn timestamps_are_iso() {
        assert_eq!(
            Iso8601::new(at(1_767_323_045_678)).as_str(),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(
            Iso8601::new(SystemTime::UNIX_EPOCH).as_str(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn timestamps_match_the_formatted_ones_everywhere() {
        let day = 86_400_000;
        let mut times = vec![
            SystemTime::UNIX_EPOCH - Duration::from_secs(1),
            at(951_782_400_000),        // 2000-02-29
            at(253_402_300_799_999),    // 9999-12-31T23:59:59.999
            at(253_402_300_800_000),    // 10000-01-01
            at(10_000_000_000_000_000), // a six-digit year
            SystemTime::UNIX_EPOCH + Duration::new(u64::MAX / 4, 999_999_999),
        ];
        // Every day of four centuries, at a time of day and milliseconds that move.
        let mut t = 0;
        while t < 146_097 * day {
            times.push(at(t));
            t += day + 3_599_999;
        }
        for t in times {
            assert_eq!(Iso8601::new(t).as_str(), old_iso8601(t), "{t:?}");
        }
    }

    #[test]
    fn results_write_the_bytes_their_json_trees_wrote() {
        for hook in sample_results() {
            let old = serde_json::to_vec(&old_hook_json(&hook)).unwrap();
            let mut written = Vec::new();
            hook.write_json(&mut written, &mut Stamps::default());
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(old.clone()).unwrap()
            );
            assert_eq!(hook.to_json(), old_hook_json(&hook));
            for check in &hook.checks {
                let old = serde_json::to_vec(&old_check_json(check)).unwrap();
                let mut written = Vec::new();
                check.write_json(&mut written, &mut Stamps::default());
                assert_eq!(written, old);
                assert_eq!(check.to_json(), old_check_json(check));
            }
        }
    }

    #[test]
    fn stamps_write_what_each_time_writes() {
        let mut stamps = Stamps::default();
        let base = 1_767_323_045_678;
        let times = [
            at(base),
            at(base) + Duration::from_micros(999),
            at(base + 1),
            at(base + 1) + Duration::from_nanos(1),
            at(base),
            SystemTime::UNIX_EPOCH - Duration::from_secs(1),
            SystemTime::UNIX_EPOCH,
            at(base + 86_400_000),
            at(base + 1000),
        ];
        for t in times {
            assert_eq!(stamps.get(t).as_str(), old_iso8601(t), "{t:?}");
        }
    }
}
