//! The gateway's config file: providers defined once, a routing tree in Portkey's schema, and
//! server settings. Parsing is strict: an unknown key, a wrong type or a value out of range
//! stops start-up with an error that names its path (`config.targets[1].weight: must be >= 0`).
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

mod limits;
mod reader;
mod tree;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

pub use self::limits::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_REQUEST_TIMEOUT, HeaderConfigLimits, MAX_HEADER_CONFIG_BYTES,
};
pub use self::reader::ConfigError;
use self::reader::{Obj, Result, join, type_name};
pub use self::tree::{Balancer, BreakerSpec, Mode, Node, NodeKind, Origin, RetrySpec, StickyKey};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// A whole config file.
#[derive(Clone, Debug)]
pub struct Config {
    /// Server settings.
    pub server: Server,
    /// Providers by name (Portkey's virtual keys).
    pub providers: BTreeMap<String, Provider>,
    /// The routing tree; without one, requests must name a provider with
    /// `x-portkey-virtual-key` or carry an `x-portkey-config`.
    pub routing: Option<Node>,
}

/// Server settings.
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
}

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
#[derive(Clone, Debug)]
pub struct Provider {
    /// Its name, as configs name it.
    pub name: String,
    /// The kind and its settings.
    pub kind: ProviderKind,
    /// Models it serves, for `GET /v1/models`.
    pub models: Vec<String>,
}

/// Provider kinds.
#[derive(Clone, Debug)]
pub enum ProviderKind {
    /// An OpenAI-compatible API.
    OpenAi(OpenAiSpec),
    /// The offline mock.
    Mock(MockSpec),
}

/// Settings of an OpenAI-compatible provider.
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

/// Settings of the mock provider.
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

    /// Reads a config file, resolving `${VAR}` from the process environment.
    pub fn load(path: &std::path::Path) -> std::result::Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, &|name| std::env::var(name).ok())
    }

    /// Reads a parsed config.
    pub fn from_value(value: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let mut root = Obj::new(value, "")?;
        let server = match root.get("server")? {
            Some((v, path)) => parse_server(v, &path, env)?,
            None => parse_server(&Value::Object(Default::default()), "server", env)?,
        };
        let mut providers = BTreeMap::new();
        if let Some((map, path)) = root.object("providers")? {
            for (name, v) in map {
                let provider = parse_provider(name, v, &join(&path, name), env)?;
                providers.insert(name.clone(), provider);
            }
        }
        let routing = match root.get("config")? {
            None | Some((Value::Null, _)) => None,
            Some((v, path)) => Some(Node::parse(v, &path, &providers, Origin::File)?),
        };
        root.finish(" (expected server, providers, config)")?;
        if providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "define at least one provider",
            ));
        }
        Ok(Config {
            server,
            providers,
            routing,
        })
    }
}

/// Replaces each `${VAR}` in `s` with the variable's value; a missing variable is an error.
fn substitute(s: &str, path: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
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

fn positive_ms(obj: &mut Obj<'_>, key: &str) -> Result<Option<Duration>> {
    match obj.u64(key)? {
        None => Ok(None),
        Some((0, path)) => Err(ConfigError::new(path, "must be > 0 (milliseconds)")),
        Some((n, _)) => Ok(Some(ms(n))),
    }
}

fn parse_server(v: &Value, path: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Server> {
    let mut obj = Obj::new(v, path)?;
    let listen = match obj.str("listen")? {
        None => DEFAULT_LISTEN.parse().expect("valid default"),
        Some((s, path)) => s.parse().map_err(|_| {
            ConfigError::new(path, format!("`{s}` is not an address like 127.0.0.1:8787"))
        })?,
    };
    let body_limit = match obj.u64("body_limit")? {
        None => portcullis_core::edge::DEFAULT_BODY_LIMIT,
        Some((0, path)) => return Err(ConfigError::new(path, "must be > 0 (bytes)")),
        Some((n, _)) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let mut api_keys = Vec::new();
    if let Some((map, path)) = obj.object("api_keys")? {
        for (name, key) in map {
            let key_path = join(&path, name);
            let Value::String(key) = key else {
                return Err(ConfigError::new(
                    key_path,
                    format!("must be a string, got {}", type_name(key)),
                ));
            };
            let key = substitute(key, &key_path, env)?;
            if key.len() < 8 {
                return Err(ConfigError::new(
                    key_path,
                    "a key must be at least 8 characters",
                ));
            }
            api_keys.push((name.clone(), key));
        }
    }
    let shutdown_timeout =
        positive_ms(&mut obj, "shutdown_timeout_ms")?.unwrap_or(Duration::from_secs(30));
    let request_timeout =
        positive_ms(&mut obj, "request_timeout")?.or(Some(DEFAULT_REQUEST_TIMEOUT));
    let mut metadata_labels = Vec::new();
    if let Some((items, lpath)) = obj.array("metadata_labels")? {
        if items.len() > 8 {
            return Err(ConfigError::new(
                lpath,
                "at most 8 metadata keys can be labels",
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let key = item
                .as_str()
                .filter(|k| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                .ok_or_else(|| {
                    ConfigError::new(
                        reader::index(&lpath, i),
                        "must be a metadata key of letters, digits and `_`",
                    )
                })?;
            metadata_labels.push(key.to_owned());
        }
    }
    let otlp_endpoint = match obj.str("otlp_endpoint")? {
        None => None,
        Some((s, opath)) => {
            let url = substitute(s, &opath, env)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(
                    opath,
                    "must be an http:// or https:// URL",
                ));
            }
            if !cfg!(feature = "otlp") {
                return Err(ConfigError::new(
                    opath,
                    "this build has no OTLP export: build with `--features otlp`",
                ));
            }
            Some(url)
        }
    };
    let log_metadata_keys = match obj.array("log_metadata_keys")? {
        None => Vec::new(),
        Some((items, lpath)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ConfigError::new(reader::index(&lpath, i), "must be a metadata key")
                    })
            })
            .collect::<Result<_>>()?,
    };
    let max_connections = match obj.u64("max_connections")? {
        None => DEFAULT_MAX_CONNECTIONS,
        Some((0, path)) => return Err(ConfigError::new(path, "must be > 0")),
        Some((n, _)) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let header_read_timeout =
        positive_ms(&mut obj, "header_read_timeout_ms")?.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT);
    let body_read_timeout =
        positive_ms(&mut obj, "body_read_timeout_ms")?.unwrap_or(DEFAULT_BODY_READ_TIMEOUT);
    let idle_timeout = positive_ms(&mut obj, "idle_timeout_ms")?.unwrap_or(DEFAULT_IDLE_TIMEOUT);
    let h2_max_concurrent_streams = match obj.u64("h2_max_concurrent_streams")? {
        None => DEFAULT_H2_MAX_CONCURRENT_STREAMS,
        Some((n @ 1..=0xFFFF_FFFF, _)) => n as u32,
        Some((_, path)) => return Err(ConfigError::new(path, "must be between 1 and 2^32 - 1")),
    };
    let max_attempts = limits::parse_max_attempts(&mut obj)?;
    let header_config = limits::parse_header_config(obj.get("header_config")?, &api_keys)?;
    obj.finish(" (expected listen, body_limit, api_keys, shutdown_timeout_ms, request_timeout, metadata_labels, otlp_endpoint, log_metadata_keys, max_connections, header_read_timeout_ms, body_read_timeout_ms, idle_timeout_ms, h2_max_concurrent_streams, max_attempts, header_config)")?;
    Ok(Server {
        listen,
        body_limit,
        api_keys,
        shutdown_timeout,
        request_timeout,
        metadata_labels,
        otlp_endpoint,
        log_metadata_keys,
        max_connections,
        header_read_timeout,
        body_read_timeout,
        idle_timeout,
        h2_max_concurrent_streams,
        max_attempts,
        header_config,
    })
}

/// Default base URLs of OpenAI-compatible endpoints by provider type.
fn default_base_url(kind: &str) -> Option<&'static str> {
    match kind {
        "openai" => Some("https://api.openai.com/v1"),
        "anthropic" => Some("https://api.anthropic.com/v1"),
        "gemini" | "google" => Some("https://generativelanguage.googleapis.com/v1beta/openai"),
        "groq" => Some("https://api.groq.com/openai/v1"),
        "mistral-ai" => Some("https://api.mistral.ai/v1"),
        "openai-compatible" => None,
        _ => None,
    }
}

const KINDS: &str = "openai, anthropic, gemini, groq, mistral-ai, openai-compatible, mock";

fn parse_provider(
    name: &str,
    v: &Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider> {
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
        ConfigError::new(join(path, "provider"), format!("missing (one of {KINDS})"))
    })?;
    let models = match obj.array("models")? {
        None => Vec::new(),
        Some((items, mpath)) => items
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ConfigError::new(reader::index(&mpath, i), "must be a string"))
            })
            .collect::<Result<_>>()?,
    };
    let kind = if kind == "mock" {
        let mut spec = MockSpec::default();
        if let Some((n, _)) = obj.u64("latency_ms")? {
            spec.latency = ms(n);
        }
        if let Some((n, _)) = obj.u64("chunk_delay_ms")? {
            spec.chunk_delay = ms(n);
        }
        if let Some((rate, rpath)) = obj.f64("failure_rate")? {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::new(rpath, "must be between 0 and 1"));
            }
            spec.failure_rate = rate;
        }
        spec.failure_status = status(&mut obj, "failure_status")?;
        spec.status = status(&mut obj, "status")?;
        spec.content = obj.str("content")?.map(|(s, _)| s.to_owned());
        if let Some((u, upath)) = obj.object("usage")? {
            let get = |k: &str| {
                u.get(k)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| ConfigError::new(join(&upath, k), "must be a whole number >= 0"))
            };
            spec.usage = Some((get("prompt_tokens")?, get("completion_tokens")?));
        }
        obj.finish(" (a mock takes latency_ms, chunk_delay_ms, failure_rate, failure_status, status, content, usage, models)")?;
        ProviderKind::Mock(spec)
    } else if KINDS.split(", ").any(|k| k == kind) {
        let base_url = match obj.str("base_url")? {
            Some((s, bpath)) => substitute(s, &bpath, env)?,
            None => default_base_url(kind)
                .ok_or_else(|| {
                    ConfigError::new(
                        join(path, "base_url"),
                        format!("missing (required for `{kind}`)"),
                    )
                })?
                .to_owned(),
        };
        let api_key = match obj.str("api_key")? {
            Some((s, kpath)) => Some(substitute(s, &kpath, env)?),
            None => None,
        };
        let mut headers = Vec::new();
        if let Some((map, hpath)) = obj.object("headers")? {
            for (k, hv) in map {
                let hp = join(&hpath, k);
                let Value::String(hv) = hv else {
                    return Err(ConfigError::new(hp, "must be a string"));
                };
                headers.push((k.clone(), substitute(hv, &hp, env)?));
            }
        }
        let query_path = join(path, "allow_query_params");
        let allow_query_params = match obj.array("allow_query_params")? {
            None => Vec::new(),
            Some((items, qpath)) => items
                .iter()
                .enumerate()
                .map(|(i, q)| match q {
                    Value::String(q) => Ok(q.clone()),
                    other => Err(ConfigError::new(
                        reader::index(&qpath, i),
                        format!("must be a string, got {}", type_name(other)),
                    )),
                })
                .collect::<Result<_>>()?,
        };
        let spec = OpenAiSpec {
            base_url,
            api_key,
            headers,
            connect_timeout: positive_ms(&mut obj, "connect_timeout_ms")?,
            response_timeout: positive_ms(&mut obj, "response_timeout_ms")?,
            idle_timeout: positive_ms(&mut obj, "idle_timeout_ms")?,
            stream_usage: obj.bool("stream_usage")?.is_none_or(|(b, _)| b),
            allow_query_params,
        };
        obj.finish(" (expected provider, base_url, api_key, headers, models, connect_timeout_ms, response_timeout_ms, idle_timeout_ms, stream_usage, allow_query_params)")?;
        // Build once now so a bad URL, header or query parameter name stops start-up here,
        // with its path.
        crate::build::openai_builder(name, &spec, None)
            .build()
            .map_err(|e| {
                refused_query_param(&spec.allow_query_params, &query_path)
                    .unwrap_or_else(|| ConfigError::new(path, e.to_string()))
            })?;
        ProviderKind::OpenAi(spec)
    } else {
        return Err(ConfigError::new(
            kind_path,
            format!("unknown provider `{kind}` (one of {KINDS})"),
        ));
    };
    Ok(Provider {
        name: name.to_owned(),
        kind,
        models,
    })
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

fn status(obj: &mut Obj<'_>, key: &str) -> Result<Option<u16>> {
    match obj.u64(key)? {
        None => Ok(None),
        Some((n @ 100..=599, _)) => Ok(Some(n as u16)),
        Some((n, path)) => Err(ConfigError::new(path, format!("{n} is not an HTTP status"))),
    }
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
            "providers.a.provider: unknown provider `nope` (one of openai, anthropic, gemini, groq, mistral-ai, openai-compatible, mock)"
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
