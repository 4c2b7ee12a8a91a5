//! The routing tree: Portkey's config schema, read strictly.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use super::reader::{ConfigError, Obj, Result, index, join};
use super::{HeaderConfigLimits, Provider};

/// Where a routing tree came from: the server's file, or a client's `x-portkey-config`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The config file.
    File,
    /// A request header: it may only name providers the file defines, and is read under
    /// [`HeaderConfigLimits`] (see [`Node::parse_header`]).
    Header,
}

/// A strategy.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `targets[0]` only.
    Single,
    /// In order, moving on after a failure.
    Fallback,
    /// Weighted random choice.
    LoadBalance,
    /// By conditions on metadata, params and path.
    Conditional,
}

impl Mode {
    /// The config's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Fallback => "fallback",
            Mode::LoadBalance => "loadbalance",
            Mode::Conditional => "conditional",
        }
    }
}

/// How a `loadbalance` strategy chooses (Portcullis extensions: `strategy.balancer` and
/// `strategy.sticky`).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balancer {
    /// A weighted random choice per request (Portkey's behaviour; the default).
    Weighted,
    /// The same target for the same key: `metadata.KEY` or `header.NAME`.
    Sticky(StickyKey),
    /// The target with the fewest requests in flight.
    LeastInFlight,
    /// The target with the lowest latency estimate (peak EWMA).
    PeakEwma,
}

/// Where a sticky key comes from.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StickyKey {
    /// A metadata field, e.g. `_user`.
    Metadata(String),
    /// A request header.
    Header(String),
}

/// `retry`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySpec {
    /// Retries after the first try (0 to 10).
    pub attempts: u32,
    /// Statuses that are retried (default: 429, 500, 502, 503, 504).
    pub on_status_codes: Option<Vec<u16>>,
    /// Honour `Retry-After` and its relatives.
    pub use_retry_after_header: bool,
}

/// `circuit_breaker` (a Portcullis extension).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSpec {
    /// Open after this many failures in a row.
    pub consecutive_failures: Option<u32>,
    /// Open when this share of requests failed ...
    pub failure_rate: Option<f64>,
    /// ... over at least this many requests ...
    pub minimum_requests: Option<u32>,
    /// ... in this window.
    pub window: Option<Duration>,
    /// Stay open this long (unless the upstream said how long).
    pub cooldown: Option<Duration>,
}

/// A node of the tree.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Node {
    /// Its path, e.g. `config.targets[1]`.
    pub path: String,
    /// `name`, how conditions refer to it.
    pub name: Option<String>,
    /// `weight` in a load-balanced parent (default 1).
    pub weight: f64,
    /// Its own `override_params` (merged with its ancestors' when built).
    pub override_params: Map<String, Value>,
    /// Its own `retry` (a child's replaces its parent's).
    pub retry: Option<RetrySpec>,
    /// Its own `request_timeout` (inherited unless set).
    pub request_timeout: Option<Duration>,
    /// Its own `circuit_breaker` (inherited unless set; each leaf has its own state).
    pub breaker: Option<BreakerSpec>,
    /// Its own `cache` (a child's replaces its parent's).
    pub cache: Option<portcullis_cache::CacheSettings>,
    /// Its own guardrail hooks (a node that names any replaces those it would inherit).
    pub hooks: Option<portcullis_guard::HookSet>,
    /// A provider, or a strategy over targets.
    pub kind: NodeKind,
}

/// What a node is.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A provider.
    #[non_exhaustive]
    Leaf {
        /// The provider's name.
        provider: String,
    },
    /// A strategy over targets.
    #[non_exhaustive]
    Group {
        /// The strategy.
        mode: Mode,
        /// `strategy.on_status_codes`.
        on_status_codes: Option<Vec<u16>>,
        /// `strategy.conditions`, checked, compiled when built.
        conditions: Vec<Value>,
        /// `strategy.default`.
        default: Option<String>,
        /// How a `loadbalance` strategy chooses.
        balancer: Balancer,
        /// The targets.
        targets: Vec<Node>,
    },
}

/// The sections of a node that the next layers read: the cache, the guard's hooks (and
/// Portkey's guardrail shorthand for them) and header forwarding. Each is refused until its
/// layer lands, rather than ignored: a config that asks for a cache must not run without
/// one. A section drops in at [`Reading::sections`]: its reader there in place of its name
/// here, its field on [`Node`], its inheritance and compile step in `build`.
const PENDING_SECTIONS: [&str; 1] = ["forward_headers"];

/// The guard's sections of a node (Portkey's hook forms and the `guardrails` alias).
const HOOK_SECTIONS: [&str; 7] = [
    "before_request_hooks",
    "after_request_hooks",
    "input_guardrails",
    "output_guardrails",
    "input_mutators",
    "output_mutators",
    "guardrails",
];

/// The guard loader of trees read without one: no webhook origin allowed, no named
/// guardrail.
fn default_guards() -> &'static portcullis_guard::Loader {
    static DEFAULT: std::sync::OnceLock<portcullis_guard::Loader> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(portcullis_guard::Loader::new)
}

/// The feature sections of a node, read by [`Reading::sections`].
struct Sections {
    cache: Option<portcullis_cache::CacheSettings>,
    hooks: Option<portcullis_guard::HookSet>,
}

/// Keys that would point the gateway at a host or credentials of the config's choosing.
const CREDENTIALS: [&str; 3] = ["api_key", "base_url", "provider_key"];

const MAX_DEPTH: usize = 12;

/// The most retries a `retry` may ask for in the server's file.
const MAX_RETRY_ATTEMPTS: u32 = 10;

/// Parameters a target may not override: the client chooses the shape of its answer (a
/// stream or one JSON document), and a config that turned one into the other would hand it
/// an answer it cannot read.
const NOT_OVERRIDABLE: [&str; 2] = ["stream", "stream_options"];

const MODES: [Mode; 4] = [
    Mode::Single,
    Mode::Fallback,
    Mode::LoadBalance,
    Mode::Conditional,
];

impl Node {
    /// Reads a routing tree rooted at `path` whose leaves must name one of `providers`. A
    /// header config is read under the default [`HeaderConfigLimits`]; see
    /// [`Node::parse_header`] for others.
    pub fn parse(
        v: &Value,
        path: &str,
        providers: &BTreeMap<String, Provider>,
        origin: Origin,
    ) -> Result<Node> {
        Self::parse_guarded(v, path, providers, origin, default_guards())
    }

    /// [`Node::parse`], its guardrail hooks read by `guards` (the server's webhook allowlist
    /// and named guardrails).
    pub fn parse_guarded(
        v: &Value,
        path: &str,
        providers: &BTreeMap<String, Provider>,
        origin: Origin,
        guards: &portcullis_guard::Loader,
    ) -> Result<Node> {
        match origin {
            Origin::File => Reading::new(providers, None, guards).node(v, path, 0),
            Origin::Header => Self::parse_header_guarded(
                v,
                path,
                providers,
                &HeaderConfigLimits::default(),
                guards,
            ),
        }
    }

    /// Reads a client's routing tree (`x-portkey-config`) under `limits`: every count, depth
    /// and pattern length is checked as it is read, so a config past them is refused, with
    /// its path, before anything of it is compiled.
    pub fn parse_header(
        v: &Value,
        path: &str,
        providers: &BTreeMap<String, Provider>,
        limits: &HeaderConfigLimits,
    ) -> Result<Node> {
        Self::parse_header_guarded(v, path, providers, limits, default_guards())
    }

    /// [`Node::parse_header`], its guardrail hooks read by `guards`.
    pub fn parse_header_guarded(
        v: &Value,
        path: &str,
        providers: &BTreeMap<String, Provider>,
        limits: &HeaderConfigLimits,
        guards: &portcullis_guard::Loader,
    ) -> Result<Node> {
        Reading::new(providers, Some(limits), guards).node(v, path, 0)
    }

    /// The leaves' provider names, in order.
    pub fn providers(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |n| {
            if let NodeKind::Leaf { provider } = &n.kind {
                out.push(provider.as_str());
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Node)) {
        f(self);
        if let NodeKind::Group { targets, .. } = &self.kind {
            for t in targets {
                t.walk(f);
            }
        }
    }
}

/// One reading of a tree: where it comes from, the limits it is read under (a header config's)
/// and what it has used of them so far.
struct Reading<'a> {
    providers: &'a BTreeMap<String, Provider>,
    limits: Option<&'a HeaderConfigLimits>,
    guards: &'a portcullis_guard::Loader,
    nodes: usize,
    conditions: usize,
}

impl<'a> Reading<'a> {
    fn new(
        providers: &'a BTreeMap<String, Provider>,
        limits: Option<&'a HeaderConfigLimits>,
        guards: &'a portcullis_guard::Loader,
    ) -> Self {
        Self {
            providers,
            limits,
            guards,
            nodes: 0,
            conditions: 0,
        }
    }

    fn origin(&self) -> Origin {
        match self.limits {
            None => Origin::File,
            Some(_) => Origin::Header,
        }
    }

    /// Reads one node: its feature sections, the keys every node may have, then what it is.
    fn node(&mut self, v: &Value, path: &str, depth: usize) -> Result<Node> {
        self.count_node(path, depth)?;
        let mut obj = Obj::new(v, path)?;
        let Sections { cache, hooks } = self.sections(&mut obj, path)?;
        obj.refuse(
            &["custom_host"],
            "custom hosts are not allowed: name a provider the server defines with `virtual_key`",
        )?;
        obj.refuse(
            &CREDENTIALS,
            "credentials and hosts come from the server's providers: name one with `virtual_key`",
        )?;
        let name = match obj.str("name")? {
            Some(("", npath)) => return Err(ConfigError::new(npath, "must not be empty")),
            other => other.map(|(s, _)| s.to_owned()),
        };
        // Only a balancer reads weights, and its builder checks them (`must be >= 0`).
        let weight = obj.f64("weight")?.map_or(1.0, |(w, _)| w);
        let override_params = override_params(&mut obj)?;
        let max_retries = self
            .limits
            .map_or(MAX_RETRY_ATTEMPTS, |l| l.max_retry_attempts);
        let retry = obj.section("retry", |v, p| parse_retry(v, p, max_retries))?;
        let request_timeout = obj.positive_ms("request_timeout")?;
        let origin = self.origin();
        let breaker = obj.section("circuit_breaker", |v, p| match origin {
            Origin::File => parse_breaker(v, p),
            Origin::Header => Err(ConfigError::new(
                p,
                "circuit breakers keep state across requests: configure them in the server's file",
            )),
        })?;
        let kind = self.kind(&mut obj, path, depth)?;
        obj.finish("")?;
        Ok(Node {
            path: path.to_owned(),
            name,
            weight,
            override_params,
            retry,
            request_timeout,
            breaker,
            cache,
            hooks,
            kind,
        })
    }

    /// The extension point for a node's feature sections (see [`PENDING_SECTIONS`]): each
    /// layer's reader is called here as it lands. Until then, each is refused.
    fn sections(&mut self, obj: &mut Obj<'_>, path: &str) -> Result<Sections> {
        obj.refuse(
            &PENDING_SECTIONS,
            "not supported yet by this gateway (refused rather than ignored)",
        )?;
        let origin = self.origin();
        let cache = obj.section("cache", |v, p| {
            let settings = portcullis_cache::CacheSettings::from_json(v).map_err(|(at, why)| {
                ConfigError::new(if at.is_empty() { p.to_owned() } else { join(p, &at) }, why)
            })?;
            if origin == Origin::File && settings.max_age < Duration::from_secs(60) {
                // Portkey's open-source build reads max_age in milliseconds: 60000 meant a
                // minute there and means 16 hours here; 60 meant 60 ms there.
                tracing::warn!(
                    path = p,
                    max_age_s = settings.max_age.as_secs_f64(),
                    "cache max_age is in seconds here (Portkey's open-source build read milliseconds)"
                );
            }
            Ok(settings)
        })?;
        let mut hook_keys = Map::new();
        for key in HOOK_SECTIONS {
            if let Some((v, _)) = obj.get(key)? {
                hook_keys.insert(key.to_owned(), v.clone());
            }
        }
        let hooks = if hook_keys.is_empty() {
            None
        } else {
            let set = self
                .guards
                .hooks(&Value::Object(hook_keys))
                .map_err(|e| ConfigError::from_build(path, e))?;
            Some(set)
        };
        Ok(Sections { cache, hooks })
    }

    /// Counts one more node against the depth and, for a header config, the node limit.
    fn count_node(&mut self, path: &str, depth: usize) -> Result<()> {
        let max_depth = self.limits.map_or(MAX_DEPTH, |l| l.max_depth);
        if depth > max_depth {
            return Err(ConfigError::new(
                path,
                format!("targets nest deeper than {max_depth} levels"),
            ));
        }
        self.nodes += 1;
        match self.limits {
            Some(limits) if self.nodes > limits.max_nodes => Err(ConfigError::new(
                path,
                format!(
                    "a header config holds at most {} targets in all (strategies included)",
                    limits.max_nodes
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A leaf (`virtual_key` or `provider`) or a group (`strategy` and `targets`).
    fn kind(&mut self, obj: &mut Obj<'_>, path: &str, depth: usize) -> Result<NodeKind> {
        let provider = provider_name(obj)?;
        let strategy = obj.get("strategy")?;
        let targets = obj.array("targets")?;
        match (provider, strategy, targets) {
            (Some((provider, ppath)), None, None) => self.leaf(provider, &ppath),
            (Some((_, ppath)), _, _) => Err(ConfigError::new(
                ppath,
                "a target names a provider or has `strategy` and `targets`, not both",
            )),
            (None, _, None) => Err(ConfigError::new(
                path,
                "a target needs `virtual_key` (a provider) or `strategy` and `targets`",
            )),
            (None, strategy, Some((targets, tpath))) => {
                let targets = self.targets(targets, &tpath, depth)?;
                let (sv, spath) = strategy.ok_or_else(|| {
                    ConfigError::new(join(path, "strategy"), "missing (with `targets`)")
                })?;
                self.strategy(sv, &spath, targets)
            }
        }
    }

    fn leaf(&self, provider: &str, path: &str) -> Result<NodeKind> {
        if self.providers.contains_key(provider) {
            return Ok(NodeKind::Leaf {
                provider: provider.to_owned(),
            });
        }
        // A client sees only the name it sent; the operator, reading the file's error, sees
        // the names to choose from.
        let message = match self.origin() {
            Origin::Header => {
                format!("unknown provider `{provider}`: name a provider the server defines")
            }
            Origin::File => {
                let known = self
                    .providers
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("unknown provider `{provider}` (the server defines: {known})")
            }
        };
        Err(ConfigError::new(path, message))
    }

    fn targets(&mut self, targets: &[Value], path: &str, depth: usize) -> Result<Vec<Node>> {
        if targets.is_empty() {
            return Err(ConfigError::new(path, "must list at least one target"));
        }
        if let Some(limits) = self.limits
            && targets.len() > limits.max_targets
        {
            return Err(ConfigError::new(
                path,
                format!(
                    "lists {} targets; a strategy in a header config lists at most {}",
                    targets.len(),
                    limits.max_targets
                ),
            ));
        }
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| self.node(t, &index(path, i), depth + 1))
            .collect()
    }

    /// `strategy`, over its node's `targets`, read already.
    fn strategy(&mut self, v: &Value, path: &str, targets: Vec<Node>) -> Result<NodeKind> {
        let mut obj = Obj::new(v, path)?;
        let mode = mode(&mut obj)?;
        let on_status_codes = obj.status_codes("on_status_codes")?;
        let conditions = obj.array("conditions")?;
        let default = obj.str("default")?;
        let balancer_name = obj.str("balancer")?;
        let sticky = obj.str("sticky")?;
        obj.finish(" (expected mode, on_status_codes, conditions, default, balancer, sticky)")?;
        let balancer = balancer(mode, balancer_name, sticky)?;
        if on_status_codes.is_some() && mode != Mode::Fallback {
            return Err(only_for(join(path, "on_status_codes"), Mode::Fallback));
        }
        let targets_path = path
            .strip_suffix(".strategy")
            .map_or_else(|| "targets".to_owned(), |p| join(p, "targets"));
        if mode == Mode::Single && targets.len() > 1 {
            return Err(ConfigError::new(
                targets_path,
                format!("mode `single` uses one target; found {}", targets.len()),
            ));
        }
        let (conditions, default) = if mode == Mode::Conditional {
            let conditions = conditions.ok_or_else(|| {
                ConfigError::new(join(path, "conditions"), "missing (mode `conditional`)")
            })?;
            let default = default.ok_or_else(|| {
                ConfigError::new(
                    join(path, "default"),
                    "missing: a conditional strategy needs a default target",
                )
            })?;
            self.conditional(&targets, &targets_path, conditions, default.0)?
        } else if let Some(p) = conditions.map(|(_, p)| p).or(default.map(|(_, p)| p)) {
            return Err(only_for(p, Mode::Conditional));
        } else {
            (Vec::new(), None)
        };
        Ok(NodeKind::Group {
            mode,
            on_status_codes,
            conditions,
            default,
            balancer,
            targets,
        })
    }

    /// A conditional strategy's parts: every target named and each condition with a `then`.
    /// That the names differ and that the default and each `then` name a target is the
    /// router builder's check, when the tree is compiled.
    fn conditional(
        &mut self,
        targets: &[Node],
        targets_path: &str,
        (conditions, cpath): (&Vec<Value>, String),
        default: &str,
    ) -> Result<(Vec<Value>, Option<String>)> {
        if let Some(i) = targets.iter().position(|t| t.name.is_none()) {
            return Err(ConfigError::new(
                join(&index(targets_path, i), "name"),
                "missing: conditions refer to targets by name",
            ));
        }
        for (i, c) in conditions.iter().enumerate() {
            let cp = index(&cpath, i);
            self.condition(c, &cp)?;
            if !c.get("then").is_some_and(Value::is_string) {
                return Err(ConfigError::new(
                    join(&cp, "then"),
                    "missing: the name of a target",
                ));
            }
        }
        Ok((conditions.clone(), Some(default.to_owned())))
    }

    /// Counts the tests of one condition's query and checks its patterns' lengths, so that
    /// nothing of a header config is compiled past its limits.
    fn condition(&mut self, condition: &Value, path: &str) -> Result<()> {
        let Some(limits) = self.limits else {
            return Ok(());
        };
        // The condition counts one, so that many empty queries cost as much as full ones.
        self.count_condition(path, limits)?;
        let Some(query) = condition.get("query") else {
            return Ok(());
        };
        self.query(query, &join(path, "query"), limits)
    }

    fn count_condition(&mut self, path: &str, limits: &HeaderConfigLimits) -> Result<()> {
        self.conditions += 1;
        if self.conditions > limits.max_conditions {
            return Err(ConfigError::new(
                path,
                format!(
                    "a header config holds at most {} conditions and condition tests in all",
                    limits.max_conditions
                ),
            ));
        }
        Ok(())
    }

    fn query(&mut self, v: &Value, path: &str, limits: &HeaderConfigLimits) -> Result<()> {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    let kpath = join(path, key);
                    self.count_condition(&kpath, limits)?;
                    if key == "$regex"
                        && let Value::String(pattern) = value
                        && pattern.len() > limits.max_regex_len
                    {
                        return Err(ConfigError::new(
                            kpath,
                            format!(
                                "a pattern in a header config is at most {} bytes, this one is {}",
                                limits.max_regex_len,
                                pattern.len()
                            ),
                        ));
                    }
                    self.query(value, &kpath, limits)?;
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.query(item, &index(path, i), limits)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `override_params`, except what only the client may choose.
fn override_params(obj: &mut Obj<'_>) -> Result<Map<String, Value>> {
    let Some((params, path)) = obj.object("override_params")? else {
        return Ok(Map::new());
    };
    if let Some(key) = NOT_OVERRIDABLE.iter().find(|k| params.contains_key(**k)) {
        return Err(ConfigError::new(
            join(&path, key),
            "cannot be overridden: the client's request decides whether the answer streams",
        ));
    }
    Ok(params.clone())
}

/// A leaf names a provider with `virtual_key` (Portkey's) or `provider`.
fn provider_name<'v>(obj: &mut Obj<'v>) -> Result<Option<(&'v str, String)>> {
    match (obj.str("virtual_key")?, obj.str("provider")?) {
        (Some(_), Some((_, ppath))) => Err(ConfigError::new(
            ppath,
            "give `virtual_key` or `provider`, not both",
        )),
        (hit, None) | (None, hit) => Ok(hit),
    }
}

fn mode(obj: &mut Obj<'_>) -> Result<Mode> {
    const NAMES: &str = "single, fallback, loadbalance or conditional";
    let (name, path) = obj
        .str("mode")?
        .ok_or_else(|| ConfigError::new(obj.path_of("mode"), format!("missing ({NAMES})")))?;
    MODES
        .into_iter()
        .find(|m| m.as_str() == name)
        .ok_or_else(|| ConfigError::new(path, format!("unknown mode `{name}` ({NAMES})")))
}

fn only_for(path: String, mode: Mode) -> ConfigError {
    ConfigError::new(path, format!("only applies to mode `{}`", mode.as_str()))
}

/// `strategy.balancer` and `strategy.sticky`, which only a `loadbalance` strategy reads.
fn balancer(
    mode: Mode,
    name: Option<(&str, String)>,
    sticky: Option<(&str, String)>,
) -> Result<Balancer> {
    if mode != Mode::LoadBalance {
        return match sticky.or(name) {
            Some((_, path)) => Err(only_for(path, Mode::LoadBalance)),
            None => Ok(Balancer::Weighted),
        };
    }
    match (name, sticky) {
        (None | Some(("sticky", _)), Some((key, kpath))) => {
            sticky_key(key, &kpath).map(Balancer::Sticky)
        }
        (Some((name, _)), Some((_, kpath))) => Err(ConfigError::new(
            kpath,
            format!("does not apply to balancer `{name}`"),
        )),
        (None | Some(("weighted", _)), None) => Ok(Balancer::Weighted),
        (Some(("least_in_flight", _)), None) => Ok(Balancer::LeastInFlight),
        (Some(("peak_ewma", _)), None) => Ok(Balancer::PeakEwma),
        (Some(("sticky", bpath)), None) => Err(ConfigError::new(
            bpath,
            "`sticky` needs `strategy.sticky` (metadata.KEY or header.NAME)",
        )),
        (Some((other, bpath)), None) => Err(ConfigError::new(
            bpath,
            format!("unknown balancer `{other}` (weighted, sticky, least_in_flight or peak_ewma)"),
        )),
    }
}

/// `metadata.KEY` or `header.NAME`.
fn sticky_key(key: &str, path: &str) -> Result<StickyKey> {
    let key = if let Some(field) = key.strip_prefix("metadata.") {
        StickyKey::Metadata(field.to_owned())
    } else if let Some(name) = key.strip_prefix("header.") {
        if http::HeaderName::try_from(name).is_err() {
            return Err(ConfigError::new(
                path,
                format!("`{name}` is not a header name"),
            ));
        }
        StickyKey::Header(name.to_ascii_lowercase())
    } else {
        return Err(ConfigError::new(
            path,
            "must be `metadata.KEY` or `header.NAME`",
        ));
    };
    match &key {
        StickyKey::Metadata(k) | StickyKey::Header(k) if k.is_empty() => {
            Err(ConfigError::new(path, "names no key"))
        }
        _ => Ok(key),
    }
}

/// Reads a `retry` object sent on its own (langroid's `x-portkey-retry` header) under a header
/// config's limits.
pub(crate) fn parse_header_retry(
    v: &Value,
    path: &str,
    limits: &HeaderConfigLimits,
) -> Result<RetrySpec> {
    parse_retry(v, path, limits.max_retry_attempts)
}

fn parse_retry(v: &Value, path: &str, max_attempts: u32) -> Result<RetrySpec> {
    let mut obj = Obj::new(v, path)?;
    let attempts = obj.range("attempts", 0..=u64::from(max_attempts))?;
    let on_status_codes = obj.status_codes("on_status_codes")?;
    // Portkey documents both spellings.
    let single = obj.bool("use_retry_after_header")?;
    let plural = obj.bool("use_retry_after_headers")?;
    obj.finish(" (expected attempts, on_status_codes, use_retry_after_header)")?;
    Ok(RetrySpec {
        attempts: attempts.map_or(0, |n| n as u32),
        on_status_codes,
        use_retry_after_header: single.or(plural).is_some_and(|(b, _)| b),
    })
}

fn parse_breaker(v: &Value, path: &str) -> Result<BreakerSpec> {
    let mut obj = Obj::new(v, path)?;
    let count = |obj: &mut Obj<'_>, key: &str| {
        let n = obj.u64_in(key, 1..=1_000_000, |_| "must be 1 to 1000000".into())?;
        Ok::<_, ConfigError>(n.map(|n| n as u32))
    };
    let spec = BreakerSpec {
        consecutive_failures: count(&mut obj, "consecutive_failures")?,
        failure_rate: match obj.f64("failure_rate")? {
            None => None,
            Some((r, _)) if r > 0.0 && r <= 1.0 => Some(r),
            Some((_, p)) => return Err(ConfigError::new(p, "must be > 0 and <= 1")),
        },
        minimum_requests: count(&mut obj, "minimum_requests")?,
        window: obj.positive_ms("window_ms")?,
        cooldown: obj.positive_ms("cooldown_ms")?,
    };
    obj.finish(
        " (expected consecutive_failures, failure_rate, minimum_requests, window_ms, cooldown_ms)",
    )?;
    Ok(spec)
}

impl fmt::Display for Node {
    /// The resolved tree, one target a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn line(n: &Node, depth: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let pad = "  ".repeat(depth);
            let label = n
                .name
                .as_deref()
                .map(|s| format!(" \"{s}\""))
                .unwrap_or_default();
            match &n.kind {
                NodeKind::Leaf { provider } => {
                    write!(f, "{pad}{}{label}: provider {provider}", n.path)?
                }
                NodeKind::Group { mode, .. } => {
                    write!(f, "{pad}{}{label}: {}", n.path, mode.as_str())?
                }
            }
            if n.weight != 1.0 {
                write!(f, ", weight {}", n.weight)?;
            }
            if let Some(r) = &n.retry {
                write!(f, ", retry {}", r.attempts)?;
            }
            if let Some(t) = n.request_timeout {
                write!(f, ", timeout {} ms", t.as_millis())?;
            }
            if let Some(c) = &n.cache {
                let mode = match c.mode {
                    portcullis_cache::Mode::Simple => "simple",
                    portcullis_cache::Mode::Semantic => "semantic",
                };
                write!(f, ", cache {mode} {} s", c.max_age.as_secs_f64())?;
            }
            if !n.override_params.is_empty() {
                write!(
                    f,
                    ", override_params {}",
                    Value::Object(n.override_params.clone())
                )?;
            }
            writeln!(f)?;
            if let NodeKind::Group { targets, .. } = &n.kind {
                for t in targets {
                    line(t, depth + 1, f)?;
                }
            }
            Ok(())
        }
        line(self, 0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MockSpec, ProviderKind};
    use serde_json::json;

    fn providers() -> BTreeMap<String, Provider> {
        ["a", "b"]
            .into_iter()
            .map(|n| {
                (
                    n.to_owned(),
                    Provider {
                        name: n.to_owned(),
                        kind: ProviderKind::Mock(MockSpec::default()),
                        models: vec![],
                        limits: None,
                        prices: None,
                    },
                )
            })
            .collect()
    }

    fn parse(v: Value) -> Result<Node> {
        Node::parse(&v, "config", &providers(), Origin::File)
    }

    fn err(v: Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    /// The file's tree `v` over mock providers `a` and `b`, parsed and compiled.
    fn compiled(v: Value) -> std::result::Result<crate::build::Compiled, ConfigError> {
        let file = json!({
            "providers": {"a": {"provider": "mock"}, "b": {"provider": "mock"}},
            "config": v,
        });
        let config = crate::config::Config::from_value(&file, &|_| None)?;
        crate::build::Compiled::new(&config)
    }

    #[test]
    fn reads_nested_trees_in_both_spellings() {
        let n = parse(json!({
            "strategy": {"mode": "fallback", "onStatusCodes": [429, 503]},
            "retry": {"attempts": 3, "useRetryAfterHeaders": true},
            "overrideParams": {"temperature": 0},
            "targets": [
                {"virtual_key": "a", "request_timeout": 5000},
                {"strategy": {"mode": "loadbalance"}, "targets": [
                    {"provider": "a", "weight": 0.7}, {"virtualKey": "b", "weight": 0.3}
                ]}
            ]
        }))
        .unwrap();
        assert_eq!(n.retry.as_ref().unwrap().attempts, 3);
        assert!(n.retry.as_ref().unwrap().use_retry_after_header);
        let NodeKind::Group {
            mode,
            on_status_codes,
            targets,
            ..
        } = &n.kind
        else {
            panic!()
        };
        assert_eq!(*mode, Mode::Fallback);
        assert_eq!(on_status_codes.as_deref(), Some(&[429, 503][..]));
        assert_eq!(targets[1].path, "config.targets[1]");
        assert_eq!(n.providers(), ["a", "a", "b"]);
        let shown = n.to_string();
        assert!(
            shown.contains("config.targets[1].targets[0]: provider a, weight 0.7"),
            "{shown}"
        );
    }

    #[test]
    fn errors_name_their_path() {
        let lb = |w: Value| json!({"strategy": {"mode": "loadbalance"}, "targets": [{"virtual_key": "a"}, {"virtual_key": "b", "weight": w}]});
        assert_eq!(
            err(lb(json!("x"))),
            "config.targets[1].weight: must be a number, got a string"
        );
        assert_eq!(
            err(json!({"virtual_key": "zzz"})),
            "config.virtual_key: unknown provider `zzz` (the server defines: a, b)"
        );
        assert!(
            err(json!({"virtual_key": "a", "custom_host": "http://evil"}))
                .starts_with("config.custom_host: custom hosts are not allowed")
        );
        assert!(
            err(json!({"virtual_key": "a", "api_key": "sk"}))
                .starts_with("config.api_key: credentials")
        );
        assert!(
            err(json!({"virtual_key": "a", "cache": {"mode": "fuzzy"}}))
                .starts_with("config.cache.mode: expected \"simple\" or \"semantic\"")
        );
        assert!(
            err(json!({"virtual_key": "a", "retry": {"attempts": 11}}))
                .starts_with("config.retry.attempts: must be 0 to 10")
        );
        assert!(
            err(json!({"virtual_key": "a", "retry": {"attempts": 1, "on_status_codes": [999]}}))
                .starts_with("config.retry.on_status_codes[0]")
        );
        assert!(
            err(json!({"virtual_key": "a", "colour": 1})).starts_with("config.colour: unknown key")
        );
        assert!(
            err(json!({"strategy": {"mode": "race"}, "targets": [{"virtual_key": "a"}]}))
                .starts_with("config.strategy.mode: unknown mode `race`")
        );
        assert!(
            err(json!({"strategy": {"mode": "fallback"}, "targets": []}))
                .starts_with("config.targets: must list")
        );
        assert!(
            err(json!({"targets": [{"virtual_key": "a"}]})).starts_with("config.strategy: missing")
        );
        assert!(
            err(json!({"strategy": {"mode": "fallback"}})).starts_with("config: a target needs")
        );
        assert!(err(json!({"strategy": {"mode": "single"}, "targets": [{"virtual_key": "a"}, {"virtual_key": "b"}]})).starts_with("config.targets: mode `single` uses one target"));
        assert!(err(json!({"strategy": {"mode": "loadbalance", "on_status_codes": [500]}, "targets": [{"virtual_key": "a"}]})).starts_with("config.strategy.on_status_codes: only applies"));
        assert!(err(json!({"strategy": {"mode": "loadbalance", "balancer": "round_robin"}, "targets": [{"virtual_key": "a"}]})).starts_with("config.strategy.balancer: unknown balancer"));
        assert!(err(json!({"strategy": {"mode": "loadbalance", "sticky": "user"}, "targets": [{"virtual_key": "a"}]})).starts_with("config.strategy.sticky: must be"));
        assert!(err(json!({"strategy": {"mode": "fallback", "sticky": "metadata._user"}, "targets": [{"virtual_key": "a"}]})).starts_with("config.strategy.sticky: only applies"));
        let sticky = parse(json!({"strategy": {"mode": "loadbalance", "sticky": "metadata._user"}, "targets": [{"virtual_key": "a"}]})).unwrap();
        assert!(
            matches!(sticky.kind, NodeKind::Group { balancer: Balancer::Sticky(StickyKey::Metadata(ref k)), .. } if k == "_user")
        );
    }

    #[test]
    fn conditional_needs_names_default_and_known_targets() {
        let base = |conditions: Value, default: Value| {
            json!({
                "strategy": {"mode": "conditional", "conditions": conditions, "default": default},
                "targets": [{"name": "paid", "virtual_key": "a"}, {"name": "free", "virtual_key": "b"}]
            })
        };
        let ok = base(
            json!([{"query": {"metadata.user_plan": {"$eq": "paid"}}, "then": "paid"}]),
            json!("free"),
        );
        assert!(parse(ok.clone()).is_ok());
        assert!(compiled(ok).is_ok());
        // Names are resolved by the router's builder, when the tree is compiled.
        let compile_err = |v: Value| compiled(v).unwrap_err().to_string();
        assert_eq!(
            compile_err(base(json!([{"query": {}, "then": "gold"}]), json!("free"))),
            "config.strategy.conditions[0].then: no target is named `gold`"
        );
        assert_eq!(
            compile_err(base(json!([]), json!("nope"))),
            "config.strategy.default: no target is named `nope`"
        );
        assert_eq!(
            compile_err(json!({
                "strategy": {"mode": "conditional", "conditions": [], "default": "x"},
                "targets": [{"name": "x", "virtual_key": "a"}, {"name": "x", "virtual_key": "b"}]
            })),
            "config.targets[1].name: `x` names two targets"
        );
        let nested = json!({"strategy": {"mode": "fallback"}, "targets": [
            base(json!([{"query": {}, "then": "gold"}]), json!("free"))
        ]});
        assert_eq!(
            compile_err(nested),
            "config.targets[0].strategy.conditions[0].then: no target is named `gold`"
        );
        assert!(err(json!({"strategy": {"mode": "conditional", "conditions": []}, "targets": [{"name": "x", "virtual_key": "a"}]}))
            .starts_with("config.strategy.default: missing"));
        assert!(err(json!({"strategy": {"mode": "conditional", "conditions": [], "default": "x"}, "targets": [{"virtual_key": "a"}]}))
            .starts_with("config.targets[0].name: missing"));
    }

    fn header(v: Value, limits: &HeaderConfigLimits) -> String {
        Node::parse_header(&v, "x-portkey-config", &providers(), limits)
            .unwrap_err()
            .to_string()
    }

    fn fallback(n: usize) -> Value {
        json!({"strategy": {"mode": "fallback"}, "targets": vec![json!({"virtual_key": "a"}); n]})
    }

    #[test]
    fn header_configs_are_read_within_their_limits() {
        let limits = HeaderConfigLimits::default();
        assert_eq!(
            header(fallback(330), &limits),
            "x-portkey-config.targets: lists 330 targets; a strategy in a header config lists at most 32"
        );
        assert!(Node::parse_header(&fallback(32), "h", &providers(), &limits).is_ok());
        // The file is the operator's: its own, wider bounds.
        assert!(parse(fallback(330)).is_ok());

        let mut nested = json!({"virtual_key": "a"});
        for _ in 0..5 {
            nested = json!({"strategy": {"mode": "fallback"}, "targets": [nested]});
        }
        assert_eq!(
            header(nested.clone(), &limits),
            "x-portkey-config.targets[0].targets[0].targets[0].targets[0].targets[0]: targets nest deeper than 4 levels"
        );
        assert!(parse(nested).is_ok());

        let wide = HeaderConfigLimits {
            max_nodes: 10,
            ..HeaderConfigLimits::default()
        };
        let two_levels =
            json!({"strategy": {"mode": "fallback"}, "targets": [fallback(5), fallback(5)]});
        assert_eq!(
            header(two_levels, &wide),
            "x-portkey-config.targets[1].targets[2]: a header config holds at most 10 targets in all (strategies included)"
        );

        assert_eq!(
            header(
                json!({"virtual_key": "a", "retry": {"attempts": 10}}),
                &limits
            ),
            "x-portkey-config.retry.attempts: must be 0 to 5, got 10"
        );
        assert!(parse(json!({"virtual_key": "a", "retry": {"attempts": 10}})).is_ok());
    }

    #[test]
    fn header_conditions_are_counted_and_patterns_measured_before_compiling() {
        let conditional = |conditions: Vec<Value>| {
            json!({
                "strategy": {"mode": "conditional", "conditions": conditions, "default": "x"},
                "targets": [{"name": "x", "virtual_key": "a"}]
            })
        };
        let limits = HeaderConfigLimits::default();
        let bomb = vec![json!({"query": {"params.user": {"$regex": "\\w{60}"}}, "then": "x"}); 268];
        // Three per condition: the condition, its field and its operator.
        assert_eq!(
            header(conditional(bomb), &limits),
            "x-portkey-config.strategy.conditions[21].query.params.user: a header config holds at most 64 conditions and condition tests in all"
        );
        let long =
            vec![json!({"query": {"params.user": {"$regex": "a".repeat(257)}}, "then": "x"})];
        assert_eq!(
            header(conditional(long), &limits),
            "x-portkey-config.strategy.conditions[0].query.params.user.$regex: a pattern in a header config is at most 256 bytes, this one is 257"
        );
        let empty = vec![json!({"query": {}, "then": "x"}); 65];
        assert!(
            header(conditional(empty), &limits)
                .starts_with("x-portkey-config.strategy.conditions[64]: ")
        );
        let fine = vec![json!({"query": {"params.model": {"$regex": "^gpt"}}, "then": "x"}); 21];
        assert!(Node::parse_header(&conditional(fine), "h", &providers(), &limits).is_ok());
    }

    #[test]
    fn an_unknown_provider_in_a_header_names_only_itself() {
        let msg = header(
            json!({"virtual_key": "zzz"}),
            &HeaderConfigLimits::default(),
        );
        assert_eq!(
            msg,
            "x-portkey-config.virtual_key: unknown provider `zzz`: name a provider the server defines"
        );
        assert!(!msg.contains("a, b"));
    }

    #[test]
    fn stream_cannot_be_overridden() {
        for key in ["stream", "stream_options"] {
            let v = json!({"virtual_key": "a", "override_params": {key: true}});
            let expected = format!(
                "config.override_params.{key}: cannot be overridden: the client's request decides whether the answer streams"
            );
            assert_eq!(err(v.clone()), expected);
            assert!(
                header(v, &HeaderConfigLimits::default())
                    .ends_with("decides whether the answer streams")
            );
        }
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = json!({"virtual_key": "a"});
        for _ in 0..14 {
            v = json!({"strategy": {"mode": "fallback"}, "targets": [v]});
        }
        assert!(err(v).contains("nest deeper"));
    }
}
