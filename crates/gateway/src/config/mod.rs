//! The gateway's config file: providers defined once, a routing tree in Portkey's schema, and
//! server settings. Parsing is strict: an unknown key, a wrong type or a value out of range
//! stops start-up with an error that names its path (`config.targets[1].weight: must be >= 0`).
//! The types are `#[non_exhaustive]`, so the cache, guard and budget sections can join them:
//! read them from JSON, or start from a default ([`Server::default`],
//! [`HeaderConfigLimits::default`]) and set its fields.
//!
//! ```json
//! {
//!   "server": { "listen": "127.0.0.1:8787", "api_keys": { "team-a": "${TEAM_A_KEY}" } },
//!   "providers": {
//!     "openai": { "provider": "openai", "api_key": "${OPENAI_API_KEY}" },
//!     "local":  { "provider": "mock", "latency_ms": 20 }
//!   },
//!   "config": {
//!     "strategy": { "mode": "fallback" },
//!     "retry": { "attempts": 2 },
//!     "targets": [ { "virtual_key": "openai" }, { "virtual_key": "local" } ]
//!   }
//! }
//! ```

mod budget;
mod cache;
mod limits;
mod reader;
mod saved;
mod tree;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

pub use self::budget::{LimitsServer, LimitsStore};
pub use self::cache::{CacheServer, CacheStore};
pub use self::limits::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_REQUEST_TIMEOUT, HeaderConfigLimits, MAX_HEADER_CONFIG_BYTES,
};
pub use self::reader::ConfigError;
use self::reader::{Env, Obj, Result, join, type_name};
pub use self::saved::{Prompt, PromptRoute};
pub(crate) use self::tree::parse_header_retry;
pub use self::tree::{Balancer, BreakerSpec, Mode, Node, NodeKind, Origin, RetrySpec, StickyKey};
pub use portcullis_cache::{CacheSettings, Mode as CacheMode};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// A whole config file.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Config {
    /// Server settings.
    pub server: Server,
    /// Providers by name (Portkey's virtual keys).
    pub providers: BTreeMap<String, Provider>,
    /// The routing tree; without one, requests must name a provider with
    /// `x-portkey-virtual-key` or carry an `x-portkey-config`.
    pub routing: Option<Node>,
    /// Saved configs by id (`x-portkey-config: ID`).
    pub configs: BTreeMap<String, Node>,
    /// Prompt templates by id (`POST /v1/prompts/ID/completions`).
    pub prompts: BTreeMap<String, Prompt>,
    /// Mustache partials by name.
    pub partials: BTreeMap<String, String>,
    /// Reads guardrail hooks: the webhook allowlist and the named guardrails of the file's
    /// `guardrails` section (header configs' hooks are read with it too).
    pub guards: std::sync::Arc<portcullis_guard::Loader>,
}

/// Server settings.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Server {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The largest request body, in bytes (default 32 MiB).
    pub body_limit: usize,
    /// Gateway API keys: name -> key. Empty: no authentication.
    pub api_keys: Vec<(String, String)>,
    /// How long in-flight requests may run after a shutdown signal (default 30 s).
    pub shutdown_timeout: Duration,
    /// A deadline for a request to its response head, across every retry and fallback
    /// (default [`DEFAULT_REQUEST_TIMEOUT`], 600 s; `x-portkey-request-timeout` may shorten it
    /// per request, never lengthen it).
    pub request_timeout: Option<Duration>,
    /// Metadata keys that become metric labels (at most 8; others never do).
    pub metadata_labels: Vec<String>,
    /// Where to export request spans over OTLP/HTTP (needs the `otlp` feature).
    pub otlp_endpoint: Option<String>,
    /// Metadata keys whose values may appear in logs and spans (default none: other keys
    /// show as `<redacted>`).
    pub log_metadata_keys: Vec<String>,
    /// Connections served at once (default 1024). Past it the server stops accepting but
    /// for a few short-lived spare connections that answer only `GET /health` (other
    /// requests get 503); keep it below the process's file-descriptor limit.
    pub max_connections: usize,
    /// Time allowed for a request's head (default 10 s). For HTTP/1.1, hyper counts it from
    /// when the connection is ready for a request, so it also closes a kept-alive
    /// connection that sends nothing for this long.
    pub header_read_timeout: Duration,
    /// Time allowed to read a whole request body, from its head (default 30 s): 408 past it.
    pub body_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight (default 60 s).
    pub idle_timeout: Duration,
    /// Concurrent streams an HTTP/2 client may open on one connection (default 128).
    pub h2_max_concurrent_streams: u32,
    /// Upstream calls one request may make across all its retries and fallbacks (default
    /// [`DEFAULT_MAX_ATTEMPTS`], 10). Once spent, retry and fallback stop and the last
    /// upstream answer is the client's; a leaf reached with none left answers 502
    /// `attempts_exhausted`.
    pub max_attempts: u32,
    /// What a client's `x-portkey-config` may ask for.
    pub header_config: HeaderConfigLimits,
    /// Where the cache keeps entries (default: 64 MiB in memory).
    pub cache: CacheServer,
    /// The gateway keys' own `usage_limits` and `rate_limits`, one policy per key.
    pub api_key_limits: Vec<portcullis_budget::Policy>,
    /// `server.limits`, `limits_store`, `unpriced_models`.
    pub limits: LimitsServer,
    /// The token of `GET /v1/limits` (as `Authorization: Bearer`); without one, the endpoint
    /// is off.
    pub admin_token: Option<String>,
    /// Bring-your-own-key, per provider kind: the base URL the client's key is sent to
    /// (the kind's official API unless the file says otherwise). Empty: off.
    pub byok: BTreeMap<String, String>,
    /// Origins (`https://hooks.example.com`, `http://127.0.0.1:9000`) that `webhook` and `log`
    /// checks may call; none by default.
    pub webhook_allowlist: Vec<String>,
    /// How long a webhook check may take (default 3 s).
    pub webhook_timeout: Duration,
    /// The console (`/console/`, Portkey's `/public/`): on with `admin_token`.
    pub console: ConsoleServer,
    /// Reload the file when its content changes (read every 2 s), besides on SIGHUP
    /// (default off).
    pub watch_config: bool,
    /// `upstream_ca_file`: certificate authorities (PEM) that `https://` upstreams are
    /// trusted by, beside the webpki roots (an upstream behind a private CA). Read when the
    /// config is, so a reload reads it again.
    pub upstream_ca: Option<UpstreamCa>,
}

/// `server.upstream_ca_file`, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamCa {
    /// The file, as the config names it.
    pub file: String,
    /// Its content: one or more PEM certificates.
    pub pem: std::sync::Arc<[u8]>,
}

/// `server.console`: what the console shows and keeps.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleServer {
    /// Show prompts and answers (PII redacted, truncated to 100,000 characters), and
    /// metadata values of every key (default off: prompts and answers are never shown, and
    /// metadata values only for `log_metadata_keys`).
    pub log_bodies: bool,
    /// Requests kept for a console that opens (default 200, at most 10,000); kept only while
    /// a console is connected.
    pub buffer: usize,
}

impl Default for ConsoleServer {
    fn default() -> Self {
        Self {
            log_bodies: false,
            buffer: 200,
        }
    }
}

fn parse_console(v: &Value, path: &str) -> Result<ConsoleServer> {
    let mut obj = Obj::new(v, path)?;
    let mut console = ConsoleServer::default();
    if let Some((on, _)) = obj.bool("log_bodies")? {
        console.log_bodies = on;
    }
    if let Some(n) = obj.range("buffer", 1..=10_000)? {
        console.buffer = saturating_usize(n);
    }
    obj.finish(" (expected log_bodies, buffer)")?;
    Ok(console)
}

/// The default of [`Server::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of [`Server::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default of [`Server::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of [`Server::body_read_timeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of [`Server::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default of [`Server::h2_max_concurrent_streams`].
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 128;

/// A provider: what it is and how to reach it.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Provider {
    /// Its name, as configs name it.
    pub name: String,
    /// The kind and its settings.
    pub kind: ProviderKind,
    /// Models it serves, for `GET /v1/models`.
    pub models: Vec<String>,
    /// Its `usage_limits` and `rate_limits`, as a policy named `provider:NAME`.
    pub limits: Option<portcullis_budget::Policy>,
    /// Its `prices`: model -> `{"input", "output", "cached_input"}` in USD per million
    /// tokens, over the built-in table.
    pub prices: Option<Value>,
}

/// Provider kinds.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum ProviderKind {
    /// An OpenAI-compatible API.
    OpenAi(OpenAiSpec),
    /// Anthropic's native Messages API.
    Anthropic(AnthropicSpec),
    /// Google's native Gemini API: AI Studio, or Vertex AI.
    Gemini(GeminiSpec),
    /// The offline mock.
    Mock(MockSpec),
}

/// Settings of an OpenAI-compatible provider.
#[non_exhaustive]
#[derive(Clone)]
pub struct OpenAiSpec {
    /// Base URL, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The API key (from the environment).
    pub api_key: Option<String>,
    /// Extra headers sent upstream.
    pub headers: Vec<(String, String)>,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Time allowed for response headers.
    pub response_timeout: Option<Duration>,
    /// Time allowed between body chunks.
    pub idle_timeout: Option<Duration>,
    /// Ask for usage on streams.
    pub stream_usage: bool,
    /// Names of the client's query parameters passed on to the upstream (by default none: the
    /// client's query string is dropped, so it cannot pick an `api-version` or add a `key`).
    pub allow_query_params: Vec<String>,
    /// Azure OpenAI: the `api-version` sent on every request, and the key sent as `api-key`.
    pub azure_api_version: Option<String>,
}

impl std::fmt::Debug for OpenAiSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSpec")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("allow_query_params", &self.allow_query_params)
            .finish_non_exhaustive()
    }
}

/// Settings of the native Anthropic provider.
#[non_exhaustive]
#[derive(Clone)]
pub struct AnthropicSpec {
    /// Base URL (default `https://api.anthropic.com`).
    pub base_url: String,
    /// The API key (`x-api-key`).
    pub api_key: Option<String>,
    /// `anthropic-version` (default `2023-06-01`).
    pub version: Option<String>,
    /// `anthropic-beta` features.
    pub beta: Vec<String>,
    /// `max_tokens` when a request sets none (Anthropic requires it; default 4096).
    pub max_tokens: Option<u32>,
    /// Drop OpenAI fields Anthropic has no equivalent for, instead of a 400 naming them.
    pub drop_unsupported: bool,
    /// Extra headers sent upstream.
    pub headers: Vec<(String, String)>,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Time allowed for response headers.
    pub response_timeout: Option<Duration>,
    /// Time allowed between body chunks.
    pub idle_timeout: Option<Duration>,
}

impl std::fmt::Debug for AnthropicSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicSpec")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Settings of the native Gemini provider (`google`, alias `gemini`; `vertex-ai`).
#[non_exhaustive]
#[derive(Clone)]
pub struct GeminiSpec {
    /// Base URL (default Google's; Vertex: the regional endpoint).
    pub base_url: Option<String>,
    /// The AI Studio key (`x-goog-api-key`, never in the URL).
    pub api_key: Option<String>,
    /// Vertex AI: project, region and the service-account JSON file. Claude models
    /// (`claude-…`, `anthropic.…`) are served from the same project, by Anthropic's publisher.
    pub vertex: Option<(String, String, String)>,
    /// Vertex AI: `max_tokens` for Claude models when a request sets none (default 4096).
    pub max_tokens: Option<u32>,
    /// Vertex AI: `anthropic-beta` features sent with Claude requests.
    pub anthropic_beta: Vec<String>,
    /// Drop OpenAI fields Gemini has no equivalent for, instead of a 400 naming them.
    pub drop_unsupported: bool,
    /// Extra headers sent upstream.
    pub headers: Vec<(String, String)>,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Time allowed for response headers.
    pub response_timeout: Option<Duration>,
    /// Time allowed between body chunks.
    pub idle_timeout: Option<Duration>,
}

impl std::fmt::Debug for GeminiSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiSpec")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("vertex", &self.vertex.as_ref().map(|(p, r, _)| (p, r)))
            .finish_non_exhaustive()
    }
}

/// Settings of the mock provider.
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct MockSpec {
    /// Wait before answering.
    pub latency: Duration,
    /// Wait between stream events.
    pub chunk_delay: Duration,
    /// Share of requests that fail.
    pub failure_rate: f64,
    /// Status of a failure.
    pub failure_status: Option<u16>,
    /// Answer every request with this status.
    pub status: Option<u16>,
    /// The answer's text.
    pub content: Option<String>,
    /// Fixed usage (prompt, completion).
    pub usage: Option<(u64, u64)>,
}

impl Config {
    /// Parses a config file's text (JSON). `env` resolves `${VAR}` references.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::new("", format!("the config is not valid JSON: {e}")))?;
        Self::from_value(&value, env)
    }

    /// Reads a config file, resolving `${VAR}` from the process environment. The file is
    /// JSON, or YAML; a LiteLLM proxy config (recognised by its `model_list`) is imported
    /// (see [`crate::litellm`]), its warnings logged.
    pub fn load(path: &std::path::Path) -> std::result::Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::parse_any(&text, &|name| std::env::var(name).ok())
    }

    /// Parses a config file's text: JSON or YAML, Portcullis's format or LiteLLM's.
    pub fn parse_any(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let value = crate::litellm::parse_yaml(text)?;
        if crate::litellm::is_litellm(&value) {
            let import = crate::litellm::import(&value, env)?;
            for d in &import.warnings {
                tracing::warn!(path = %d.path, "LiteLLM config: {}", d.message);
            }
            return Self::from_value(&import.config, env);
        }
        Self::from_value(&value, env)
    }

    /// Reads a parsed config.
    pub fn from_value(value: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let mut root = Obj::new(value, "")?;
        let server = root
            .get("server")?
            .map(|(v, path)| parse_server(v, &path, env))
            .transpose()?
            .unwrap_or_default();
        let mut providers = BTreeMap::new();
        if let Some((map, path)) = root.object("providers")? {
            for (name, v) in map {
                let provider = parse_provider(name, v, &join(&path, name), env)?;
                providers.insert(name.clone(), provider);
            }
        }
        let mut guards = portcullis_guard::Loader::new().webhook_timeout(server.webhook_timeout);
        for (i, origin) in server.webhook_allowlist.iter().enumerate() {
            guards = guards.allow_origin(origin).map_err(|e| {
                ConfigError::new(format!("server.webhook_allowlist[{i}]"), e.message())
            })?;
        }
        if let Some((v, path)) = root.get("guardrails")? {
            let registry = guards
                .registry(v)
                .map_err(|e| ConfigError::from_build(&path, e))?;
            guards = guards.with_registry(registry);
        }
        let routing = root.section("config", |v, path| {
            Node::parse_guarded(v, path, &providers, Origin::File, &guards)
        })?;
        let configs = root
            .section("configs", |v, path| {
                saved::parse_configs(v, path, &providers, &guards)
            })?
            .unwrap_or_default();
        let partials = root
            .section("partials", saved::parse_partials)?
            .unwrap_or_default();
        let prompts = root
            .section("prompts", |v, path| {
                saved::parse_prompts(v, path, &providers, &configs, &guards)
            })?
            .unwrap_or_default();
        root.finish(
            " (expected server, providers, config, configs, prompts, partials, guardrails)",
        )?;
        if providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "define at least one provider",
            ));
        }
        crate::prompts::check_templates(&prompts, &partials)?;
        Ok(Config {
            server,
            providers,
            routing,
            configs,
            prompts,
            partials,
            guards: std::sync::Arc::new(guards),
        })
    }
}

/// Replaces each `${VAR}` in `s` with the variable's value; a missing variable is an error.
fn substitute(s: &str, path: &str, env: Env<'_>) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ConfigError::new(path, "unterminated `${` (expected `${NAME}`)"))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::new(
                path,
                format!("`${{{name}}}` is not a variable name"),
            ));
        }
        let value = env(name).ok_or_else(|| {
            ConfigError::new(path, format!("environment variable {name} is not set"))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            body_limit: portcullis_core::edge::DEFAULT_BODY_LIMIT,
            api_keys: Vec::new(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            metadata_labels: Vec::new(),
            otlp_endpoint: None,
            log_metadata_keys: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            header_config: HeaderConfigLimits::default(),
            cache: CacheServer::default(),
            api_key_limits: Vec::new(),
            limits: LimitsServer::default(),
            admin_token: None,
            byok: BTreeMap::new(),
            webhook_allowlist: Vec::new(),
            webhook_timeout: portcullis_guard::DEFAULT_WEBHOOK_TIMEOUT,
            console: ConsoleServer::default(),
            watch_config: false,
            upstream_ca: None,
        }
    }
}

/// Reads one key of `server` (the key, as the reader reads it) into the settings.
type ServerKey = fn(&mut Obj<'_>, &str, &mut Server, Env<'_>) -> Result<()>;

/// `server`'s keys in the order they are read, each with its reader; a reader may use what
/// the rows above it read (`header_config` names `api_keys`). A new server setting (a cache's
/// or a budget's store, a `limits` section) drops in as a row, and the unknown-key hint
/// follows.
const SERVER_KEYS: [(&str, ServerKey); 26] = [
    ("listen", |obj, key, s, _| {
        set(
            obj.str(key)?.map(|(a, p)| listen(a, &p)).transpose()?,
            &mut s.listen,
        )
    }),
    ("body_limit", |obj, key, s, _| {
        let n = obj.u64_in(key, 1..=u64::MAX, |_| "must be > 0 (bytes)".into())?;
        set(n.map(saturating_usize), &mut s.body_limit)
    }),
    ("api_keys", |obj, key, s, env| {
        (s.api_keys, s.api_key_limits) = api_keys(obj, key, env)?;
        Ok(())
    }),
    ("shutdown_timeout_ms", |obj, key, s, _| {
        set(obj.positive_ms(key)?, &mut s.shutdown_timeout)
    }),
    ("request_timeout", |obj, key, s, _| {
        set(obj.positive_ms(key)?.map(Some), &mut s.request_timeout)
    }),
    ("metadata_labels", |obj, key, s, _| {
        s.metadata_labels = metadata_labels(obj, key)?;
        Ok(())
    }),
    ("otlp_endpoint", |obj, key, s, env| {
        let url = obj.str(key)?.map(|(u, p)| otlp_endpoint(u, &p, env));
        set(url.transpose()?.map(Some), &mut s.otlp_endpoint)
    }),
    ("log_metadata_keys", |obj, key, s, _| {
        let keys = obj.list(key, |item| {
            item.as_str()
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| "must be a metadata key".to_owned())
        })?;
        set(keys, &mut s.log_metadata_keys)
    }),
    ("max_connections", |obj, key, s, _| {
        let n = obj.u64_in(key, 1..=u64::MAX, |_| "must be > 0".into())?;
        set(n.map(saturating_usize), &mut s.max_connections)
    }),
    ("header_read_timeout_ms", |obj, key, s, _| {
        set(obj.positive_ms(key)?, &mut s.header_read_timeout)
    }),
    ("body_read_timeout_ms", |obj, key, s, _| {
        set(obj.positive_ms(key)?, &mut s.body_read_timeout)
    }),
    ("idle_timeout_ms", |obj, key, s, _| {
        set(obj.positive_ms(key)?, &mut s.idle_timeout)
    }),
    ("h2_max_concurrent_streams", |obj, key, s, _| {
        let n = obj.u64_in(key, 1..=0xFFFF_FFFF, |_| {
            "must be between 1 and 2^32 - 1".into()
        })?;
        set(n.map(|n| n as u32), &mut s.h2_max_concurrent_streams)
    }),
    ("max_attempts", |obj, key, s, _| {
        set(limits::parse_max_attempts(obj, key)?, &mut s.max_attempts)
    }),
    ("header_config", |obj, key, s, _| {
        s.header_config = limits::parse_header_config(obj.get(key)?, &s.api_keys)?;
        Ok(())
    }),
    ("cache", |obj, key, s, env| {
        let cache = obj.section(key, |v, p| cache::parse_cache_server(v, p, env))?;
        set(cache, &mut s.cache)
    }),
    ("limits", |obj, key, s, _| {
        let policies = obj.section(key, budget::parse_policies)?;
        set(policies, &mut s.limits.policies)
    }),
    ("limits_store", |obj, key, s, env| {
        if let Some((store, on_error)) = obj.section(key, |v, p| budget::parse_store(v, p, env))? {
            s.limits.store = store;
            s.limits.on_store_error = on_error;
        }
        Ok(())
    }),
    ("unpriced_models", |obj, key, s, _| {
        let unpriced = obj.str(key)?.map(|(v, p)| budget::parse_unpriced(v, &p));
        set(unpriced.transpose()?, &mut s.limits.unpriced)
    }),
    ("byok", |obj, key, s, env| {
        let byok = obj.section(key, |v, p| parse_byok(v, p, env))?;
        set(byok, &mut s.byok)
    }),
    ("webhook_allowlist", |obj, key, s, _| {
        let origins = obj.list(key, |o| {
            o.as_str()
                .map(str::to_owned)
                .ok_or_else(|| "must be an origin like https://hooks.example.com".to_owned())
        })?;
        set(origins, &mut s.webhook_allowlist)
    }),
    ("webhook_timeout_ms", |obj, key, s, _| {
        set(obj.positive_ms(key)?, &mut s.webhook_timeout)
    }),
    ("admin_token", |obj, key, s, env| {
        let token = obj
            .str(key)?
            .map(|(v, p)| budget::parse_admin_token(v, &p, env));
        set(token.transpose()?.map(Some), &mut s.admin_token)
    }),
    ("console", |obj, key, s, _| {
        let console = obj.section(key, parse_console)?;
        set(console, &mut s.console)
    }),
    ("watch_config", |obj, key, s, _| {
        set(obj.bool(key)?.map(|(on, _)| on), &mut s.watch_config)
    }),
    ("upstream_ca_file", |obj, key, s, env| {
        let ca = obj.str(key)?.map(|(f, p)| upstream_ca(f, &p, env));
        set(ca.transpose()?.map(Some), &mut s.upstream_ca)
    }),
];

/// Why `server.upstream_ca_file` cannot be used by a build without TLS.
const NO_TLS: &str = "needs TLS: this build of the gateway has none (its `rustls` feature)";

/// Reads and checks `server.upstream_ca_file` (`${VAR}` substituted).
fn upstream_ca(file: &str, path: &str, env: Env<'_>) -> Result<UpstreamCa> {
    let file = substitute(file, path, env)?;
    if !cfg!(feature = "rustls") {
        return Err(ConfigError::new(path, NO_TLS));
    }
    let pem = std::fs::read(&file)
        .map_err(|e| ConfigError::new(path, format!("cannot read `{file}`: {e}")))?;
    let ca = UpstreamCa {
        file,
        pem: pem.into(),
    };
    ca.client_builder()?;
    Ok(ca)
}

impl UpstreamCa {
    /// A client builder that trusts these authorities beside the webpki roots; the error
    /// names `server.upstream_ca_file` and the file.
    pub(crate) fn client_builder(&self) -> Result<portcullis_provider::HttpClientBuilder> {
        #[cfg(feature = "rustls")]
        return portcullis_provider::HttpClient::builder()
            .add_root_certificates_pem(&self.pem)
            .map_err(|e| {
                ConfigError::new("server.upstream_ca_file", format!("`{}`: {e}", self.file))
            });
        #[cfg(not(feature = "rustls"))]
        Err(ConfigError::new("server.upstream_ca_file", NO_TLS))
    }
}

/// Sets `into` to what a key gave, if it gave anything.
fn set<T>(value: Option<T>, into: &mut T) -> Result<()> {
    if let Some(value) = value {
        *into = value;
    }
    Ok(())
}

fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn parse_server(v: &Value, path: &str, env: Env<'_>) -> Result<Server> {
    let mut obj = Obj::new(v, path)?;
    let mut server = Server::default();
    for (key, read) in SERVER_KEYS {
        read(&mut obj, key, &mut server, env)?;
    }
    let keys = SERVER_KEYS.map(|(key, _)| key).join(", ");
    obj.finish(&format!(" (expected {keys})"))?;
    Ok(server)
}

fn listen(address: &str, path: &str) -> Result<SocketAddr> {
    address.parse().map_err(|_| {
        ConfigError::new(
            path,
            format!("`{address}` is not an address like 127.0.0.1:8787"),
        )
    })
}

/// `server.api_keys`: name -> key, each key at least 8 characters; or name -> `{"key",
/// "usage_limits", "rate_limits"}`, the key's own limits (a policy named `api_key:NAME`).
/// Gateway keys (name, key) and the policies of those that have limits.
type ApiKeys = (Vec<(String, String)>, Vec<portcullis_budget::Policy>);

fn api_keys(obj: &mut Obj<'_>, key: &str, env: Env<'_>) -> Result<ApiKeys> {
    let Some((map, path)) = obj.object(key)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut keys = Vec::with_capacity(map.len());
    let mut policies = Vec::new();
    for (name, value) in map {
        let key_path = join(&path, name);
        let (key, key_path) = match value {
            Value::String(key) => (key.as_str(), key_path),
            Value::Object(_) => {
                let mut entry = Obj::new(value, &key_path)?;
                let (key, kpath) = entry.str("key")?.ok_or_else(|| {
                    ConfigError::new(join(&key_path, "key"), "missing (the key itself)")
                })?;
                if let Some(policy) = budget::owner_policy(
                    &mut entry,
                    format!("api_key:{name}"),
                    portcullis_budget::Dimension::ApiKey,
                    name,
                )? {
                    policies.push(policy);
                }
                entry.finish(" (expected key, usage_limits, rate_limits)")?;
                (key, kpath)
            }
            other => {
                return Err(ConfigError::new(
                    key_path,
                    format!(
                        "must be a string or an object {{\"key\", \"usage_limits\", \"rate_limits\"}}, got {}",
                        type_name(other)
                    ),
                ));
            }
        };
        let key = substitute(key, &key_path, env)?;
        if key.len() < 8 {
            return Err(ConfigError::new(
                key_path,
                "a key must be at least 8 characters",
            ));
        }
        keys.push((name.clone(), key));
    }
    Ok((keys, policies))
}

/// `server.metadata_labels`: at most 8 metadata keys that may become metric labels.
fn metadata_labels(obj: &mut Obj<'_>, key: &str) -> Result<Vec<String>> {
    let Some((items, path)) = obj.array(key)? else {
        return Ok(Vec::new());
    };
    if items.len() > 8 {
        return Err(ConfigError::new(
            path,
            "at most 8 metadata keys can be labels",
        ));
    }
    reader::items(items, &path, |item| {
        item.as_str()
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .map(str::to_owned)
            .ok_or_else(|| "must be a metadata key of letters, digits and `_`".to_owned())
    })
}

fn otlp_endpoint(url: &str, path: &str, env: Env<'_>) -> Result<String> {
    let url = substitute(url, path, env)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::new(path, "must be an http:// or https:// URL"));
    }
    if !cfg!(feature = "otlp") {
        return Err(ConfigError::new(
            path,
            "this build has no OTLP export: build with `--features otlp`",
        ));
    }
    Ok(url)
}

/// The OpenAI-compatible provider kinds and their default base URLs. (`anthropic` is the
/// native Messages API; Anthropic's OpenAI-compatible endpoint stays reachable as
/// `openai-compatible` with `base_url: https://api.anthropic.com/v1`.)
const OPENAI_KINDS: [(&str, Option<&str>); 4] = [
    ("openai", Some("https://api.openai.com/v1")),
    ("groq", Some("https://api.groq.com/openai/v1")),
    ("mistral-ai", Some("https://api.mistral.ai/v1")),
    ("openai-compatible", None),
];

/// `server.byok`: kind -> `{"base_url"}` (`{}`: the kind's official API).
fn parse_byok(v: &Value, path: &str, env: Env<'_>) -> Result<BTreeMap<String, String>> {
    let map = v.as_object().ok_or_else(|| {
        ConfigError::new(path, "must be an object of provider kind -> {\"base_url\"}")
    })?;
    let mut out = BTreeMap::new();
    for (kind, spec) in map {
        let at = join(path, kind);
        let default = if kind == "anthropic" {
            Some(portcullis_provider::anthropic::DEFAULT_BASE_URL)
        } else if kind == "google" || kind == "gemini" {
            Some(portcullis_provider::gemini::DEFAULT_BASE_URL)
        } else {
            OPENAI_KINDS
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, url)| *url)
                .ok_or_else(|| {
                    ConfigError::new(
                        &at,
                        format!("unknown provider kind `{kind}` (one of {})", kinds()),
                    )
                })?
        };
        let mut obj = Obj::new(spec, &at)?;
        let base_url = match obj.str("base_url")? {
            Some((u, p)) => substitute(u, &p, env)?,
            None => default
                .ok_or_else(|| ConfigError::new(join(&at, "base_url"), "required for this kind"))?
                .to_owned(),
        };
        obj.finish(" (expected base_url)")?;
        out.insert(kind.clone(), base_url);
    }
    Ok(out)
}

/// Every provider kind, for messages.
fn kinds() -> String {
    let mut names: Vec<&str> = OPENAI_KINDS.iter().map(|(kind, _)| *kind).collect();
    names.insert(1, "anthropic");
    names.insert(2, "azure-openai");
    names.insert(3, "google");
    names.insert(4, "gemini");
    names.insert(5, "vertex-ai");
    names.push("mock");
    names.join(", ")
}

fn parse_provider(name: &str, v: &Value, path: &str, env: Env<'_>) -> Result<Provider> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError::new(
            path,
            "a provider name is 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    let mut obj = Obj::new(v, path)?;
    let (kind, kind_path) = obj.str("provider")?.ok_or_else(|| {
        ConfigError::new(
            join(path, "provider"),
            format!("missing (one of {})", kinds()),
        )
    })?;
    let models = obj.list("models", |m| {
        m.as_str()
            .map(str::to_owned)
            .ok_or_else(|| "must be a string".to_owned())
    })?;
    let limits = budget::owner_policy(
        &mut obj,
        format!("provider:{name}"),
        portcullis_budget::Dimension::Provider,
        name,
    )?;
    let prices = obj.section("prices", |v, p| {
        // Checked now, with its path; read again when the gateway is built.
        let mut table = portcullis_budget::PriceTable::empty();
        let mut by_provider = serde_json::Map::new();
        by_provider.insert(name.to_owned(), v.clone());
        table
            .extend_from_json(&Value::Object(by_provider))
            .map_err(|e| {
                // The error's path starts at the provider name: keep what is below it.
                let below = e.path().strip_prefix(name).unwrap_or(e.path());
                ConfigError::new(format!("{p}{below}"), e.message())
            })?;
        Ok(v.clone())
    })?;
    let kind = if kind == "mock" {
        ProviderKind::Mock(mock_spec(obj)?)
    } else if matches!(kind, "google" | "gemini" | "vertex-ai") {
        let spec = gemini_spec(obj, kind == "vertex-ai", env)?;
        crate::build::gemini_builder(name, &spec, None)
            .build()
            .map_err(|e| ConfigError::from_build(path, e))?;
        ProviderKind::Gemini(spec)
    } else if kind == "azure-openai" {
        let spec = azure_spec(obj, env)?;
        crate::build::openai_builder(name, &spec, None)
            .build()
            .map_err(|e| ConfigError::new(path, e.to_string()))?;
        ProviderKind::OpenAi(spec)
    } else if kind == "anthropic" {
        let spec = anthropic_spec(obj, env)?;
        crate::build::anthropic_builder(name, &spec, None)
            .build()
            .map_err(|e| ConfigError::from_build(path, e))?;
        ProviderKind::Anthropic(spec)
    } else if let Some((_, default_url)) = OPENAI_KINDS.iter().find(|(k, _)| *k == kind) {
        let spec = openai_spec(obj, kind, *default_url, env)?;
        // Build once now so a bad URL, header or query parameter name stops start-up here,
        // with its path.
        crate::build::openai_builder(name, &spec, None)
            .build()
            .map_err(|e| {
                refused_query_param(&spec.allow_query_params, &join(path, "allow_query_params"))
                    .unwrap_or_else(|| ConfigError::new(path, e.to_string()))
            })?;
        ProviderKind::OpenAi(spec)
    } else {
        return Err(ConfigError::new(
            kind_path,
            format!("unknown provider `{kind}` (one of {})", kinds()),
        ));
    };
    Ok(Provider {
        name: name.to_owned(),
        kind,
        models: models.unwrap_or_default(),
        limits,
        prices,
    })
}

fn mock_spec(mut obj: Obj<'_>) -> Result<MockSpec> {
    let spec = MockSpec {
        latency: obj
            .u64("latency_ms")?
            .map_or(Duration::ZERO, |(n, _)| ms(n)),
        chunk_delay: obj
            .u64("chunk_delay_ms")?
            .map_or(Duration::ZERO, |(n, _)| ms(n)),
        failure_rate: match obj.f64("failure_rate")? {
            None => 0.0,
            Some((rate, _)) if (0.0..=1.0).contains(&rate) => rate,
            Some((_, path)) => return Err(ConfigError::new(path, "must be between 0 and 1")),
        },
        failure_status: obj.status("failure_status")?,
        status: obj.status("status")?,
        content: obj.str("content")?.map(|(s, _)| s.to_owned()),
        usage: obj.section("usage", |v, path| {
            let get = |k: &str| {
                v.get(k)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| ConfigError::new(join(path, k), "must be a whole number >= 0"))
            };
            Ok((get("prompt_tokens")?, get("completion_tokens")?))
        })?,
    };
    obj.finish(" (a mock takes latency_ms, chunk_delay_ms, failure_rate, failure_status, status, content, usage, models)")?;
    Ok(spec)
}

fn openai_spec(
    mut obj: Obj<'_>,
    kind: &str,
    default_url: Option<&str>,
    env: Env<'_>,
) -> Result<OpenAiSpec> {
    let base_url = match obj.str("base_url")? {
        Some((s, path)) => substitute(s, &path, env)?,
        None => default_url
            .ok_or_else(|| {
                ConfigError::new(
                    obj.path_of("base_url"),
                    format!("missing (required for `{kind}`)"),
                )
            })?
            .to_owned(),
    };
    let api_key = obj
        .str("api_key")?
        .map(|(s, path)| substitute(s, &path, env))
        .transpose()?;
    let headers = upstream_headers(&mut obj, env)?;
    let allow_query_params = obj.list("allow_query_params", |q| {
        q.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("must be a string, got {}", type_name(q)))
    })?;
    let spec = OpenAiSpec {
        base_url,
        api_key,
        headers,
        connect_timeout: obj.positive_ms("connect_timeout_ms")?,
        response_timeout: obj.positive_ms("response_timeout_ms")?,
        idle_timeout: obj.positive_ms("idle_timeout_ms")?,
        stream_usage: obj.bool("stream_usage")?.is_none_or(|(b, _)| b),
        allow_query_params: allow_query_params.unwrap_or_default(),
        azure_api_version: None,
    };
    obj.finish(" (expected provider, base_url, api_key, headers, models, connect_timeout_ms, response_timeout_ms, idle_timeout_ms, stream_usage, allow_query_params)")?;
    Ok(spec)
}

/// `google` / `gemini` (`api_key`) and `vertex-ai` (`vertex_project`, `vertex_region`,
/// `vertex_service_account_file`; for its Claude models `max_tokens` and `anthropic_beta`).
fn gemini_spec(mut obj: Obj<'_>, vertex: bool, env: Env<'_>) -> Result<GeminiSpec> {
    let base_url = obj
        .str("base_url")?
        .map(|(s, p)| substitute(s, &p, env))
        .transpose()?;
    let mut api_key = None;
    let mut account = None;
    let mut max_tokens = None;
    let mut anthropic_beta = Vec::new();
    if vertex {
        let mut field = |key: &str, what: &str| -> Result<String> {
            let (v, p) = obj
                .str(key)?
                .ok_or_else(|| ConfigError::new(obj.path_of(key), format!("missing ({what})")))?;
            substitute(v, &p, env)
        };
        let project = field("vertex_project", "the Google Cloud project")?;
        let region = field("vertex_region", "e.g. us-central1, or global")?;
        let file = field(
            "vertex_service_account_file",
            "the path of a service-account JSON key",
        )?;
        account = Some((project, region, file));
        max_tokens = obj
            .u64_in("max_tokens", 1..=u64::from(u32::MAX), |_| {
                "must be > 0".into()
            })?
            .map(|n| n as u32);
        anthropic_beta = obj
            .list("anthropic_beta", |b| {
                b.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("must be a string, got {}", type_name(b)))
            })?
            .unwrap_or_default();
    } else {
        api_key = obj
            .str("api_key")?
            .map(|(s, path)| substitute(s, &path, env))
            .transpose()?;
    }
    let drop_unsupported = obj.bool("drop_unsupported")?.is_some_and(|(b, _)| b);
    let headers = upstream_headers(&mut obj, env)?;
    let spec = GeminiSpec {
        base_url,
        api_key,
        vertex: account,
        max_tokens,
        anthropic_beta,
        drop_unsupported,
        headers,
        connect_timeout: obj.positive_ms("connect_timeout_ms")?,
        response_timeout: obj.positive_ms("response_timeout_ms")?,
        idle_timeout: obj.positive_ms("idle_timeout_ms")?,
    };
    if vertex {
        obj.finish(" (expected provider, vertex_project, vertex_region, vertex_service_account_file, base_url, max_tokens, anthropic_beta, drop_unsupported, headers, models, connect_timeout_ms, response_timeout_ms, idle_timeout_ms)")?;
    } else {
        obj.finish(" (expected provider, api_key, base_url, drop_unsupported, headers, models, connect_timeout_ms, response_timeout_ms, idle_timeout_ms)")?;
    }
    Ok(spec)
}

/// Azure OpenAI: `base_url` of the resource (`https://NAME.openai.azure.com`),
/// `deployment_id`, `api_version` (default 2024-10-21), `api_key` sent as `api-key`.
fn azure_spec(mut obj: Obj<'_>, env: Env<'_>) -> Result<OpenAiSpec> {
    let (base, bpath) = obj.str("base_url")?.ok_or_else(|| {
        ConfigError::new(
            obj.path_of("base_url"),
            "missing (the resource, e.g. https://NAME.openai.azure.com)",
        )
    })?;
    let base = substitute(base, &bpath, env)?;
    let (deployment, dpath) = obj.str("deployment_id")?.ok_or_else(|| {
        ConfigError::new(
            obj.path_of("deployment_id"),
            "missing (the deployment's name)",
        )
    })?;
    if deployment.is_empty()
        || !deployment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError::new(
            dpath,
            "letters, digits, `-`, `_` or `.` only",
        ));
    }
    let api_version = match obj.str("api_version")? {
        Some((v, p)) => substitute(v, &p, env)?,
        None => "2024-10-21".to_owned(),
    };
    let api_key = obj
        .str("api_key")?
        .map(|(s, path)| substitute(s, &path, env))
        .transpose()?;
    let headers = upstream_headers(&mut obj, env)?;
    let spec = OpenAiSpec {
        base_url: format!(
            "{}/openai/deployments/{deployment}",
            base.trim_end_matches('/')
        ),
        api_key,
        headers,
        connect_timeout: obj.positive_ms("connect_timeout_ms")?,
        response_timeout: obj.positive_ms("response_timeout_ms")?,
        idle_timeout: obj.positive_ms("idle_timeout_ms")?,
        stream_usage: obj.bool("stream_usage")?.is_none_or(|(b, _)| b),
        allow_query_params: Vec::new(),
        azure_api_version: Some(api_version),
    };
    obj.finish(" (expected provider, base_url, deployment_id, api_version, api_key, headers, models, connect_timeout_ms, response_timeout_ms, idle_timeout_ms, stream_usage)")?;
    Ok(spec)
}

fn anthropic_spec(mut obj: Obj<'_>, env: Env<'_>) -> Result<AnthropicSpec> {
    let base_url = match obj.str("base_url")? {
        Some((s, path)) => substitute(s, &path, env)?,
        None => portcullis_provider::anthropic::DEFAULT_BASE_URL.to_owned(),
    };
    let api_key = obj
        .str("api_key")?
        .map(|(s, path)| substitute(s, &path, env))
        .transpose()?;
    let version = obj.str("anthropic_version")?.map(|(s, _)| s.to_owned());
    let beta = obj
        .list("anthropic_beta", |b| {
            b.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("must be a string, got {}", type_name(b)))
        })?
        .unwrap_or_default();
    let max_tokens = obj
        .u64_in("max_tokens", 1..=u64::from(u32::MAX), |_| {
            "must be > 0".into()
        })?
        .map(|n| n as u32);
    let drop_unsupported = obj.bool("drop_unsupported")?.is_some_and(|(b, _)| b);
    let headers = upstream_headers(&mut obj, env)?;
    let spec = AnthropicSpec {
        base_url,
        api_key,
        version,
        beta,
        max_tokens,
        drop_unsupported,
        headers,
        connect_timeout: obj.positive_ms("connect_timeout_ms")?,
        response_timeout: obj.positive_ms("response_timeout_ms")?,
        idle_timeout: obj.positive_ms("idle_timeout_ms")?,
    };
    obj.finish(" (expected provider, base_url, api_key, anthropic_version, anthropic_beta, max_tokens, drop_unsupported, headers, models, connect_timeout_ms, response_timeout_ms, idle_timeout_ms)")?;
    Ok(spec)
}

/// A provider's `headers`, each value with `${VAR}` resolved.
fn upstream_headers(obj: &mut Obj<'_>, env: Env<'_>) -> Result<Vec<(String, String)>> {
    let Some((map, path)) = obj.object("headers")? else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(name, value)| {
            let value_path = join(&path, name);
            let Value::String(value) = value else {
                return Err(ConfigError::new(value_path, "must be a string"));
            };
            Ok((name.clone(), substitute(value, &value_path, env)?))
        })
        .collect()
}

/// The first of `names` that the OpenAI provider refuses as a query parameter name, as an error
/// at its index under `path`. The provider's own rule decides, so the two cannot drift; it is
/// asked name by name only once a build has failed, to tell which name it was.
fn refused_query_param(names: &[String], path: &str) -> Option<ConfigError> {
    names.iter().enumerate().find_map(|(i, name)| {
        let err = portcullis_provider::OpenAi::builder("http://localhost")
            .allow_query_params([name.as_str()])
            .build()
            .err()?
            .to_string();
        let message = err.strip_prefix("allow_query_params: ").unwrap_or(&err);
        Some(ConfigError::new(reader::index(path, i), message))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "OPENAI_API_KEY").then(|| "sk-from-env".to_owned())
    }

    fn err(text: &str) -> String {
        Config::parse(text, &env).unwrap_err().to_string()
    }

    #[test]
    fn substitutes_environment_variables() {
        assert_eq!(
            substitute("Bearer ${OPENAI_API_KEY}!", "p", &env).unwrap(),
            "Bearer sk-from-env!"
        );
        assert_eq!(
            substitute("${MISSING}", "providers.a.api_key", &env)
                .unwrap_err()
                .to_string(),
            "providers.a.api_key: environment variable MISSING is not set"
        );
        assert!(substitute("${", "p", &env).is_err());
        assert!(substitute("${a b}", "p", &env).is_err());
    }

    #[test]
    fn minimal_config_with_defaults() {
        let c = Config::parse(r#"{"providers":{"m":{"provider":"mock"}}}"#, &env).unwrap();
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.server.body_limit, 32 * 1024 * 1024);
        assert!(c.routing.is_none());
        assert!(matches!(c.providers["m"].kind, ProviderKind::Mock(_)));
    }

    #[test]
    fn openai_defaults_and_secret_redaction() {
        let c = Config::parse(
            r#"{"providers":{"oa":{"provider":"openai","api_key":"${OPENAI_API_KEY}"},
                "gm":{"provider":"gemini","api_key":"x"}}}"#,
            &env,
        )
        .unwrap();
        let ProviderKind::OpenAi(spec) = &c.providers["oa"].kind else {
            panic!()
        };
        assert_eq!(spec.base_url, "https://api.openai.com/v1");
        assert_eq!(spec.api_key.as_deref(), Some("sk-from-env"));
        assert!(!format!("{c:?}").contains("sk-from-env"));
    }

    #[test]
    fn errors_name_their_path() {
        assert_eq!(
            err(r#"{"providers":{}}"#),
            "providers: define at least one provider"
        );
        assert_eq!(
            err(r#"{"providers":{"a":{"provider":"openai","api_key":"${NOPE}"}}}"#),
            "providers.a.api_key: environment variable NOPE is not set"
        );
        assert_eq!(
            err(r#"{"providers":{"a":{"provider":"nope"}}}"#),
            "providers.a.provider: unknown provider `nope` (one of openai, anthropic, azure-openai, google, gemini, vertex-ai, groq, mistral-ai, openai-compatible, mock)"
        );
        assert!(
            err(r#"{"providers":{"a":{"provider":"openai-compatible"}}}"#)
                .starts_with("providers.a.base_url: missing")
        );
        assert!(
            err(r#"{"providers":{"a":{"provider":"openai","base_url":"ftp://x"}}}"#)
                .starts_with("providers.a: ")
        );
        assert!(
            err(r#"{"providers":{"a":{"provider":"mock","latency":5}}}"#)
                .starts_with("providers.a.latency: unknown key")
        );
        assert!(
            err(r#"{"server":{"listen":"nowhere"},"providers":{"a":{"provider":"mock"}}}"#)
                .starts_with("server.listen: ")
        );
        assert!(
            err(r#"{"server":{"api_keys":{"k":"short"}},"providers":{"a":{"provider":"mock"}}}"#)
                .starts_with("server.api_keys.k: ")
        );
        assert!(
            err(r#"{"providers":{"a":{"provider":"mock"}},"extra":1}"#)
                .starts_with("extra: unknown key")
        );
        assert!(err("{").starts_with("the config is not valid JSON"));
    }

    #[test]
    fn server_limits_have_defaults_and_are_read() {
        let c = Config::parse(r#"{"providers":{"m":{"provider":"mock"}}}"#, &env).unwrap();
        assert_eq!(c.server.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(c.server.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(c.server.body_read_timeout, DEFAULT_BODY_READ_TIMEOUT);
        assert_eq!(c.server.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(
            c.server.h2_max_concurrent_streams,
            DEFAULT_H2_MAX_CONCURRENT_STREAMS
        );
        assert!(c.server.log_metadata_keys.is_empty());
        let c = Config::parse(
            r#"{"server":{"max_connections":10,"header_read_timeout_ms":1000,
                "body_read_timeout_ms":2000,"idle_timeout_ms":3000,
                "h2_max_concurrent_streams":4,"log_metadata_keys":["team"]},
                "providers":{"m":{"provider":"mock"}}}"#,
            &env,
        )
        .unwrap();
        assert_eq!(c.server.max_connections, 10);
        assert_eq!(c.server.header_read_timeout, ms(1000));
        assert_eq!(c.server.body_read_timeout, ms(2000));
        assert_eq!(c.server.idle_timeout, ms(3000));
        assert_eq!(c.server.h2_max_concurrent_streams, 4);
        assert_eq!(c.server.log_metadata_keys, ["team"]);
        let bad = |server: &str| {
            err(&format!(
                r#"{{"server":{{{server}}},"providers":{{"m":{{"provider":"mock"}}}}}}"#
            ))
        };
        assert!(bad(r#""max_connections":0"#).starts_with("server.max_connections: "));
        assert!(bad(r#""idle_timeout_ms":0"#).starts_with("server.idle_timeout_ms: "));
        assert!(
            bad(r#""h2_max_concurrent_streams":0"#)
                .starts_with("server.h2_max_concurrent_streams: ")
        );
        assert!(bad(r#""log_metadata_keys":[1]"#).starts_with("server.log_metadata_keys[0]: "));
    }
}
