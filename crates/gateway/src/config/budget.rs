//! Budgets and rate limits in the config: Portkey's `usage_limits` and `rate_limits` on a
//! provider and on a gateway key, `server.limits` policies, their store, prices, and the
//! admin token that reads them back (`GET /v1/limits`).
//!
//! ```json
//! "server": {
//!   "api_keys": {"team-a": {"key": "${TEAM_A_KEY}",
//!                           "usage_limits": {"type": "cost", "credit_limit": 50, "periodic_reset": "monthly"},
//!                           "rate_limits": [{"type": "requests", "unit": "rpm", "value": 600}]}},
//!   "limits": [{"name": "per-user", "per": "metadata._user",
//!               "usage_limits": {"type": "cost", "credit_limit": 5, "periodic_reset": "daily"}}],
//!   "limits_store": {"store": "redis", "url": "${REDIS_URL}", "timeout_ms": 100,
//!                    "on_store_error": {"budgets": "closed", "rate_limits": "open"}},
//!   "unpriced_models": "refuse",
//!   "admin_token": "${PORTCULLIS_ADMIN_TOKEN}"
//! },
//! "providers": {"openai": {"provider": "openai", "api_key": "${OPENAI_API_KEY}",
//!                          "usage_limits": {"type": "tokens", "credit_limit": 1000000},
//!                          "prices": {"my-finetune": {"input": 3, "output": 12}}}}
//! ```
//!
//! Where each is enforced: `server.limits` and a key's limits once per request, before
//! routing (a client's request is one request however many attempts it takes); a provider's
//! limits at each leaf that calls it, so they see the provider really called.

use portcullis_budget::{OnStoreError, Policy, RateRule, Unpriced, UsageLimits};
use portcullis_core::BuildError;
use serde_json::Value;

use super::reader::{ConfigError, Obj, Result, join};
use super::{Env, substitute};

/// Where the limits live (`server.limits_store`).
#[non_exhaustive]
#[derive(Clone, PartialEq)]
pub enum LimitsStore {
    /// In this process (the default): each replica enforces the limits alone.
    Memory,
    /// In Redis: every replica shares the ledger.
    Redis {
        /// `redis://…` (never logged).
        url: String,
        /// The prefix of every key.
        prefix: String,
        /// The longest a reserve or settle may take before the failure policy answers
        /// (`timeout_ms`, default 100).
        timeout: std::time::Duration,
    },
}

impl std::fmt::Debug for LimitsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis {
                prefix, timeout, ..
            } => f
                .debug_struct("Redis")
                .field("url", &"<redacted>")
                .field("prefix", prefix)
                .field("timeout", timeout)
                .finish(),
        }
    }
}

/// The server's budget settings.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct LimitsServer {
    /// `server.limits`.
    pub policies: Vec<Policy>,
    /// The store.
    pub store: LimitsStore,
    /// When the store fails: for budgets (default closed) and rate limits (default open).
    pub on_store_error: (OnStoreError, OnStoreError),
    /// Requests for a model without a price under a cost budget (default: refused).
    pub unpriced: Unpriced,
}

impl Default for LimitsServer {
    fn default() -> Self {
        Self {
            policies: Vec::new(),
            store: LimitsStore::Memory,
            on_store_error: (OnStoreError::Closed, OnStoreError::Open),
            unpriced: Unpriced::Refuse,
        }
    }
}

fn build(path: &str, e: BuildError) -> ConfigError {
    ConfigError::from_build(path, e)
}

/// `server.limits`: a list of policies.
pub(crate) fn parse_policies(v: &Value, path: &str) -> Result<Vec<Policy>> {
    let items = v
        .as_array()
        .ok_or_else(|| ConfigError::new(path, "must be a list of policies"))?;
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let policy = Policy::from_json(item).map_err(|e| build(&at, e))?;
        if !names.insert(policy.name().to_owned()) {
            return Err(ConfigError::new(
                join(&at, "name"),
                format!("`{}` names another policy too", policy.name()),
            ));
        }
        out.push(policy);
    }
    Ok(out)
}

/// `usage_limits` and `rate_limits` of a provider or a gateway key, as one policy named
/// `name` that applies where `matching` says.
pub(crate) fn owner_policy(
    obj: &mut Obj<'_>,
    name: String,
    dimension: portcullis_budget::Dimension,
    value: &str,
) -> Result<Option<Policy>> {
    let usage = obj.section("usage_limits", |v, p| {
        UsageLimits::from_json(v).map_err(|e| build(p, e))
    })?;
    let rates = obj.section("rate_limits", |v, p| {
        RateRule::list_from_json(v).map_err(|e| build(p, e))
    })?;
    if usage.is_none() && rates.as_ref().is_none_or(Vec::is_empty) {
        return Ok(None);
    }
    // Kept per that owner (so its scope names it) and applied only to it.
    let mut policy = Policy::new(name)
        .per(dimension.clone())
        .matching(dimension, value);
    if let Some(usage) = usage {
        policy = policy.usage(usage);
    }
    for rule in rates.into_iter().flatten() {
        policy = policy.rate(rule);
    }
    Ok(Some(policy))
}

/// `server.limits_store`.
pub(crate) fn parse_store(
    v: &Value,
    path: &str,
    env: Env<'_>,
) -> Result<(LimitsStore, (OnStoreError, OnStoreError))> {
    let mut obj = Obj::new(v, path)?;
    let store = match obj.str("store")? {
        None | Some(("memory", _)) => LimitsStore::Memory,
        Some(("redis", _)) => {
            let (url, upath) = obj.str("url")?.ok_or_else(|| {
                ConfigError::new(join(path, "url"), "required for the redis store")
            })?;
            let url = substitute(url, &upath, env)?;
            if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
                return Err(ConfigError::new(
                    upath,
                    "must start with redis:// (or redis+unix://)",
                ));
            }
            let prefix = obj
                .str("prefix")?
                .map_or_else(|| "portcullis:limits:".to_owned(), |(p, _)| p.to_owned());
            let timeout = obj
                .positive_ms("timeout_ms")?
                .unwrap_or(portcullis_budget::store::DEFAULT_DEADLINE);
            LimitsStore::Redis {
                url,
                prefix,
                timeout,
            }
        }
        Some((other, p)) => {
            return Err(ConfigError::new(
                p,
                format!("expected \"memory\" or \"redis\", got {other:?}"),
            ));
        }
    };
    let mut on_error = (OnStoreError::Closed, OnStoreError::Open);
    if let Some((policies, ppath)) = obj.object("on_store_error")? {
        for (k, v) in policies {
            let at = join(&ppath, k);
            let choice = match v.as_str() {
                Some("closed") => OnStoreError::Closed,
                Some("open") => OnStoreError::Open,
                _ => return Err(ConfigError::new(at, "expected \"closed\" or \"open\"")),
            };
            match k.as_str() {
                "budgets" => on_error.0 = choice,
                "rate_limits" => on_error.1 = choice,
                _ => {
                    return Err(ConfigError::new(
                        at,
                        "unknown key (expected budgets, rate_limits)",
                    ));
                }
            }
        }
    }
    obj.finish(" (expected store, url, prefix, timeout_ms, on_store_error)")?;
    Ok((store, on_error))
}

/// `server.unpriced_models`.
pub(crate) fn parse_unpriced(v: &str, path: &str) -> Result<Unpriced> {
    match v {
        "refuse" => Ok(Unpriced::Refuse),
        "tokens_only" => Ok(Unpriced::TokensOnly),
        _ => Err(ConfigError::new(
            path,
            "expected \"refuse\" or \"tokens_only\"",
        )),
    }
}

/// `server.admin_token`: at least 16 characters.
pub(crate) fn parse_admin_token(v: &str, path: &str, env: Env<'_>) -> Result<String> {
    let token = substitute(v, path, env)?;
    if token.len() < 16 {
        return Err(ConfigError::new(
            path,
            "an admin token must be at least 16 characters",
        ));
    }
    Ok(token)
}
