//! `router_settings`, `litellm_settings` and `general_settings`: strategy, retries, timeouts,
//! cooldowns, fallbacks, aliases, the cache, the proxy budget and the master key.

use serde_json::{Map, Value, json};

use super::read::{Ctx, Result, Section, Unknown, index, join, type_name};
use crate::config::ConfigError;

/// How a group picks a deployment (`router_settings.routing_strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Strategy {
    /// `simple-shuffle`: a weighted random pick.
    Shuffle,
    /// `least-busy`: fewest requests in flight.
    LeastBusy,
    /// `latency-based-routing`: lowest latency (peak EWMA here).
    Latency,
    /// `usage-based-routing(-v2)`: weighted by `tpm`, each deployment held to its limits.
    Usage,
}

/// `{group: [fallback groups]}`, one entry of a fallback list.
#[derive(Clone, Debug)]
pub(super) struct Rule {
    pub(super) group: String,
    pub(super) to: Vec<String>,
    pub(super) path: String,
}

/// The fallback lists, `router_settings` winning over `litellm_settings` list by list.
#[derive(Debug, Default)]
pub(super) struct Fallbacks {
    pub(super) general: Vec<Rule>,
    pub(super) context_window: Vec<Rule>,
    pub(super) content_policy: Vec<Rule>,
    /// `default_fallbacks` (or a `*` entry): for groups without a list of their own.
    pub(super) default: Option<Rule>,
    /// `max_fallbacks` (default 5).
    pub(super) max: usize,
}

/// Cooldowns, as circuit breakers on each deployment.
#[derive(Debug)]
pub(super) struct Cooldown {
    /// `allowed_fails`: cool down after more failures than this.
    pub(super) allowed_fails: Option<u64>,
    /// `cooldown_time` in milliseconds (default 5 s; 0 also means 5 s, as LiteLLM reads it).
    pub(super) cooldown_ms: u64,
    /// `disable_cooldowns`.
    pub(super) disabled: bool,
}

/// Everything read from the three settings sections.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) strategy: Strategy,
    pub(super) num_retries: Option<(u64, String)>,
    /// Per attempt, in milliseconds.
    pub(super) timeout_ms: Option<u64>,
    pub(super) cooldown: Cooldown,
    pub(super) fallbacks: Fallbacks,
    /// `model_group_alias`: (alias, group, path).
    pub(super) aliases: Vec<(String, String, String)>,
    /// `enable_pre_call_checks`: `rpm` / `tpm` are enforced.
    pub(super) pre_call_checks: bool,
    /// The root node's `cache`.
    pub(super) cache: Option<Value>,
    /// `server` keys: `cache`, `limits`, `api_keys`.
    pub(super) server: Map<String, Value>,
}

const LOGGING: &str = "a logging or alerting integration of LiteLLM's: not applicable here (Portcullis exports Prometheus metrics and OTLP spans)";

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Map<String, Value>) -> Result<Settings> {
    let mut router = Section::new(root.get("router_settings"), "router_settings")?;
    let mut module = Section::new(root.get("litellm_settings"), "litellm_settings")?;
    let strategy = strategy(ctx, &mut router)?;
    let num_retries = match router.whole(ctx, "num_retries")? {
        Some(n) => Some(n),
        None => module.whole(ctx, "num_retries")?,
    };
    let timeout_ms =
        timeout(ctx, &mut router, "timeout")?.or(timeout(ctx, &mut module, "request_timeout")?);
    let cooldown = cooldown(ctx, &mut router)?;
    let fallbacks = fallbacks(ctx, &mut router, &mut module)?;
    let aliases = aliases(ctx, &mut router)?;
    let pre_call_checks = router
        .bool(ctx, "enable_pre_call_checks")?
        .is_some_and(|(on, _)| on);
    router_reports(ctx, &mut router)?;
    router.finish(
        ctx,
        Unknown::Warning,
        "LiteLLM ignores unknown router settings too",
    )?;

    let mut server = Map::new();
    let cache = super::cache::read(ctx, &mut module, &mut server)?;
    budget(ctx, &mut module, &mut server)?;
    module_reports(ctx, &mut module)?;
    module.finish(ctx, Unknown::Warning, "left out of the imported config")?;
    general(ctx, root, &mut server)?;
    Ok(Settings {
        strategy,
        num_retries,
        timeout_ms,
        cooldown,
        fallbacks,
        aliases,
        pre_call_checks,
        cache,
        server,
    })
}

fn strategy(ctx: &mut Ctx<'_>, router: &mut Section<'_>) -> Result<Strategy> {
    let Some((name, path)) = router.str(ctx, "routing_strategy")? else {
        return Ok(Strategy::Shuffle);
    };
    let strategy = match name.as_str() {
        "simple-shuffle" => Strategy::Shuffle,
        "least-busy" => Strategy::LeastBusy,
        "latency-based-routing" => Strategy::Latency,
        "usage-based-routing" | "usage-based-routing-v2" => {
            ctx.warn(
                &path,
                "usage-based routing becomes a random pick weighted by each deployment's `tpm`, \
                 with `rpm` / `tpm` enforced as the deployment's rate limits (over its limit a \
                 deployment answers 429 rather than being skipped)",
            );
            Strategy::Usage
        }
        other => {
            return Err(ConfigError::new(
                path,
                format!(
                    "routing strategy `{other}` has no equivalent (simple-shuffle, least-busy, \
                     latency-based-routing, usage-based-routing and usage-based-routing-v2 do)"
                ),
            ));
        }
    };
    router.report(
        ctx,
        "routing_strategy_args",
        Unknown::Warning,
        "the latency balancer here is a peak EWMA with its own tuning: these arguments are not used",
    )?;
    Ok(strategy)
}

/// Seconds (LiteLLM's unit) to milliseconds; 0 means unset, as LiteLLM reads it.
fn timeout(ctx: &mut Ctx<'_>, section: &mut Section<'_>, key: &str) -> Result<Option<u64>> {
    Ok(section
        .num(ctx, key)?
        .map(|(s, _)| (s * 1000.0).round() as u64)
        .filter(|ms| *ms > 0))
}

fn cooldown(ctx: &mut Ctx<'_>, router: &mut Section<'_>) -> Result<Cooldown> {
    let allowed_fails = router.whole(ctx, "allowed_fails")?.map(|(n, _)| n);
    let cooldown_ms = match router.num(ctx, "cooldown_time")? {
        Some((0.0, path)) => {
            ctx.warn(
                path,
                "0 means the default (5 s) to LiteLLM, and here: set `disable_cooldowns: true` to turn cooldowns off",
            );
            5000
        }
        Some((s, _)) => (s * 1000.0).round().max(1.0) as u64,
        None => 5000,
    };
    let disabled = router
        .bool(ctx, "disable_cooldowns")?
        .is_some_and(|(off, _)| off);
    router.report(
        ctx,
        "allowed_fails_policy",
        Unknown::Warning,
        "cooldowns here count failures of any kind: the per-error-class limits are not imported",
    )?;
    Ok(Cooldown {
        allowed_fails,
        cooldown_ms,
        disabled,
    })
}

fn fallbacks(
    ctx: &mut Ctx<'_>,
    router: &mut Section<'_>,
    module: &mut Section<'_>,
) -> Result<Fallbacks> {
    let mut out = Fallbacks {
        max: 5,
        ..Fallbacks::default()
    };
    let mut list = |ctx: &mut Ctx<'_>, key: &str| -> Result<Vec<Rule>> {
        // router_settings wins over litellm_settings (both are read so neither is reported).
        let from_router = rules(ctx, router, key)?;
        let from_module = rules(ctx, module, key)?;
        Ok(from_router.or(from_module).unwrap_or_default())
    };
    let general = list(ctx, "fallbacks")?;
    out.context_window = list(ctx, "context_window_fallbacks")?;
    out.content_policy = list(ctx, "content_policy_fallbacks")?;
    for rule in general {
        if rule.group == "*" {
            out.default = Some(rule);
        } else {
            out.general.push(rule);
        }
    }
    let defaults = match default_list(ctx, router)? {
        Some(d) => Some(d),
        None => default_list(ctx, module)?,
    };
    if let Some(rule) = defaults {
        out.default = Some(rule);
    }
    if let Some((n, _)) = router.whole(ctx, "max_fallbacks")? {
        out.max = n as usize;
    }
    Ok(out)
}

/// `[{group: [fallbacks]}]`.
fn rules(ctx: &mut Ctx<'_>, section: &mut Section<'_>, key: &str) -> Result<Option<Vec<Rule>>> {
    let Some((v, path)) = section.value(ctx, key)? else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(ConfigError::new(
            path,
            format!(
                "must be a list of {{group: [fallback groups]}}, got {}",
                type_name(&v)
            ),
        ));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = index(&path, i);
        let Value::Object(map) = item else {
            return Err(ConfigError::new(
                at,
                "must be a mapping {group: [fallback groups]}",
            ));
        };
        for (group, to) in map {
            let to_path = join(&at, group);
            out.push(Rule {
                group: group.clone(),
                to: names(to, &to_path)?,
                path: to_path,
            });
        }
    }
    Ok(Some(out))
}

fn names(v: &Value, path: &str) -> Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    ConfigError::new(index(path, i), "must be the name of a model group")
                })
            })
            .collect(),
        other => Err(ConfigError::new(
            path,
            format!("must be a list of model groups, got {}", type_name(other)),
        )),
    }
}

fn default_list(ctx: &mut Ctx<'_>, section: &mut Section<'_>) -> Result<Option<Rule>> {
    let Some((v, path)) = section.value(ctx, "default_fallbacks")? else {
        return Ok(None);
    };
    Ok(Some(Rule {
        group: "*".to_owned(),
        to: names(&v, &path)?,
        path,
    }))
}

/// `model_group_alias`: `{alias: group}` or `{alias: {model: group, hidden: bool}}`.
fn aliases(ctx: &mut Ctx<'_>, router: &mut Section<'_>) -> Result<Vec<(String, String, String)>> {
    let Some((v, path)) = router.value(ctx, "model_group_alias")? else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = v else {
        return Err(ConfigError::new(path, "must be a mapping {alias: group}"));
    };
    let mut out = Vec::new();
    for (alias, target) in &map {
        let at = join(&path, alias);
        let group = match target {
            Value::String(g) => g.clone(),
            Value::Object(o) => {
                if o.get("hidden").and_then(Value::as_bool) == Some(true) {
                    ctx.warn(
                        &at,
                        "`hidden` aliases are routed here but still listed by GET /v1/models",
                    );
                }
                o.get("model")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| ConfigError::new(join(&at, "model"), "missing: the group"))?
            }
            _ => return Err(ConfigError::new(at, "must be the name of a model group")),
        };
        out.push((alias.clone(), group, at));
    }
    Ok(out)
}

/// `router_settings` keys that are read but have no equivalent.
fn router_reports(ctx: &mut Ctx<'_>, router: &mut Section<'_>) -> Result<()> {
    for key in ["redis_host", "redis_port", "redis_password", "redis_url"] {
        router.report(
            ctx,
            key,
            Unknown::Warning,
            "LiteLLM shares cooldowns and usage through Redis; here each replica keeps its own breakers and balancer state",
        )?;
    }
    router.report(
        ctx,
        "retry_after",
        Unknown::Warning,
        "no minimum backoff here: retries wait for the upstream's `Retry-After`, else back off exponentially",
    )?;
    router.report(
        ctx,
        "stream_timeout",
        Unknown::Warning,
        "no separate timeout for streams: `timeout` applies to the response head of every request",
    )?;
    for key in ["retry_policy", "model_group_retry_policy"] {
        router.report(
            ctx,
            key,
            Unknown::Error,
            "retries per error class are not supported: retries here go by status (408, 409, 429, 5xx); remove it to import",
        )?;
    }
    router.report(
        ctx,
        "provider_budget_config",
        Unknown::Error,
        "provider budgets are not imported: set `usage_limits` on the providers of the imported config",
    )?;
    router.report(
        ctx,
        "enable_tag_filtering",
        Unknown::Error,
        "tag routing is not imported: route with conditions on `metadata` in the imported config",
    )?;
    router.report(
        ctx,
        "cache_responses",
        Unknown::Error,
        "use `litellm_settings.cache` to import a cache",
    )?;
    Ok(())
}

/// `litellm_settings` keys that are read but have no equivalent.
fn module_reports(ctx: &mut Ctx<'_>, module: &mut Section<'_>) -> Result<()> {
    for key in [
        "success_callback",
        "failure_callback",
        "callbacks",
        "service_callback",
        "set_verbose",
        "json_logs",
        "turn_off_message_logging",
        "redact_user_api_key_info",
        "log_raw_request_response",
        "telemetry",
    ] {
        module.report(ctx, key, Unknown::Warning, LOGGING)?;
    }
    module.report(
        ctx,
        "drop_params",
        Unknown::Warning,
        "parameters pass upstream unchanged here: a provider that does not support one answers 400 instead of LiteLLM dropping it",
    )?;
    module.report(
        ctx,
        "modify_params",
        Unknown::Warning,
        "requests are not rewritten to suit a provider here",
    )?;
    for key in [
        "max_end_user_budget",
        "max_internal_user_budget",
        "internal_user_budget_duration",
        "default_team_settings",
        "default_key_generate_params",
        "upperbound_key_generate_params",
    ] {
        module.report(
            ctx,
            key,
            Unknown::Error,
            "budgets and settings per user, team or virtual key live in LiteLLM's database and are not imported: set `server.limits` in the imported config",
        )?;
    }
    module.report(
        ctx,
        "guardrails",
        Unknown::Error,
        "guardrails are not imported: answers would go unchecked",
    )?;
    Ok(())
}

/// `max_budget` and `budget_duration`: one cost budget over the whole gateway.
fn budget(
    ctx: &mut Ctx<'_>,
    module: &mut Section<'_>,
    server: &mut Map<String, Value>,
) -> Result<()> {
    let duration = module.str(ctx, "budget_duration")?;
    let Some((limit, path)) = module.num(ctx, "max_budget")? else {
        if let Some((_, dpath)) = duration {
            ctx.warn(dpath, "no `max_budget` to reset: ignored");
        }
        return Ok(());
    };
    let reset = match &duration {
        None => "never",
        Some((d, dpath)) => period(d, dpath)?,
    };
    if let Some((d, dpath)) = &duration {
        ctx.warn(
            dpath,
            format!(
                "`{d}` becomes a {reset} budget reset at the start of each calendar period (UTC), \
                 where LiteLLM counts periods from when the budget was created"
            ),
        );
    }
    ctx.warn(
        &path,
        "a cost budget refuses requests for models without a known price: set `prices` on the provider, `input_cost_per_token` in the LiteLLM file, or `server.unpriced_models: \"tokens_only\"`",
    );
    server.insert(
        "limits".to_owned(),
        json!([{
            "name": "litellm-max-budget",
            "usage_limits": {"type": "cost", "credit_limit": limit, "periodic_reset": reset},
        }]),
    );
    Ok(())
}

/// LiteLLM's duration (`30s`, `30m`, `30h`, `30d`, `1w`, `1mo`) as a periodic reset.
fn period(d: &str, path: &str) -> Result<&'static str> {
    let d = d.trim();
    let split = d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len());
    let (n, unit) = d.split_at(split);
    let reset = match (n.parse::<u64>().ok(), unit) {
        (Some(1), "d") | (Some(24), "h") | (Some(1440), "m") | (Some(86400), "s") => "daily",
        (Some(7), "d") | (Some(1), "w") => "weekly",
        (Some(30), "d") | (Some(1), "mo") => "monthly",
        _ => {
            return Err(ConfigError::new(
                path,
                format!(
                    "`{d}` has no equivalent: budgets here reset daily (1d, 24h), weekly (7d, 1w) or monthly (30d, 1mo)"
                ),
            ));
        }
    };
    Ok(reset)
}

/// `general_settings`: the master key; what would change who may call is refused.
fn general(
    ctx: &mut Ctx<'_>,
    root: &Map<String, Value>,
    server: &mut Map<String, Value>,
) -> Result<()> {
    let mut general = Section::new(root.get("general_settings"), "general_settings")?;
    let master = match general.raw("master_key") {
        Some((v, path)) => Some((ctx.secret(v, &path)?, path)),
        // LiteLLM reads the environment when the file has none.
        None => ctx.var("LITELLM_MASTER_KEY").map(|value| {
            (
                ("${LITELLM_MASTER_KEY}".to_owned(), value),
                "general_settings.master_key".to_owned(),
            )
        }),
    };
    match master {
        Some(((text, value), path)) => {
            if value.len() < 8 {
                return Err(ConfigError::new(
                    path,
                    "a gateway key must be at least 8 characters",
                ));
            }
            server.insert("api_keys".to_owned(), json!({ "master": text }));
        }
        None => ctx.warn(
            "general_settings.master_key",
            "no master key: as with LiteLLM, the gateway will not authenticate callers",
        ),
    }
    for key in [
        "database_url",
        "store_model_in_db",
        "enable_jwt_auth",
        "litellm_jwtauth",
        "custom_auth",
        "allowed_ips",
        "litellm_key_header_name",
        "enforce_user_param",
        "allowed_routes",
        "admin_only_routes",
        "public_routes",
    ] {
        general.report(
            ctx,
            key,
            Unknown::Error,
            "changes who may call the proxy (LiteLLM's virtual keys, JWTs, IP and route rules live in its database or code): \
             not imported; give callers keys in `server.api_keys` and remove it to import",
        )?;
    }
    for key in [
        "alerting",
        "alerting_threshold",
        "alert_types",
        "proxy_batch_write_at",
        "disable_spend_logs",
    ] {
        general.report(ctx, key, Unknown::Warning, LOGGING)?;
    }
    general.finish(ctx, Unknown::Warning, "left out of the imported config")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_map_to_calendar_resets() {
        assert_eq!(period("30d", "p").unwrap(), "monthly");
        assert_eq!(period("1mo", "p").unwrap(), "monthly");
        assert_eq!(period("7d", "p").unwrap(), "weekly");
        assert_eq!(period("24h", "p").unwrap(), "daily");
        assert!(
            period("2d", "p")
                .unwrap_err()
                .to_string()
                .starts_with("p: `2d` has no equivalent")
        );
    }
}
