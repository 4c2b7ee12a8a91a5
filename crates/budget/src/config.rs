//! Reading limits from JSON, in Portkey's shapes, with errors that name their path.
//!
//! - `usage_limits`: `{"type": "cost" | "tokens", "credit_limit": N, "alert_threshold": N,
//!   "periodic_reset": "daily" | "weekly" | "monthly" | "never"}`, cost in USD; `credit_limit`
//!   null or ≤ 0 means no hard limit (Portkey's rule). Extensions: `"window": "calendar" |
//!   "rolling"` and `"week_start": "monday" | "sunday"`.
//! - `rate_limits`: `[{"type": "requests" | "tokens", "unit": "rpm" | "rph" | "rpd",
//!   "value": N}]`.
//! - a policy: `{"name": …, "per": "api_key" | [dimensions…], "match": {dimension: value},
//!   "usage_limits": {…}, "rate_limits": […]}`.
//! - the whole layer ([`LimitsConfig`]): `{"policies": […], "prices": {provider: {model:
//!   {"input", "output", "cached_input", "cache_write"}}}, "unpriced": "refuse" |
//!   "tokens_only", "default_max_tokens": N, "lease_seconds": N, "provider": name,
//!   "on_store_error": {"budgets": "closed" | "open", "rate_limits": "closed" | "open"}}`.
//!
//! ```
//! use portcullis_budget::config::LimitsConfig;
//! use portcullis_budget::RateRule;
//! use serde_json::json;
//!
//! let config = LimitsConfig::from_json(&json!({
//!     "policies": [{
//!         "name": "per-key",
//!         "per": "api_key",
//!         "usage_limits": {"type": "cost", "credit_limit": 10, "alert_threshold": 8, "periodic_reset": "monthly"},
//!         "rate_limits": [{"type": "requests", "unit": "rpm", "value": 100}]
//!     }]
//! })).unwrap();
//! assert_eq!(config.policies[0].rate_rules(), &[RateRule::requests_per_minute(100)]);
//!
//! let err = RateRule::list_from_json(&json!([
//!     {"type": "requests", "unit": "rpm", "value": 1},
//!     {"type": "tokens", "unit": "rps", "value": 1}
//! ])).unwrap_err();
//! assert_eq!(err.prefixed("rate_limits").to_string(), "rate_limits[1].unit: expected rpm, rph or rpd");
//! ```

use std::time::Duration;

use portcullis_core::BuildError;
use serde_json::{Map, Value};

use crate::clock::Weekday;
use crate::policy::{
    Dimension, Measure, Policy, RateKind, RateRule, RateUnit, Reset, UsageLimits, usd_to_micros,
};
use crate::price::PriceTable;

/// What to do with a request for a model that has no price, when a cost budget applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Unpriced {
    /// Refuse it: 400 `model_not_priced` (the default: never a silent $0).
    #[default]
    Refuse,
    /// Let it through without touching cost budgets (token budgets and rate limits still
    /// apply); logged once per model and counted.
    TokensOnly,
}

/// What to do when the store fails or is late, per kind of limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnStoreError {
    /// Refuse the request: 503 `limit_store_unavailable`.
    Closed,
    /// Decide with a local in-memory store holding the same limits for this process alone.
    Open,
}

/// Everything the layer reads from a config.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// The policies.
    pub policies: Vec<Policy>,
    /// The prices: the built-in table with the config's additions.
    pub prices: PriceTable,
    /// Requests for unpriced models.
    pub unpriced: Unpriced,
    /// The output reserved when a request sets no `max_tokens` (default 4096).
    pub default_max_tokens: u64,
    /// How long a shared store keeps an unsettled reservation (default 15 minutes).
    pub lease: Duration,
    /// The provider of requests that name none.
    pub provider: Option<String>,
    /// On a store error, for budgets (default closed).
    pub budgets_on_store_error: OnStoreError,
    /// On a store error, for rate limits (default open).
    pub rates_on_store_error: OnStoreError,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            policies: Vec::new(),
            prices: PriceTable::builtin(),
            unpriced: Unpriced::Refuse,
            default_max_tokens: 4096,
            lease: Duration::from_secs(900),
            provider: None,
            budgets_on_store_error: OnStoreError::Closed,
            rates_on_store_error: OnStoreError::Open,
        }
    }
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, BuildError> {
    value
        .as_object()
        .ok_or_else(|| BuildError::new(format!("expected {what}")))
}

fn known(object: &Map<String, Value>, keys: &[&str]) -> Result<(), BuildError> {
    for key in object.keys() {
        if !keys.contains(&key.as_str()) {
            return Err(BuildError::new(format!(
                "unknown key; expected one of {}",
                keys.join(", ")
            ))
            .in_key(key));
        }
    }
    Ok(())
}

fn string<'a>(object: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, BuildError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(BuildError::at(key, "expected a string")),
    }
}

fn choice<T: Copy>(
    object: &Map<String, Value>,
    key: &str,
    options: &[(&str, T)],
    expected: &str,
) -> Result<Option<T>, BuildError> {
    let Some(s) =
        string(object, key).map_err(|_| BuildError::at(key, format!("expected {expected}")))?
    else {
        return Ok(None);
    };
    options
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| Some(*v))
        .ok_or_else(|| BuildError::at(key, format!("expected {expected}")))
}

fn number(object: &Map<String, Value>, key: &str) -> Result<Option<f64>, BuildError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| BuildError::at(key, "expected a number")),
    }
}

fn whole(object: &Map<String, Value>, key: &str) -> Result<Option<u64>, BuildError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| BuildError::at(key, "expected a whole number >= 0")),
    }
}

impl UsageLimits {
    /// Reads Portkey's `usage_limits` object (see the [module docs](self)).
    ///
    /// # Errors
    /// A wrong value, at its key (`periodic_reset: expected daily, weekly, monthly or never`).
    pub fn from_json(value: &Value) -> Result<Self, BuildError> {
        let o = object(value, "an object")?;
        known(
            o,
            &[
                "type",
                "credit_limit",
                "alert_threshold",
                "periodic_reset",
                "window",
                "week_start",
            ],
        )?;
        let measure = choice(
            o,
            "type",
            &[("cost", Measure::Cost), ("tokens", Measure::Tokens)],
            "cost or tokens",
        )?
        .unwrap_or(Measure::Cost);
        let amount = |key: &str| -> Result<u64, BuildError> {
            let n = number(o, key)?.unwrap_or(0.0);
            Ok(match measure {
                Measure::Cost => usd_to_micros(n),
                Measure::Tokens if n > 0.0 => n.round().min(9e15) as u64,
                Measure::Tokens => 0,
            })
        };
        let limits = match measure {
            Measure::Cost => UsageLimits::cost_micros(amount("credit_limit")?),
            Measure::Tokens => UsageLimits::tokens(amount("credit_limit")?),
        };
        let reset = choice(
            o,
            "periodic_reset",
            &[
                ("daily", Reset::Daily),
                ("weekly", Reset::Weekly),
                ("monthly", Reset::Monthly),
                ("never", Reset::Never),
            ],
            "daily, weekly, monthly or never",
        )?
        .unwrap_or(Reset::Never);
        let rolling = choice(
            o,
            "window",
            &[("calendar", false), ("rolling", true)],
            "calendar or rolling",
        )?
        .unwrap_or(false);
        let week_start = choice(
            o,
            "week_start",
            &[("monday", Weekday::Monday), ("sunday", Weekday::Sunday)],
            "monday or sunday",
        )?
        .unwrap_or_default();
        let limits = limits
            .alert_at(amount("alert_threshold")?)
            .reset(reset)
            .rolling(rolling)
            .week_start(week_start);
        limits.check()?;
        Ok(limits)
    }
}

impl RateRule {
    /// Reads one `rate_limits` entry: `{"type", "unit", "value"}`.
    ///
    /// # Errors
    /// A wrong value, at its key (`unit: expected rpm, rph or rpd`).
    pub fn from_json(value: &Value) -> Result<Self, BuildError> {
        let o = object(value, "an object")?;
        known(o, &["type", "unit", "value"])?;
        let kind = choice(
            o,
            "type",
            &[
                ("requests", RateKind::Requests),
                ("tokens", RateKind::Tokens),
            ],
            "requests or tokens",
        )?
        .unwrap_or(RateKind::Requests);
        let unit = choice(
            o,
            "unit",
            &[
                ("rpm", RateUnit::Minute),
                ("rph", RateUnit::Hour),
                ("rpd", RateUnit::Day),
            ],
            "rpm, rph or rpd",
        )?
        .ok_or_else(|| BuildError::at("unit", "expected rpm, rph or rpd"))?;
        let value = whole(o, "value")?.ok_or_else(|| BuildError::at("value", "required"))?;
        Ok(RateRule::new(kind, unit, value))
    }

    /// Reads a `rate_limits` array.
    ///
    /// # Errors
    /// The first wrong entry, at its index (`[1].unit: …`).
    pub fn list_from_json(value: &Value) -> Result<Vec<Self>, BuildError> {
        value
            .as_array()
            .ok_or_else(|| BuildError::new("expected an array"))?
            .iter()
            .enumerate()
            .map(|(i, v)| RateRule::from_json(v).map_err(|e| e.in_index(i)))
            .collect()
    }
}

fn dimension(value: &Value) -> Result<Dimension, BuildError> {
    value.as_str().and_then(Dimension::parse).ok_or_else(|| {
        BuildError::new(
            "expected api_key, virtual_key, user, team, provider, model or metadata.<key>",
        )
    })
}

impl Policy {
    /// Reads a policy: `{"name", "per", "match", "usage_limits", "rate_limits"}`.
    ///
    /// # Errors
    /// A wrong value, at its path (`rate_limits[1].unit: …`).
    pub fn from_json(value: &Value) -> Result<Self, BuildError> {
        let o = object(value, "an object")?;
        known(o, &["name", "per", "match", "usage_limits", "rate_limits"])?;
        let name = string(o, "name")?.ok_or_else(|| BuildError::at("name", "required"))?;
        let mut policy = Policy::new(name);
        match o.get("per") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    policy = policy.per(dimension(item).map_err(|e| e.in_index(i).in_key("per"))?);
                }
            }
            Some(item) => policy = policy.per(dimension(item).map_err(|e| e.in_key("per"))?),
        }
        if let Some(matching) = o.get("match") {
            let matching = object(matching, "an object").map_err(|e| e.in_key("match"))?;
            for (key, value) in matching {
                let dim = dimension(&Value::String(key.clone()))
                    .map_err(|e| e.in_key(key).in_key("match"))?;
                let value = value.as_str().ok_or_else(|| {
                    BuildError::new("expected a string")
                        .in_key(key)
                        .in_key("match")
                })?;
                policy = policy.matching(dim, value);
            }
        }
        if let Some(usage) = o.get("usage_limits").filter(|v| !v.is_null()) {
            policy =
                policy.usage(UsageLimits::from_json(usage).map_err(|e| e.in_key("usage_limits"))?);
        }
        if let Some(rates) = o.get("rate_limits").filter(|v| !v.is_null()) {
            for rule in RateRule::list_from_json(rates).map_err(|e| e.in_key("rate_limits"))? {
                policy = policy.rate(rule);
            }
        }
        policy.check()?;
        Ok(policy)
    }
}

impl LimitsConfig {
    /// Reads the layer's settings (see the [module docs](self)); absent keys keep their
    /// defaults.
    ///
    /// # Errors
    /// A wrong value, at its path (`policies[0].usage_limits.type: expected cost or tokens`).
    pub fn from_json(value: &Value) -> Result<Self, BuildError> {
        let o = object(value, "an object")?;
        known(
            o,
            &[
                "policies",
                "prices",
                "unpriced",
                "default_max_tokens",
                "lease_seconds",
                "provider",
                "on_store_error",
            ],
        )?;
        let mut config = LimitsConfig::default();
        if let Some(policies) = o.get("policies") {
            let policies = policies
                .as_array()
                .ok_or_else(|| BuildError::at("policies", "expected an array"))?;
            for (i, p) in policies.iter().enumerate() {
                config
                    .policies
                    .push(Policy::from_json(p).map_err(|e| e.in_index(i).in_key("policies"))?);
            }
        }
        if let Some(prices) = o.get("prices") {
            config
                .prices
                .extend_from_json(prices)
                .map_err(|e| e.in_key("prices"))?;
        }
        if let Some(unpriced) = choice(
            o,
            "unpriced",
            &[
                ("refuse", Unpriced::Refuse),
                ("tokens_only", Unpriced::TokensOnly),
            ],
            "refuse or tokens_only",
        )? {
            config.unpriced = unpriced;
        }
        if let Some(n) = whole(o, "default_max_tokens")? {
            config.default_max_tokens = n;
        }
        if let Some(n) = whole(o, "lease_seconds")? {
            if n == 0 {
                return Err(BuildError::at("lease_seconds", "must be > 0"));
            }
            config.lease = Duration::from_secs(n);
        }
        config.provider = string(o, "provider")?.map(str::to_owned);
        if let Some(on_error) = o.get("on_store_error") {
            let on_error = object(on_error, "an object").map_err(|e| e.in_key("on_store_error"))?;
            known(on_error, &["budgets", "rate_limits"]).map_err(|e| e.in_key("on_store_error"))?;
            let modes = [
                ("closed", OnStoreError::Closed),
                ("open", OnStoreError::Open),
            ];
            let read = |key| {
                choice(on_error, key, &modes, "closed or open")
                    .map_err(|e| e.prefixed("on_store_error"))
            };
            if let Some(mode) = read("budgets")? {
                config.budgets_on_store_error = mode;
            }
            if let Some(mode) = read("rate_limits")? {
                config.rates_on_store_error = mode;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        LimitsConfig::from_json(&v).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_their_path() {
        assert_eq!(
            err(
                json!({"policies": [{"name": "a", "usage_limits": {"type": "dollars", "credit_limit": 1}}]})
            ),
            "policies[0].usage_limits.type: expected cost or tokens"
        );
        assert_eq!(
            err(
                json!({"policies": [{"name": "a", "usage_limits": {"credit_limit": 1, "periodic_reset": "yearly"}}]})
            ),
            "policies[0].usage_limits.periodic_reset: expected daily, weekly, monthly or never"
        );
        assert_eq!(
            err(
                json!({"policies": [{"name": "a", "per": ["api_key", "metadata."], "rate_limits": []}]})
            ),
            "policies[0].per[1]: expected api_key, virtual_key, user, team, provider, model or metadata.<key>"
        );
        assert_eq!(
            err(
                json!({"policies": [{"name": "a", "rate_limits": [{"unit": "rpm", "value": -1}]}]})
            ),
            "policies[0].rate_limits[0].value: expected a whole number >= 0"
        );
        assert_eq!(
            err(
                json!({"policies": [{"name": "a", "usage_limits": {"credit_limit": 1, "alert_threshold": 2}}]})
            ),
            "policies[0].usage_limits.alert_threshold: must not be above credit_limit"
        );
        assert_eq!(
            err(json!({"policies": [{"name": "a"}]})),
            "policies[0]: a policy needs usage_limits or rate_limits"
        );
        assert_eq!(
            err(json!({"on_store_error": {"budgets": "maybe"}})),
            "on_store_error.budgets: expected closed or open"
        );
        assert_eq!(
            err(json!({"unpriced": 1})),
            "unpriced: expected refuse or tokens_only"
        );
        assert_eq!(
            err(
                json!({"policies": [{"name": "a", "match": {"colour": "red"}, "rate_limits": []}]})
            ),
            "policies[0].match.colour: expected api_key, virtual_key, user, team, provider, model or metadata.<key>"
        );
        assert_eq!(
            err(json!({"polices": []})).split(';').next().unwrap(),
            "polices: unknown key"
        );
    }

    #[test]
    fn portkey_shapes_read_as_documented() {
        let c = LimitsConfig::from_json(&json!({
            "policies": [{
                "name": "team",
                "per": ["api_key", "metadata._user"],
                "match": {"provider": "openai"},
                "usage_limits": {"type": "tokens", "credit_limit": 1000, "alert_threshold": 800,
                                 "periodic_reset": "weekly", "week_start": "sunday"},
                "rate_limits": [{"type": "tokens", "unit": "rph", "value": 500}]
            }],
            "unpriced": "tokens_only",
            "default_max_tokens": 256,
            "lease_seconds": 60,
            "provider": "openai",
            "on_store_error": {"budgets": "open", "rate_limits": "closed"}
        }))
        .unwrap();
        let p = &c.policies[0];
        assert_eq!(
            p.scope(),
            &[Dimension::ApiKey, Dimension::metadata("_user")]
        );
        let u = p.usage_limits().unwrap();
        assert_eq!(
            (u.measure(), u.credit_limit(), u.alert_threshold()),
            (Measure::Tokens, Some(1000), Some(800))
        );
        assert_eq!(u.periodic_reset(), Reset::Weekly);
        assert_eq!(
            p.rate_rules(),
            &[RateRule::new(RateKind::Tokens, RateUnit::Hour, 500)]
        );
        assert_eq!(c.unpriced, Unpriced::TokensOnly);
        assert_eq!(
            (c.default_max_tokens, c.lease),
            (256, Duration::from_secs(60))
        );
        assert_eq!(c.budgets_on_store_error, OnStoreError::Open);
        assert_eq!(c.rates_on_store_error, OnStoreError::Closed);
    }

    #[test]
    fn a_null_or_zero_credit_limit_only_alerts() {
        let u =
            UsageLimits::from_json(&json!({"credit_limit": null, "alert_threshold": 5})).unwrap();
        assert_eq!(
            (u.credit_limit(), u.alert_threshold()),
            (None, Some(5_000_000))
        );
        assert!(UsageLimits::from_json(&json!({"credit_limit": 0})).is_err());
    }
}
