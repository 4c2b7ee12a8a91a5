//! [`GuardLayer`], its builder, and the hooks it shares with every service it wraps.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::check::Check;
use crate::config::HookSet;
use crate::context::{HookContext, Phase};
use crate::hook::{Hook, HookKind, HookResult};
use crate::service::Guard;

/// How the guard watches streamed answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// Bytes of text before each new piece that window checks see again, so a match that
    /// spans two events is found (default 64).
    pub window: usize,
    /// Bytes of text held back from the client until window checks have seen what follows
    /// them (default 64): a banned stretch of up to this length never reaches the client.
    /// Only when a denying hook has window checks (a banned pattern or word, PII): without
    /// one, nothing can cut the stream before its end, and nothing is held.
    pub hold: usize,
    /// Send a `data: {"hook_results": …}` event before `[DONE]` (Portkey's behaviour with
    /// strict OpenAI compliance off; default off).
    pub results_event: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            window: 64,
            hold: 64,
            results_event: false,
        }
    }
}

/// The hooks of a layer, split by when they run.
#[derive(Debug)]
pub(crate) struct Guards {
    pub(crate) before: Vec<Arc<Hook>>,
    pub(crate) before_async: Vec<Arc<Hook>>,
    pub(crate) after: Vec<Arc<Hook>>,
    pub(crate) after_async: Vec<Arc<Hook>>,
    /// Every (sync-phase) before hook answers without I/O.
    pub(crate) before_sync: bool,
    /// The window-judging checks of denying after hooks: (index in `after`, check).
    pub(crate) window_checks: Vec<(usize, Arc<dyn Check>)>,
    pub(crate) stream: StreamOptions,
}

impl Guards {
    fn new(set: HookSet, stream: StreamOptions) -> Self {
        let (before_async, before): (Vec<_>, Vec<_>) =
            set.before.into_iter().partition(|h| h.is_async);
        let (after_async, after): (Vec<_>, Vec<_>) =
            set.after.into_iter().partition(|h| h.is_async);
        let window_checks = after
            .iter()
            .enumerate()
            .filter(|(_, h)| h.deny)
            .flat_map(|(i, h)| {
                h.checks
                    .iter()
                    .filter(|c| c.enabled && c.check.judges_windows())
                    .map(move |c| (i, c.check.clone()))
            })
            .collect();
        Self {
            before_sync: before.iter().all(|h| h.is_sync()),
            before,
            before_async,
            after,
            after_async,
            window_checks,
            stream,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.before.is_empty()
            && self.before_async.is_empty()
            && self.after.is_empty()
            && self.after_async.is_empty()
    }
}

/// Runs sync hooks now, in order, each seeing the rewrites before it.
pub(crate) fn run_now(
    hooks: &[Arc<Hook>],
    cx: &mut HookContext,
    skip_mutators: bool,
) -> Vec<HookResult> {
    hooks
        .iter()
        .filter(|h| !(skip_mutators && h.kind == HookKind::Mutator))
        .map(|h| h.run_now(cx))
        .collect()
}

/// Runs hooks, awaiting those that do I/O.
pub(crate) async fn run_all(
    hooks: &[Arc<Hook>],
    cx: &mut HookContext,
    skip_mutators: bool,
) -> Vec<HookResult> {
    let mut out = Vec::with_capacity(hooks.len());
    for h in hooks
        .iter()
        .filter(|h| !(skip_mutators && h.kind == HookKind::Mutator))
    {
        out.push(h.run(cx).await);
    }
    out
}

/// Runs `async: true` hooks detached on a copy of `cx` (made only when there are some):
/// their verdicts go to logs and metrics only.
pub(crate) fn spawn_async(hooks: &[Arc<Hook>], cx: &HookContext, phase: Phase) {
    if hooks.is_empty() {
        return;
    }
    let cx = cx.clone();
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(target: "portcullis_guard", "async hooks skipped: no tokio runtime");
        return;
    };
    let hooks = hooks.to_vec();
    handle.spawn(async move {
        let mut cx = cx;
        let results = run_all(&hooks, &mut cx, false).await;
        crate::answer::report(phase, &results, &hooks);
    });
}

/// Applies [`Guard`] to a service: every service it wraps shares one set of hooks.
///
/// ```
/// use portcullis_guard::{GuardLayer, Loader};
/// use serde_json::json;
///
/// let hooks = Loader::new()
///     .hooks(&json!({"input_guardrails": [{"deny": true, "portcullis.pii": {}}]}))
///     .unwrap();
/// let layer = GuardLayer::new(hooks);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct GuardLayer {
    guards: Arc<Guards>,
}

impl GuardLayer {
    /// A layer running `hooks` with the default stream options.
    pub fn new(hooks: HookSet) -> Self {
        Self::builder().hooks(hooks).build()
    }

    /// A builder.
    pub fn builder() -> GuardBuilder {
        GuardBuilder::default()
    }
}

impl fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardLayer")
            .field("guards", &self.guards)
            .finish()
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::from_shared(inner, self.guards.clone())
    }
}

/// Builds a [`GuardLayer`]: hooks (from a [`HookSet`] or one by one) and stream options.
///
/// ```
/// use portcullis_guard::{GuardLayer, Loader, Phase};
/// use serde_json::json;
///
/// let loader = Loader::new();
/// let hook = loader
///     .hook(&json!({"id": "no-ssn", "deny": true,
///                   "checks": [{"id": "portcullis.pii", "parameters": {"kinds": ["ssn"]}}]}), Phase::After)
///     .unwrap();
/// let layer = GuardLayer::builder().after(hook).window(32).hold(32).build();
/// # let _ = layer;
/// ```
#[derive(Debug, Default)]
pub struct GuardBuilder {
    hooks: HookSet,
    stream: StreamOptions,
}

impl GuardBuilder {
    /// Adds every hook of `hooks`.
    pub fn hooks(mut self, hooks: HookSet) -> Self {
        self.hooks.before.extend(hooks.before);
        self.hooks.after.extend(hooks.after);
        self
    }

    /// Adds a before-request hook.
    pub fn before(mut self, hook: Hook) -> Self {
        self.hooks.before.push(Arc::new(hook));
        self
    }

    /// Adds an after-request hook.
    pub fn after(mut self, hook: Hook) -> Self {
        self.hooks.after.push(Arc::new(hook));
        self
    }

    /// Sets [`StreamOptions::window`].
    pub fn window(mut self, bytes: usize) -> Self {
        self.stream.window = bytes;
        self
    }

    /// Sets [`StreamOptions::hold`].
    pub fn hold(mut self, bytes: usize) -> Self {
        self.stream.hold = bytes;
        self
    }

    /// Sets [`StreamOptions::results_event`].
    pub fn results_event(mut self, send: bool) -> Self {
        self.stream.results_event = send;
        self
    }

    /// The layer.
    pub fn build(self) -> GuardLayer {
        GuardLayer {
            guards: Arc::new(Guards::new(self.hooks, self.stream)),
        }
    }
}
