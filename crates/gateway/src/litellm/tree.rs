//! The routing tree: a `conditional` on `params.model` over one target per group, each a
//! balancer over the group's deployments, wrapped in its fallbacks.

use serde_json::{Map, Value, json};

use super::models::{Deployment, Group, ModelList};
use super::read::{Ctx, Result};
use super::settings::{Rule, Settings, Strategy};
use crate::config::ConfigError;

/// The statuses LiteLLM retries (408, 409, 429 and 5xx), as the retry layer lists them.
const RETRY_ON: [u16; 7] = [408, 409, 429, 500, 502, 503, 504];

/// A context-window or content-policy error is a 400; here every 400 of the group moves on
/// to those fallbacks, and what the general fallbacks take moves on too.
const TYPED_FALLBACK_ON: [u16; 8] = [400, 408, 409, 429, 500, 502, 503, 504];

/// LiteLLM's retries when nothing sets them: the OpenAI SDK's 2.
const DEFAULT_RETRIES: u64 = 2;

/// The most retries a `retry` may ask for.
const MAX_RETRIES: u64 = 10;

/// The provider answering requests for a model no group serves.
pub(super) const UNKNOWN_MODEL_PROVIDER: &str = "litellm-unknown-model";

/// Builds the routing tree and returns it with the `server.max_attempts` it may need.
pub(super) fn assemble(ctx: &mut Ctx<'_>, s: &Settings, m: &ModelList) -> Result<(Value, u64)> {
    check_rules(ctx, s, m)?;
    let retries = match &s.num_retries {
        Some((n, path)) if *n > MAX_RETRIES => {
            ctx.warn(
                path,
                format!("at most {MAX_RETRIES} retries here: {n} becomes {MAX_RETRIES}"),
            );
            MAX_RETRIES
        }
        Some((n, _)) => *n,
        None => DEFAULT_RETRIES,
    };
    if s.cooldown.allowed_fails.is_some() && !s.cooldown.disabled {
        ctx.warn(
            "router_settings.allowed_fails",
            "a deployment cools down after `allowed_fails` + 1 failures in a row (LiteLLM counts them within a minute), then is skipped for `cooldown_time`",
        );
    }
    if m.groups.iter().any(|g| g.members.len() > 1) && retries > 0 {
        ctx.warn(
            "router_settings.num_retries",
            "a retry goes to the same deployment here (LiteLLM picks again); a deployment that keeps failing cools down and is skipped",
        );
    }
    let mut warned_typed = false;
    let mut targets = Vec::new();
    let mut conditions = Vec::new();
    let mut patterns = Vec::new();
    let mut default = None;
    let mut most_hops = 1;
    for g in &m.groups {
        let (node, hops) = routed(ctx, s, m, g, &mut warned_typed)?;
        most_hops = most_hops.max(hops);
        targets.push(named(node, &g.name));
        if g.name == "*" {
            default = Some(g.name.clone());
        } else if let Some(p) = &g.pattern {
            patterns.push(json!({"query": {"params.model": {"$regex": p}}, "then": g.name}));
        } else {
            conditions.push(json!({"query": {"params.model": {"$eq": g.name}}, "then": g.name}));
        }
    }
    for (alias, group, path) in &s.aliases {
        if m.group(alias).is_some() {
            ctx.warn(
                path,
                format!("`{alias}` is a model group itself: the group wins"),
            );
            continue;
        }
        conditions.push(json!({"query": {"params.model": {"$eq": alias}}, "then": group}));
    }
    // Exact names first, then patterns in file order, as LiteLLM matches them.
    conditions.extend(patterns);
    let default = match default {
        Some(d) => d,
        None => {
            let name = free_name("unknown-model", m);
            targets.push(json!({"name": name, "virtual_key": UNKNOWN_MODEL_PROVIDER}));
            name
        }
    };
    let mut root = json!({
        "strategy": {"mode": "conditional", "conditions": conditions, "default": default},
        "retry": {"attempts": retries, "on_status_codes": RETRY_ON, "use_retry_after_header": true},
        "targets": targets,
    });
    if let Some(ms) = s.timeout_ms {
        root["request_timeout"] = json!(ms);
    }
    if let Some(cache) = &s.cache {
        root["cache"] = cache.clone();
    }
    let most_retries = m
        .deployments
        .iter()
        .filter_map(|d| d.retries.as_ref().map(|(n, _)| *n))
        .fold(retries, u64::max)
        .min(MAX_RETRIES);
    // Each `order` level of a group is one more hop.
    let most_levels = m
        .groups
        .iter()
        .map(|g| {
            let mut levels: Vec<Option<u64>> =
                g.members.iter().map(|&i| m.deployments[i].order).collect();
            levels.sort_unstable();
            levels.dedup();
            levels.len() as u64
        })
        .max()
        .unwrap_or(1);
    Ok((root, most_hops * most_levels * (most_retries + 1)))
}

/// Every group a rule or alias names exists.
fn check_rules(ctx: &mut Ctx<'_>, s: &Settings, m: &ModelList) -> Result<()> {
    let f = &s.fallbacks;
    let rules = f
        .general
        .iter()
        .chain(&f.context_window)
        .chain(&f.content_policy)
        .chain(f.default.as_ref());
    for rule in rules {
        if rule.group != "*" && m.group(&rule.group).is_none() {
            ctx.warn(
                &rule.path,
                format!("no model group is named `{}`: never used", rule.group),
            );
        }
        for to in &rule.to {
            if m.group(to).is_none() {
                return Err(ConfigError::new(
                    &rule.path,
                    format!("falls back to `{to}`, which no deployment of model_list serves"),
                ));
            }
        }
    }
    for (_, group, path) in &s.aliases {
        if m.group(group).is_none() {
            return Err(ConfigError::new(
                path,
                format!("`{group}` is not a model group of model_list"),
            ));
        }
    }
    Ok(())
}

/// A group's target: its balancer within its fallbacks; and the most groups one request
/// may reach through it.
fn routed(
    ctx: &mut Ctx<'_>,
    s: &Settings,
    m: &ModelList,
    g: &Group,
    warned_typed: &mut bool,
) -> Result<(Value, u64)> {
    let f = &s.fallbacks;
    let rule = |rules: &[Rule]| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.group == g.name)
            .flat_map(|r| r.to.iter().cloned())
            .collect()
    };
    let mut general = rule(&f.general);
    if general.is_empty()
        && let Some(d) = &f.default
    {
        general = d.to.iter().filter(|to| **to != g.name).cloned().collect();
    }
    let mut typed = rule(&f.context_window);
    for to in rule(&f.content_policy) {
        if !typed.contains(&to) {
            typed.push(to);
        }
    }
    typed.retain(|to| *to != g.name);
    // A group both lists name is reached once, through the typed list (which moves on
    // after what the general one does too).
    general.retain(|to| *to != g.name && !typed.contains(to));
    let budget = f.max;
    typed.truncate(budget);
    general.truncate(budget.saturating_sub(typed.len()));

    let mut node = balanced(ctx, s, m, g)?;
    let mut hops = 1;
    if !typed.is_empty() {
        if !*warned_typed {
            let path = f
                .context_window
                .iter()
                .chain(&f.content_policy)
                .find(|r| r.group == g.name)
                .map_or_else(String::new, |r| r.path.clone());
            ctx.warn(
                path,
                "a context-window or content-policy error is told apart by its message in LiteLLM; here every 400 of the group moves on to these fallbacks",
            );
            *warned_typed = true;
        }
        let mut chain = vec![node];
        for to in &typed {
            chain.push(balanced(ctx, s, m, m.group(to).expect("checked"))?);
        }
        hops += typed.len() as u64;
        node = json!({"strategy": {"mode": "fallback", "on_status_codes": TYPED_FALLBACK_ON}, "targets": chain});
    }
    if !general.is_empty() {
        let mut chain = vec![node];
        for to in &general {
            chain.push(balanced(ctx, s, m, m.group(to).expect("checked"))?);
        }
        hops += general.len() as u64;
        node = json!({"strategy": {"mode": "fallback"}, "targets": chain});
    }
    Ok((node, hops))
}

/// A group's deployments: one leaf, or a balancer; with `order`, a fallback over levels.
fn balanced(ctx: &mut Ctx<'_>, s: &Settings, m: &ModelList, g: &Group) -> Result<Value> {
    let members: Vec<&Deployment> = g.members.iter().map(|&i| &m.deployments[i]).collect();
    if members.iter().any(|d| d.order.is_some()) {
        let mut levels: Vec<Option<u64>> = members.iter().map(|d| d.order).collect();
        levels.sort_by_key(|o| o.unwrap_or(u64::MAX));
        levels.dedup();
        let mut chain = Vec::new();
        for level in levels {
            let at: Vec<&Deployment> = members
                .iter()
                .copied()
                .filter(|d| d.order == level)
                .collect();
            chain.push(balance(ctx, s, g, &at, members.len())?);
        }
        if chain.len() == 1 {
            return Ok(chain.pop().expect("one level"));
        }
        ctx.warn(
            format!("{}.litellm_params.order", members[0].path),
            format!(
                "group `{}`: the lowest `order` is tried first and the next level when it fails or cools down (LiteLLM moves on only when the whole level cools down)",
                g.name
            ),
        );
        return Ok(json!({"strategy": {"mode": "fallback"}, "targets": chain}));
    }
    balance(ctx, s, g, &members, members.len())
}

fn balance(
    ctx: &mut Ctx<'_>,
    s: &Settings,
    g: &Group,
    members: &[&Deployment],
    group_size: usize,
) -> Result<Value> {
    let leaves: Vec<Value> = members.iter().map(|d| leaf(s, d, group_size)).collect();
    if leaves.len() == 1 {
        return Ok(leaves.into_iter().next().expect("one leaf"));
    }
    let weights = weights(ctx, s.strategy, g, members)?;
    let targets: Vec<Value> = leaves
        .into_iter()
        .zip(
            weights
                .unwrap_or_default()
                .into_iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .map(|(mut leaf, w)| {
            if let Some(w) = w {
                leaf["weight"] = json!(w);
            }
            leaf
        })
        .collect();
    let mut strategy = json!({"mode": "loadbalance"});
    match s.strategy {
        Strategy::LeastBusy => strategy["balancer"] = json!("least_in_flight"),
        Strategy::Latency => strategy["balancer"] = json!("peak_ewma"),
        Strategy::Shuffle | Strategy::Usage => {}
    }
    Ok(json!({"strategy": strategy, "targets": targets}))
}

/// The weights of a random pick, as LiteLLM's shuffle chooses them: by what the first
/// deployment sets (`weight`, else `rpm`, else `tpm`), a deployment without it counting 0;
/// `None`: equal.
fn weights(
    ctx: &mut Ctx<'_>,
    strategy: Strategy,
    g: &Group,
    members: &[&Deployment],
) -> Result<Option<Vec<f64>>> {
    type Pick = fn(&Deployment) -> Option<f64>;
    let sources: &[(&str, Pick)] = match strategy {
        Strategy::Shuffle => &[
            ("weight", |d| d.weight),
            ("rpm", |d| d.rpm.map(|n| n as f64)),
            ("tpm", |d| d.tpm.map(|n| n as f64)),
        ],
        Strategy::Usage => &[("tpm", |d| d.tpm.map(|n| n as f64))],
        Strategy::LeastBusy | Strategy::Latency => return Ok(None),
    };
    for (key, pick) in sources {
        if pick(members[0]).is_some() {
            let weights: Vec<f64> = members.iter().map(|d| pick(d).unwrap_or(0.0)).collect();
            if weights.iter().all(|w| *w == 0.0) {
                return Err(ConfigError::new(
                    format!("{}.litellm_params.{key}", members[0].path),
                    format!(
                        "every deployment of `{}` weighs 0: none could be chosen",
                        g.name
                    ),
                ));
            }
            if let Some(d) = members.iter().find(|d| pick(d).is_none()) {
                ctx.warn(
                    format!("{}.litellm_params", d.path),
                    format!("no `{key}` while the group's first deployment has one: it weighs 0, as in LiteLLM"),
                );
            }
            return Ok(Some(weights));
        }
    }
    if strategy == Strategy::Shuffle && members.iter().any(|d| d.weight.is_some()) {
        ctx.warn(
            format!("{}.litellm_params", members[0].path),
            format!("group `{}`: LiteLLM reads weights only when the first deployment has one, so it picks evenly, and so does the import", g.name),
        );
    }
    Ok(None)
}

fn leaf(s: &Settings, d: &Deployment, group_size: usize) -> Value {
    let mut params = d.params.clone();
    if let Some(model) = &d.model {
        params.insert("model".to_owned(), json!(model));
    }
    let mut leaf = Map::new();
    leaf.insert("virtual_key".to_owned(), json!(d.provider));
    if !params.is_empty() {
        leaf.insert("override_params".to_owned(), Value::Object(params));
    }
    if let Some(ms) = d.timeout_ms {
        leaf.insert("request_timeout".to_owned(), json!(ms));
    }
    if let Some((n, _)) = &d.retries {
        leaf.insert(
            "retry".to_owned(),
            json!({"attempts": (*n).min(MAX_RETRIES), "on_status_codes": RETRY_ON, "use_retry_after_header": true}),
        );
    }
    if let Some(breaker) = breaker(s, d, group_size) {
        leaf.insert("circuit_breaker".to_owned(), breaker);
    }
    Value::Object(leaf)
}

/// A deployment's cooldown as a circuit breaker.
fn breaker(s: &Settings, d: &Deployment, group_size: usize) -> Option<Value> {
    if s.cooldown.disabled || d.cooldown_ms == Some(0) {
        return None;
    }
    let cooldown_ms = d.cooldown_ms.unwrap_or(s.cooldown.cooldown_ms);
    match s.cooldown.allowed_fails {
        Some(n) => Some(
            json!({"consecutive_failures": (n + 1).min(1_000_000), "cooldown_ms": cooldown_ms}),
        ),
        // LiteLLM's default rule: more than half of at least 5 requests in a minute failed, in
        // a group with somewhere else to go.
        None if group_size > 1 => Some(json!({
            "failure_rate": 0.5, "minimum_requests": 5, "window_ms": 60_000, "cooldown_ms": cooldown_ms
        })),
        None => None,
    }
}

fn named(mut node: Value, name: &str) -> Value {
    node["name"] = json!(name);
    node
}

fn free_name(base: &str, m: &ModelList) -> String {
    (0..)
        .map(|n| {
            if n == 0 {
                base.to_owned()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|name| m.group(name).is_none())
        .expect("a free name")
}
