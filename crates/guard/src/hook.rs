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

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::check::{Check, CheckError, CheckFuture, Outcome, Run, Transform};
use crate::context::{HookContext, Phase};

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
            cx.response = Some(body);
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
            "created_at": iso8601(self.created_at),
            "log": Value::Null,
            "fail_on_error": self.fail_on_error,
        });
        if let Some(e) = &self.error {
            v["error"] = json!({"name": e.name, "message": e.message});
        }
        v
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
            "created_at": iso8601(self.created_at),
            "feedback": self.feedback,
            "checks": self.checks.iter().map(CheckResult::to_json).collect::<Vec<_>>(),
        })
    }

    /// The ids of the checks that failed (an error without `failOnError` passes).
    pub fn failed_checks(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| !(c.verdict || (c.error.is_some() && !c.fail_on_error)))
            .map(|c| &*c.id)
            .collect()
    }
}

/// `2026-01-02T03:04:05.678Z`.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_iso() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_323_045_678);
        assert_eq!(iso8601(t), "2026-01-02T03:04:05.678Z");
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
