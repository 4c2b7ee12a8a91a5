//! LiteLLM's proxy `config.yaml`, imported as a Portcullis config.
//!
//! [`parse_yaml`] reads the file (YAML or JSON), [`is_litellm`] tells one from a Portcullis
//! config by its shape, [`import`] translates it and reports, by path, everything it could
//! not carry over, and [`render`] prints the result for `portcullis import litellm FILE`.
//! Anything whose loss could change an answer, a cost or who may call is an error; the rest
//! is a [`Diagnostic`] in [`Import::warnings`]. Nothing is dropped silently.
//!
//! ```
//! use portcullis_gateway::{Config, Gateway, litellm};
//!
//! let file = litellm::parse_yaml(r#"
//! model_list:
//!   - model_name: gpt-4o
//!     litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY, rpm: 600}
//!   - model_name: gpt-4o
//!     litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:9/v1", rpm: 200}
//! router_settings: {num_retries: 3}
//! general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}
//! "#).unwrap();
//! assert!(litellm::is_litellm(&file));
//!
//! let env = |name: &str| match name {
//!     "OPENAI_API_KEY" => Some("sk-test".to_owned()),
//!     "LITELLM_MASTER_KEY" => Some("sk-master-1234".to_owned()),
//!     _ => None,
//! };
//! let import = litellm::import(&file, &env).unwrap();
//! // Secrets stay references to the environment in the imported config.
//! assert_eq!(import.config["providers"]["gpt-4o-1"]["api_key"], "${OPENAI_API_KEY}");
//! assert_eq!(import.config["server"]["api_keys"]["master"], "${LITELLM_MASTER_KEY}");
//! // The group picks its deployments by `rpm`, 3 to 1, and names the upstream model.
//! let group = &import.config["config"]["targets"][0];
//! assert_eq!(group["targets"][0]["weight"], 600.0);
//! assert_eq!(group["targets"][1]["override_params"]["model"], "gpt-4o");
//!
//! let config = Config::from_value(&import.config, &env).unwrap();
//! Gateway::new(config).unwrap();
//! assert!(litellm::render(&import).contains("\"strategy\""));
//! ```
//!
//! # The mapping
//!
//! | LiteLLM | Portcullis |
//! |---|---|
//! | `model_list[].model_name` (a group) | a target of a `conditional` root, named after the group, chosen by `params.model` `$eq` the group (a wildcard group by `$regex`; `*` is the default) |
//! | a request for a model no group serves | answered 400 by a `mock` provider `litellm-unknown-model`, as LiteLLM refuses it (not sent to some other group) |
//! | a deployment (`litellm_params`) | a provider of its own, named `model_info.id` or `GROUP-N`, listing the group in `models` |
//! | `model: openai/…`, `anthropic/…`, `gemini/…`, `groq/…`, `mistral/…` | providers `openai`, `anthropic`, `gemini`, `groq`, `mistral-ai`; `api_base` sets `base_url` (`openai/` + `api_base`: `openai-compatible`) |
//! | `azure/DEPLOYMENT` (`api_base`, `api_version`) | `azure-openai` (`base_url`, `deployment_id`, `api_version`) |
//! | `vertex_ai/MODEL` (`vertex_project`, `vertex_location`, `vertex_credentials` as a path) | `vertex-ai` (`vertex_project`, `vertex_region`, `vertex_service_account_file`) |
//! | `ollama/`, `ollama_chat/`, `hosted_vllm/` | `openai-compatible` at `api_base` + `/v1` (ollama's default `http://localhost:11434`) |
//! | `openrouter/`, `deepseek/`, `together_ai/`, `fireworks_ai/` | `openai-compatible` at the service's own base URL |
//! | the model after the prefix | the leaf's `override_params.model`: the client's group name is replaced |
//! | `api_key`, `api_base`, `organization`, `extra_headers` | `api_key`, `base_url`, `headers` (`os.environ/NAME` kept as `${NAME}`) |
//! | `timeout` (deployment) / `router_settings.timeout` / `litellm_settings.request_timeout` | `request_timeout` on the leaf / the root, per attempt |
//! | `num_retries` / `max_retries` (deployment), `router_settings.num_retries`, `litellm_settings.num_retries` (default 2) | `retry.attempts` (at most 10) on 408, 409, 429, 5xx, honouring `Retry-After` |
//! | `routing_strategy: simple-shuffle` | `loadbalance`, weights from the first deployment's `weight`, else `rpm`, else `tpm` (others without it weigh 0), else equal |
//! | `least-busy` / `latency-based-routing` | `strategy.balancer: least_in_flight` / `peak_ewma` |
//! | `usage-based-routing`, `-v2` | `loadbalance` weighted by `tpm`, and `rpm` / `tpm` as each provider's `rate_limits` |
//! | `rpm`, `tpm` with `enable_pre_call_checks` | the provider's `rate_limits` |
//! | `order` | a `fallback` over the levels, lowest first |
//! | `allowed_fails` + `cooldown_time` | `circuit_breaker: {consecutive_failures: allowed_fails + 1, cooldown_ms}` on each leaf |
//! | no `allowed_fails` (groups of 2 or more) | `circuit_breaker: {failure_rate: 0.5, minimum_requests: 5, window_ms: 60000, cooldown_ms}`, LiteLLM's default rule |
//! | `disable_cooldowns`, a deployment's `cooldown_time: 0` | no breaker |
//! | `fallbacks`, `default_fallbacks` (or `*`), `max_fallbacks` | the group's target becomes a `fallback` over its balancer and each fallback group's |
//! | `context_window_fallbacks`, `content_policy_fallbacks` | an inner `fallback` that also moves on after 400 (see below) |
//! | `model_group_alias` | one more condition naming the group |
//! | `cache: true` + `cache_params` | `cache` on the root (`ttl` → `max_age`) and `server.cache`: `local` → memory, `redis` (the default type) → redis at `url` or `host`/`port`/`password` (else `REDIS_*` variables), `namespace` → `prefix`; `redis-semantic`, `qdrant-semantic` → `mode: semantic` with `similarity_threshold` |
//! | `cache_params.mode: default_off` | no root cache: a request opts in with `x-portkey-cache` |
//! | `max_budget` + `budget_duration` | a `server.limits` cost policy; `1d`/`24h` daily, `7d`/`1w` weekly, `30d`/`1mo` monthly |
//! | `input_cost_per_token`, `output_cost_per_token` | the provider's `prices` (per million tokens) |
//! | default request params (`temperature`, …) | the leaf's `override_params` (the deployment's value wins here) |
//! | `general_settings.master_key` (or `LITELLM_MASTER_KEY`) | `server.api_keys.master` |
//! | `environment_variables` | used to resolve `os.environ/` (not exported to the process) |
//! | — | `server.listen: 127.0.0.1:4000`: LiteLLM's port, on loopback (LiteLLM binds every interface: choose that yourself) |
//!
//! # Refused, and why
//!
//! - `azure_ai/`, `bedrock/`, `sagemaker/`: their native APIs do not exist here yet;
//!   `vertex_credentials` given as the JSON key itself (write it to a file); a bare model (`gpt-4o`) has no provider, as the importer does not guess
//!   from LiteLLM's model table; an unknown prefix has no equivalent.
//! - Any `litellm_params` key not understood: LiteLLM sends it to the provider.
//! - Routing strategies other than the four above, `retry_policy`,
//!   `model_group_retry_policy`, `provider_budget_config`, `enable_tag_filtering`, guardrails,
//!   budgets per user or team: each would change an answer or a cost if ignored.
//! - `database_url`, `store_model_in_db`, JWT and custom auth, IP and route rules: they change
//!   who may call (LiteLLM's virtual keys live in its database).
//! - Budget durations other than a day, a week or a month; cache stores other than memory and
//!   Redis; `rediss://`.
//! - An `os.environ/NAME` whose variable is not set: the error names the path and the
//!   variable, never a value.
//!
//! # Approximations (each reported as a warning where it applies)
//!
//! - A retry goes to the same deployment (LiteLLM picks again); a failing deployment's
//!   breaker takes it out of the pick for its cooldown.
//! - `allowed_fails` counts failures in a row rather than within a minute.
//! - Context-window and content-policy fallbacks move on after any 400 (the status alone
//!   does not tell the error's kind); general fallbacks after 408, 409, 429 and 5xx (LiteLLM
//!   also after other errors such as 401).
//! - A fallback group's own fallbacks are not followed (one level, as LiteLLM's lists read).
//! - Budgets reset at calendar periods (UTC), where LiteLLM counts from the budget's creation.
//! - The semantic cache compares text with its own local similarity, not an embedding model.
//! - `server.request_timeout` (600 s across every attempt) bounds a request; LiteLLM's
//!   default per attempt is 6000 s.

mod cache;
mod models;
mod read;
mod settings;
mod tree;
mod yaml;

use std::fmt;

use serde_json::{Map, Value, json};

use crate::config::ConfigError;

use self::read::{Ctx, Section, Unknown};

/// How much a [`Diagnostic`] matters.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Behaviour differs from LiteLLM's, or something was left out: read it.
    Warning,
    /// A choice the import made for you that LiteLLM leaves to its command line.
    Info,
}

/// Something the importer could not carry over exactly, at its path in the LiteLLM file.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where, e.g. `router_settings.retry_after`.
    pub path: String,
    /// What happens to it.
    pub message: String,
    /// How much it matters.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Warning => "warning",
            Severity::Info => "note",
        };
        write!(f, "{label}: {}: {}", self.path, self.message)
    }
}

/// An imported config.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Import {
    /// The Portcullis config, in its JSON form: read it with
    /// [`Config::from_value`](crate::Config::from_value) and the same environment.
    pub config: Value,
    /// What did not carry over exactly, in file order of discovery.
    pub warnings: Vec<Diagnostic>,
}

/// The default listen address of an import: LiteLLM's port, on loopback.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";

/// The sections of a LiteLLM file.
const SECTIONS: [&str; 5] = [
    "model_list",
    "router_settings",
    "litellm_settings",
    "general_settings",
    "environment_variables",
];

/// Whether `value` is shaped as a LiteLLM config: a `model_list`, and none of a Portcullis
/// config's sections (`server`, `providers`, `config`).
pub fn is_litellm(value: &Value) -> bool {
    let Value::Object(map) = value else {
        return false;
    };
    map.get("model_list").is_some_and(Value::is_array)
        && !["server", "providers", "config"]
            .iter()
            .any(|k| map.contains_key(*k))
}

/// Reads a config file's text, YAML or JSON, as a JSON value (YAML merge keys applied,
/// aliases expanded).
///
/// # Errors
/// Text that is neither, with the line and column.
pub fn parse_yaml(text: &str) -> Result<Value, ConfigError> {
    yaml::parse(text)
}

/// Translates a LiteLLM config into a Portcullis config. `env` resolves `os.environ/NAME`
/// (after the file's own `environment_variables`); a secret or endpoint stays `${NAME}` in
/// the result, so [`Config::from_value`](crate::Config::from_value) needs the same `env`.
///
/// # Errors
/// The first thing that cannot be imported without changing an answer, a cost or who may
/// call, at its path in the LiteLLM file (see the [module docs](self)).
pub fn import(value: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Import, ConfigError> {
    let Value::Object(root) = value else {
        return Err(ConfigError::new("", "a LiteLLM config is a mapping"));
    };
    let mut ctx = Ctx::new(env);
    let mut top = Section::new(Some(value), "")?;
    if let Some((vars, path)) = top.raw("environment_variables") {
        let Value::Object(vars) = vars else {
            return Err(ConfigError::new(
                path,
                "must be a mapping of names to values",
            ));
        };
        ctx.set_file_env(vars.clone());
        ctx.warn(
            path,
            "used to resolve `os.environ/` while importing; the gateway does not export them to its process",
        );
    }
    let settings = settings::read(&mut ctx, root)?;
    let enforce_limits = settings.strategy == settings::Strategy::Usage || settings.pre_call_checks;
    let models = models::read(&mut ctx, root, enforce_limits)?;
    for key in SECTIONS {
        top.raw(key);
    }
    top.report(
        &mut ctx,
        "guardrails",
        Unknown::Error,
        "guardrails are not imported: answers would go unchecked",
    )?;
    top.report(
        &mut ctx,
        "include",
        Unknown::Error,
        "included files are not read: merge them into this file to import",
    )?;
    top.finish(
        &mut ctx,
        Unknown::Warning,
        "left out of the imported config",
    )?;

    let (routing, attempts) = tree::assemble(&mut ctx, &settings, &models)?;
    let mut server = settings.server;
    server.insert("listen".to_owned(), json!(DEFAULT_LISTEN));
    ctx.diagnostics.push(Diagnostic {
        path: "server.listen".to_owned(),
        message: format!(
            "{DEFAULT_LISTEN}: LiteLLM's port on loopback (LiteLLM binds 0.0.0.0): set `server.listen` to serve other hosts"
        ),
        severity: Severity::Info,
    });
    if attempts > u64::from(crate::config::DEFAULT_MAX_ATTEMPTS) {
        server.insert("max_attempts".to_owned(), json!(attempts));
    }
    let mut providers = models.providers;
    if routing["targets"].as_array().is_some_and(|t| {
        t.iter()
            .any(|t| t["virtual_key"] == tree::UNKNOWN_MODEL_PROVIDER)
    }) {
        providers.insert(
            tree::UNKNOWN_MODEL_PROVIDER.to_owned(),
            json!({"provider": "mock", "status": 400}),
        );
    }
    let mut config = Map::new();
    config.insert("server".to_owned(), Value::Object(server));
    config.insert("providers".to_owned(), Value::Object(providers));
    config.insert("config".to_owned(), routing);
    Ok(Import {
        config: Value::Object(config),
        warnings: ctx.diagnostics,
    })
}

/// The imported config as pretty JSON, then a blank line, then one line per diagnostic
/// (`warning: PATH: MESSAGE`). The JSON holds no blank line, so the first one ends it.
pub fn render(import: &Import) -> String {
    let mut out = serde_json::to_string_pretty(&import.config).expect("JSON values serialise");
    out.push('\n');
    if !import.warnings.is_empty() {
        out.push('\n');
        for d in &import.warnings {
            out.push_str(&d.to_string());
            out.push('\n');
        }
    }
    out
}
