//! The gateway's entry service: endpoints, authentication, Portkey's request headers, and the
//! choice of a compiled stack for each request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use portcullis_core::context::{Caller, ClientKey};
use portcullis_core::error::{self, ErrorBody, RequestTimeout};
use portcullis_core::{Body, BoxError, Edge};
use portcullis_tag::{Prometheus, TagLayer};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::build::{CompileLimits, Compiled, Kept, Stack, compile};
use crate::config::{Config, MAX_HEADER_CONFIG_BYTES, Node};
use crate::console::{self, Console};
use crate::header_cache::{self, HeaderConfigCache};
use crate::slug::Slug;

/// The gateway service: cheap to clone; clones share the running config, which
/// [`Gateway::reload`] swaps for a new one while requests in flight finish on the old.
#[derive(Clone)]
pub struct Gateway {
    /// Read by every request: a lock-free load, no write to memory the workers share but the
    /// count of the `Arc` handed out.
    current: Arc<arc_swap::ArcSwap<Shared>>,
    /// The console's clients and recent entries: they outlive reloads.
    console: Arc<Console>,
}

/// The running config, as [`Gateway::config`] lends it (it stays the one read, whatever a
/// reload does meanwhile).
pub struct ConfigRef(Arc<Shared>);

impl std::ops::Deref for ConfigRef {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.0.config
    }
}

impl std::fmt::Debug for ConfigRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.config.fmt(f)
    }
}

struct Shared {
    config: Config,
    compiled: Compiled,
    /// Compiled `x-portkey-config` trees, within `server.header_config.cache_bytes`.
    header_configs: HeaderConfigCache,
    /// Each gateway key's name and the digest of the key.
    api_keys: Vec<(Arc<str>, KeyDigest)>,
    models: Bytes,
    tag: TagLayer,
    prometheus: Option<Prometheus>,
    /// The digest of `server.admin_token`.
    admin: Option<KeyDigest>,
    /// What the console shows of this config.
    console: console::View,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field(
                "providers",
                &self.shared().config.providers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway for `config`: providers and the routing tree are compiled now.
    pub fn new(config: Config) -> Result<Self, crate::config::ConfigError> {
        Self::with_metrics(config, None)
    }

    /// Builds the gateway, serving `GET /metrics` from `prometheus` (the process's installed
    /// recorder; see [`Prometheus::install`]).
    pub fn with_metrics(
        config: Config,
        prometheus: Option<Prometheus>,
    ) -> Result<Self, crate::config::ConfigError> {
        let shared = Shared::build(config, prometheus, &Kept::default())?;
        Ok(Self {
            current: Arc::new(arc_swap::ArcSwap::from_pointee(shared)),
            console: Arc::default(),
        })
    }

    fn shared(&self) -> Arc<Shared> {
        self.current.load_full()
    }

    /// Ends the streams of connected consoles (`GET /log/stream`): the server calls it when
    /// it starts shutting down, so an open console never holds the shutdown for its grace.
    pub fn close_consoles(&self) {
        self.console.close();
    }

    /// Swaps in `config`, compiled now: requests already in flight finish on the old one,
    /// new ones get the new one. The cache (entries included), the limits' counters and each
    /// unchanged leaf's circuit breaker carry over (see [`Kept`]). On error the running config
    /// stays. Settings of the listening server (address, connection limits, timeouts) take
    /// effect at the next start only.
    pub fn reload(&self, config: Config) -> Result<(), crate::config::ConfigError> {
        let old = self.shared();
        let kept = old.compiled.kept(&old.config);
        let shared = Shared::build(config, old.prometheus.clone(), &kept)?;
        self.current.store(Arc::new(shared));
        Ok(())
    }

    /// The config the gateway runs.
    pub fn config(&self) -> ConfigRef {
        ConfigRef(self.shared())
    }

    /// The estimated bytes the compiled `x-portkey-config` trees kept for reuse hold: at most
    /// `server.header_config.cache_bytes`.
    pub fn header_config_cache_bytes(&self) -> usize {
        self.shared().header_configs.bytes()
    }

    /// How many compiled `x-portkey-config` trees are kept for reuse.
    pub fn header_config_cache_len(&self) -> usize {
        self.shared().header_configs.len()
    }
}

impl Shared {
    fn build(
        config: Config,
        prometheus: Option<Prometheus>,
        kept: &Kept,
    ) -> Result<Self, crate::config::ConfigError> {
        let compiled = Compiled::new_keeping(&config, kept)?;
        let api_keys = config
            .server
            .api_keys
            .iter()
            .map(|(name, key)| (Arc::from(name.as_str()), key_digest(key.as_bytes())))
            .collect();
        let models = models_document(&config);
        let mut tag = TagLayer::new();
        for (i, key) in config.server.metadata_labels.iter().enumerate() {
            tag = tag.metadata_label(key.clone()).map_err(|e| {
                crate::config::ConfigError::new(format!("server.metadata_labels[{i}]"), e.message())
            })?;
        }
        for key in &config.server.log_metadata_keys {
            tag = tag.log_metadata_key(key.clone());
        }
        let header_configs = HeaderConfigCache::new(config.server.header_config.cache_bytes);
        let admin = config
            .server
            .admin_token
            .as_ref()
            .map(|t| key_digest(t.as_bytes()));
        let console = console::View {
            log_bodies: config.server.console.log_bodies,
            metadata_keys: config.server.log_metadata_keys.clone().into(),
            prices: Arc::new(crate::build::price_table(&config)?),
            buffer: config.server.console.buffer,
        };
        Ok(Shared {
            console,
            config,
            compiled,
            header_configs,
            api_keys,
            models,
            tag,
            prometheus,
            admin,
        })
    }
}

/// `GET /v1/models`: each provider's listed models, and every model a target overrides to.
fn models_document(config: &Config) -> Bytes {
    let mut models: BTreeMap<String, String> = BTreeMap::new();
    for provider in config.providers.values() {
        for m in &provider.models {
            models
                .entry(m.clone())
                .or_insert_with(|| provider.name.clone());
        }
    }
    fn walk(node: &Node, owner: &str, models: &mut BTreeMap<String, String>) {
        let owner = match &node.kind {
            crate::config::NodeKind::Leaf { provider } => provider.as_str(),
            _ => owner,
        };
        if let Some(Value::String(m)) = node.override_params.get("model") {
            models.entry(m.clone()).or_insert_with(|| owner.to_owned());
        }
        if let crate::config::NodeKind::Group { targets, .. } = &node.kind {
            for t in targets {
                walk(t, owner, models);
            }
        }
    }
    if let Some(node) = &config.routing {
        walk(node, "portcullis", &mut models);
    }
    let data: Vec<Value> = models
        .into_iter()
        .map(|(id, owner)| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"object": "list", "data": data}))
        .expect("JSON serialises")
        .into()
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An answer given before any stack runs (boxed: it travels in `Err` variants).
type Refusal = Box<Response<Body>>;

fn refuse(
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: impl Into<String>,
) -> Refusal {
    Box::new(error::response(
        status,
        ErrorBody::new(kind, message).code(code),
    ))
}

/// The SHA-256 of a gateway key. Keys are compared by digest, so a comparison reads the same
/// 32 bytes whatever the lengths of the key presented and the key configured.
type KeyDigest = [u8; 32];

fn key_digest(key: &[u8]) -> KeyDigest {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Compares two digests in time that depends on neither: every byte is read, no early exit.
fn constant_time_eq(a: &KeyDigest, b: &KeyDigest) -> bool {
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// The credentials of an `Authorization: Bearer KEY` value: the scheme in any case, spaces
/// or tabs around the key.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim_start_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request headers the gateway reads, named once (a lookup by `&str` parses the name
/// every time).
mod names {
    use http::HeaderName;

    pub(super) const API_KEY: HeaderName = HeaderName::from_static("x-portkey-api-key");
    // The headers that choose the route: only with one of them does a request go through
    // the selection's lookups.
    pub(super) use crate::portkey_headers::routing::{
        CONFIG, CUSTOM_HOST, PROVIDER, REQUEST_TIMEOUT, RETRY, VIRTUAL_KEY,
    };
    pub(super) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
}

impl Shared {
    /// The name of the gateway key the request carries; `Err` when keys are required and it
    /// carries none that matches.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Arc<str>>, Refusal> {
        if self.api_keys.is_empty() {
            return Ok(None);
        }
        // The Portkey SDK sends its key in x-portkey-api-key and a placeholder in authorization.
        let candidates = [
            header_str(headers, &names::API_KEY).filter(|k| !k.is_empty()),
            header_str(headers, &header::AUTHORIZATION).and_then(bearer_token),
        ];
        for presented in candidates.into_iter().flatten() {
            let presented = key_digest(presented.as_bytes());
            let mut found = None;
            for (name, key) in &self.api_keys {
                if constant_time_eq(&presented, key) {
                    found = Some(name.clone());
                }
            }
            if found.is_some() {
                return Ok(found);
            }
        }
        Err(refuse(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "a valid gateway API key is required (x-portkey-api-key or Authorization: Bearer)",
        ))
    }

    /// The provider a request names with `x-portkey-provider` (`NAME` or `@NAME`, text after
    /// a `/` ignored) or `x-portkey-virtual-key`, checked against the server's providers.
    fn header_provider<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, Refusal> {
        let bad = |msg: String| {
            refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_provider",
                msg,
            )
        };
        if let Some(v) = headers.get(&names::PROVIDER) {
            let v = v
                .to_str()
                .map_err(|_| bad("x-portkey-provider: not visible ASCII".into()))?
                .trim();
            let name = v.strip_prefix('@').unwrap_or(v);
            let name = name.split('/').next().unwrap_or(name);
            if self.compiled.providers.get(name).is_some() {
                return Ok(Some(name));
            }
            // Never the server's list of providers: a caller learns only about what it named.
            let why = if PROVIDER_KINDS.contains(&name) {
                format!(
                    "x-portkey-provider: `{name}` is a provider kind, not a provider of this gateway, and bring-your-own-key is not enabled for it (server.byok)"
                )
            } else {
                format!("x-portkey-provider: unknown provider `{name}`")
            };
            return Err(bad(why));
        }
        if let Some(v) = headers.get(&names::VIRTUAL_KEY) {
            let name = v
                .to_str()
                .map_err(|_| bad("x-portkey-virtual-key: not visible ASCII".into()))?;
            if self.compiled.providers.get(name).is_none() {
                return Err(bad(format!(
                    "x-portkey-virtual-key: unknown provider `{name}`"
                )));
            }
            return Ok(Some(name));
        }
        Ok(None)
    }

    /// Bring-your-own-key: `x-portkey-provider: KIND` for a kind `server.byok` enables (and no
    /// provider of the file has that name), with the client's own key (`Authorization:
    /// Bearer`, or `x-api-key` for Anthropic). The key is used for this call only, sent only
    /// to the base URL the server gives the kind, and never logged.
    fn byok(&self, headers: &HeaderMap) -> Result<Option<(Stack, ClientKey)>, Refusal> {
        let Some(v) = header_str(headers, &names::PROVIDER) else {
            return Ok(None);
        };
        let v = v.trim();
        let name = v.strip_prefix('@').unwrap_or(v);
        let kind = name.split('/').next().unwrap_or(name);
        if self.compiled.providers.get(kind).is_some() {
            // A provider of the file wins over a kind of the same name: the server's key.
            return Ok(None);
        }
        let Some(stack) = self.compiled.providers.byok(kind) else {
            return Ok(None);
        };
        if headers.contains_key(&names::CONFIG) || headers.contains_key(&names::RETRY) {
            return Err(bad_config(format!(
                "x-portkey-provider: the bring-your-own-key provider `{kind}` cannot be combined with x-portkey-config or x-portkey-retry"
            )));
        }
        let anthropic_key = (kind == "anthropic")
            .then(|| header_str(headers, &names::X_API_KEY))
            .flatten()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let bearer = header_str(headers, &header::AUTHORIZATION).and_then(bearer_token);
        // With gateway keys on, `Authorization` carries the gateway key unless it came in
        // x-portkey-api-key: then it cannot also be the provider's.
        let gateway_key_in_header =
            header_str(headers, &names::API_KEY).is_some_and(|k| !k.is_empty());
        let bearer = bearer.filter(|_| self.api_keys.is_empty() || gateway_key_in_header);
        match anthropic_key.or(bearer) {
            Some(key) => Ok(Some((stack.clone(), ClientKey::new(key)))),
            None => Err(refuse(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing_provider_key",
                if self.api_keys.is_empty() || gateway_key_in_header {
                    format!(
                        "x-portkey-provider: `{kind}` takes your own provider key in Authorization: Bearer"
                    )
                } else {
                    format!(
                        "x-portkey-provider: `{kind}` takes your own provider key in Authorization: Bearer; send the gateway key in x-portkey-api-key"
                    )
                },
            )),
        }
    }

    /// A client's routing tree, read under the header-config limits and compiled once (kept
    /// in the bounded cache of compiled trees). `alias` is the exact text it came as (with
    /// anything else that shaped it), the cache's fast key.
    fn header_tree(&self, value: &Value, path: &str, alias: &str) -> Result<Stack, Refusal> {
        let limits = &self.config.server.header_config;
        let node = Node::parse_header_guarded(
            value,
            path,
            &self.config.providers,
            limits,
            &self.config.guards,
        )
        .map_err(|e| bad_config(e.to_string()))?;
        self.compile_header_tree(node, alias)
    }

    fn compile_header_tree(&self, node: Node, alias: &str) -> Result<Stack, Refusal> {
        let limits = &self.config.server.header_config;
        let key = header_cache::canonical(&node);
        if let Some(stack) = self.header_configs.get(&key, alias) {
            return Ok(stack);
        }
        let regex = limits.regex_limits();
        let compile_limits = CompileLimits {
            max_attempts: self.config.server.max_attempts,
            regex,
        };
        let stack = compile(&node, &self.compiled.providers, &compile_limits)
            .map_err(|e| bad_config(e.to_string()))?;
        let regex_bytes = regex
            .get_size_limit()
            .saturating_add(regex.get_dfa_size_limit());
        let bytes = header_cache::tree_bytes(&node, regex_bytes);
        self.header_configs.insert(key, alias, stack.clone(), bytes);
        Ok(stack)
    }

    /// Whether this caller may shape its routing with headers.
    fn may_send_config(&self, caller: Option<&str>, header: &str) -> Result<(), Refusal> {
        let limits = &self.config.server.header_config;
        if limits.allows(caller) {
            return Ok(());
        }
        let why = if limits.enabled {
            format!("{header}: this gateway key may not send configs; the server's config applies")
        } else {
            format!(
                "{header}: this gateway takes no configs from clients; the server's config applies"
            )
        };
        Err(refuse(
            StatusCode::FORBIDDEN,
            "permission_error",
            "config_not_allowed",
            why,
        ))
    }

    /// `Authorization: Bearer <server.admin_token>`: 404 when no token is configured (the
    /// endpoint is off), 401 for a missing or wrong one.
    fn authorize_admin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(admin) = &self.admin else {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unknown_endpoint",
                "GET /v1/limits is off: set server.admin_token to turn it on",
            ));
        };
        let presented = header_str(headers, &header::AUTHORIZATION).and_then(bearer_token);
        match presented {
            Some(token) if constant_time_eq(&key_digest(token.as_bytes()), admin) => Ok(()),
            _ => Err(refuse(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_admin_token",
                "GET /v1/limits needs the admin token (Authorization: Bearer)",
            )),
        }
    }

    /// The stack for this request: `x-portkey-config` (with the header's provider injected
    /// into a root that names none: Portkey's hybrid mode), else `x-portkey-retry` around the
    /// header's provider or the file's tree, else the provider of `x-portkey-provider` /
    /// `x-portkey-virtual-key`, else the file's tree. `caller` is the name of the gateway key
    /// the request carries. `Ok((stack, true))` when the file's tree was chosen (so a model
    /// slug may still pick a provider).
    fn select(&self, headers: &HeaderMap, caller: Option<&str>) -> Result<(Stack, bool), Refusal> {
        let provider = self.header_provider(headers)?;
        let retry = headers.get(&names::RETRY);
        if let Some(raw) = headers.get(&names::CONFIG) {
            self.may_send_config(caller, "x-portkey-config")?;
            if retry.is_some() {
                return Err(bad_config(
                    "x-portkey-retry: send `retry` inside x-portkey-config when sending both"
                        .into(),
                ));
            }
            let raw = raw
                .to_str()
                .map_err(|_| bad_config("x-portkey-config: not visible ASCII".into()))?;
            if raw.len() > MAX_HEADER_CONFIG_BYTES {
                return Err(bad_config(format!(
                    "x-portkey-config: longer than {MAX_HEADER_CONFIG_BYTES} bytes"
                )));
            }
            // The provider header can complete the tree: it is part of what the text means.
            let alias = match provider {
                None => std::borrow::Cow::Borrowed(raw),
                Some(p) => std::borrow::Cow::Owned(format!("{p}\0{raw}")),
            };
            if let Some(stack) = self.header_configs.get_raw(&alias) {
                return Ok((stack, false));
            }
            if !raw.trim_start().starts_with('{') {
                // A saved config of the file, by id.
                let id = raw.trim();
                return self
                    .compiled
                    .saved
                    .get(id)
                    .cloned()
                    .map(|s| (s, false))
                    .ok_or_else(|| {
                        bad_config(format!(
                            "x-portkey-config: unknown saved config `{id}` (send a config as JSON, or the id of one in the server's `configs`)"
                        ))
                    });
            }
            let mut value: Value = serde_json::from_str(raw)
                .map_err(|e| bad_config(format!("x-portkey-config: not valid JSON: {e}")))?;
            if let (Some(p), Value::Object(root)) = (provider, &mut value)
                && !["targets", "virtual_key", "virtualKey", "provider"]
                    .iter()
                    .any(|k| root.contains_key(*k))
            {
                root.insert("virtual_key".into(), Value::from(p));
            }
            return self
                .header_tree(&value, "x-portkey-config", &alias)
                .map(|s| (s, false));
        }
        if let Some(raw) = retry {
            self.may_send_config(caller, "x-portkey-retry")?;
            let raw = raw
                .to_str()
                .map_err(|_| bad_config("x-portkey-retry: not visible ASCII".into()))?;
            let alias = format!("retry\0{}\0{raw}", provider.unwrap_or(""));
            if let Some(stack) = self.header_configs.get_raw(&alias) {
                return Ok((stack, false));
            }
            let value: Value = serde_json::from_str(raw)
                .map_err(|e| bad_config(format!("x-portkey-retry: not valid JSON: {e}")))?;
            let limits = &self.config.server.header_config;
            let spec = crate::config::parse_header_retry(&value, "x-portkey-retry", limits)
                .map_err(|e| bad_config(e.to_string()))?;
            // Portkey's hybrid mode: the retry applies to the header's provider, else to the
            // file's tree (a target's own `retry` still replaces it below).
            let mut node = match provider {
                Some(p) => Node::parse_header_guarded(
                    &serde_json::json!({ "virtual_key": p }),
                    "x-portkey-retry",
                    &self.config.providers,
                    limits,
                    &self.config.guards,
                )
                .map_err(|e| bad_config(e.to_string()))?,
                None => self.config.routing.clone().ok_or_else(|| {
                    bad_config("x-portkey-retry: the server has no `config` to retry; name a provider with x-portkey-provider".into())
                })?,
            };
            node.retry = Some(spec);
            let stack = self.compile_header_tree(node, &alias)?;
            return Ok((stack, false));
        }
        if let Some(name) = provider {
            let stack = self.compiled.providers.get(name).cloned().expect("checked");
            return Ok((stack, false));
        }
        if headers.contains_key(&names::CUSTOM_HOST) {
            return Err(bad_config(
                "x-portkey-custom-host: custom hosts are not allowed".into(),
            ));
        }
        self.compiled.default.clone().map(|s| (s, true)).ok_or_else(|| {
            bad_config("no routing: the server has no `config`; send x-portkey-config, x-portkey-provider or x-portkey-virtual-key".into())
        })
    }
}

/// Provider kinds clients name in `x-portkey-provider` for bring-your-own-key.
const PROVIDER_KINDS: [&str; 16] = [
    "openai",
    "anthropic",
    "google",
    "gemini",
    "vertex-ai",
    "azure-openai",
    "groq",
    "mistral-ai",
    "cohere",
    "together-ai",
    "perplexity-ai",
    "deepseek",
    "bedrock",
    "ollama",
    "fireworks-ai",
    "openrouter",
];

fn bad_config(msg: String) -> Refusal {
    refuse(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_config",
        msg,
    )
}

/// The time the whole request may take: the server's `request_timeout`, or a client's shorter
/// `x-portkey-request-timeout`. A client may only shorten it, never lengthen it: the server's
/// bound is what keeps one request from holding a connection, a task and upstream attempts
/// for as long as the client likes.
fn request_timeout(
    headers: &HeaderMap,
    server: Option<Duration>,
) -> Result<Option<Duration>, Refusal> {
    match header_str(headers, &names::REQUEST_TIMEOUT) {
        None => Ok(server),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => {
                let asked = Duration::from_millis(ms);
                Ok(Some(server.map_or(asked, |server| server.min(asked))))
            }
            _ => Err(refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_timeout",
                "x-portkey-request-timeout: must be a whole number of milliseconds > 0",
            )),
        },
    }
}

/// `GET /v1/limits`: every scope's usage, remaining and reset time, per request limits and
/// per provider.
async fn limits_document(shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    let budgets = &shared.compiled.budgets;
    let mut scopes = Vec::new();
    let mut taken_at = Value::Null;
    for (level, layer) in [("request", &budgets.request), ("provider", &budgets.leaf)] {
        let Some(layer) = layer else { continue };
        match layer.snapshot().await {
            Ok(snapshot) => {
                let mut doc = snapshot.to_json();
                taken_at = doc["taken_at"].take();
                if let Value::Array(list) = doc["scopes"].take() {
                    for mut scope in list {
                        scope["level"] = Value::from(level);
                        scopes.push(scope);
                    }
                }
            }
            Err(e) => {
                return Ok(*refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    "limit_store_unavailable",
                    format!("the limits store did not answer: {e}"),
                ));
            }
        }
    }
    let doc = serde_json::json!({"object": "list", "taken_at": taken_at, "data": scopes});
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_vec(&doc).expect("JSON serialises").into(),
    ))
}

/// The endpoints that go through a stack.
/// The `/v1` path of an endpoint called without the prefix, as LiteLLM's proxy serves them.
fn unprefixed(path: &str) -> Option<&'static str> {
    Some(match path {
        "/chat/completions" => "/v1/chat/completions",
        "/completions" => "/v1/completions",
        "/embeddings" => "/v1/embeddings",
        "/models" => "/v1/models",
        "/messages" => "/v1/messages",
        _ => return None,
    })
}

fn is_llm_endpoint(path: &str) -> bool {
    matches!(
        path,
        "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings"
    )
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<B> Service<Request<B>> for Gateway
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> BoxFuture {
        let shared = self.shared();
        let path = req.uri().path();
        if console::is_console_path(path) {
            return self.console(shared, req);
        }
        // Only while a console is connected is anything recorded: one atomic load otherwise,
        // before the path is looked at.
        let logged =
            || path.starts_with("/v1/") || unprefixed(path).is_some() || path == "/messages";
        if !self.console.watching() || !logged() {
            return route(shared, req);
        }
        let (pending, capture) = console::Pending::begin(
            self.console.clone(),
            shared.console.clone(),
            req.method(),
            path,
            req.headers(),
            req.extensions().get(),
        );
        let mut req = req;
        if let Some(capture) = capture {
            req.extensions_mut().insert(capture);
        }
        let answer = route(shared, req);
        Box::pin(async move {
            let response = answer.await?;
            pending.finish(&response);
            Ok(response)
        })
    }
}

impl Gateway {
    /// The console's endpoints (see [`console`]).
    fn console<B>(&self, shared: Arc<Shared>, req: Request<B>) -> BoxFuture
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let token = shared.config.server.admin_token.as_deref();
        let tree = || console::tree_document(&shared.config, &shared.compiled.breaker_states());
        match console::serve(&self.console, token, tree, req) {
            console::Answer::Now(response) => Box::pin(std::future::ready(Ok(response))),
            console::Answer::Login(req) => {
                let token = shared.config.server.admin_token.clone();
                let console = self.console.clone();
                Box::pin(async move { Ok(console::login(console, token, req).await) })
            }
            console::Answer::Limits => Box::pin(limits_document(shared)),
        }
    }
}

/// Answers a request: the endpoint, the caller, the stack.
fn route<B>(shared: Arc<Shared>, mut req: Request<B>) -> BoxFuture
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // LiteLLM's clients call the root: `/chat/completions` answers as `/v1/chat/completions`.
    if let Some(v1) = unprefixed(req.uri().path()) {
        let uri = match req.uri().query() {
            None => Some(http::Uri::from_static(v1)),
            Some(q) => format!("{v1}?{q}").parse().ok(),
        };
        if let Some(uri) = uri {
            *req.uri_mut() = uri;
        }
    }
    let path = req.uri().path();
    let answer = |r: Response<Body>| -> BoxFuture { Box::pin(std::future::ready(Ok(r))) };
    match (req.method(), path) {
        (&Method::GET, "/health") => {
            return answer(json_response(
                StatusCode::OK,
                Bytes::from_static(b"{\"status\":\"ok\"}"),
            ));
        }
        (&Method::GET, "/metrics") => {
            if let Err(r) = shared.authenticate(req.headers()) {
                return answer(*r);
            }
            return answer(match &shared.prometheus {
                Some(p) => p.response(),
                None => *refuse(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "unknown_endpoint",
                    "metrics are not enabled",
                ),
            });
        }
        (&Method::GET, "/v1/limits") => {
            return match shared.authorize_admin(req.headers()) {
                Err(r) => answer(*r),
                Ok(()) => Box::pin(limits_document(shared)),
            };
        }
        (&Method::GET, "/v1/models") => {
            if let Err(r) = shared.authenticate(req.headers()) {
                return answer(*r);
            }
            return answer(json_response(StatusCode::OK, shared.models.clone()));
        }
        (_, "/v1/messages") => {
            let (auth, inner) = (shared.clone(), shared.clone());
            let authenticate = move |h: &HeaderMap| auth.authenticate(h).map(drop);
            let chat = move |r| route(inner.clone(), r);
            return crate::messages::serve(req, &shared.config.server, authenticate, chat);
        }
        (&Method::POST, p) if is_llm_endpoint(p) => {}
        (&Method::POST, p) if p.starts_with("/v1/prompts/") => {
            let rest = &p["/v1/prompts/".len()..];
            let (id, render_only) = match rest.rsplit_once('/') {
                Some((id, "completions")) => (id, false),
                Some((id, "render")) => (id, true),
                _ => {
                    return answer(*refuse(
                        StatusCode::NOT_FOUND,
                        "invalid_request_error",
                        "unknown_endpoint",
                        format!(
                            "unknown endpoint POST {p} (expected /v1/prompts/ID/completions or /render)"
                        ),
                    ));
                }
            };
            if !shared.config.prompts.contains_key(id) {
                return answer(*refuse(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "prompt_not_found",
                    format!("unknown prompt `{id}`"),
                ));
            }
            let caller = match shared.authenticate(req.headers()) {
                Ok(name) => name,
                Err(r) => return answer(*r),
            };
            let id = id.to_owned();
            return Box::pin(prompt(shared, req, id, render_only, caller));
        }
        (_, p) if is_llm_endpoint(p) => {
            return answer(*refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
                format!("{p} takes POST"),
            ));
        }
        (m, p) => {
            return answer(*refuse(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unknown_endpoint",
                format!("unknown endpoint {m} {p}"),
            ));
        }
    }
    // Authenticate before reading a byte of the body.
    let caller = match shared.authenticate(req.headers()) {
        Ok(name) => name,
        Err(r) => return answer(*r),
    };
    let prepared = (|| {
        let routing = match crate::portkey_headers::check(req.headers()) {
            Ok(routing) => routing,
            Err((name, why)) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "unsupported_header",
                    format!("{name}: {why}"),
                ));
            }
        };
        // What follows looks for the routing headers, and reads others (the client's key for
        // bring-your-own-key) only once `x-portkey-provider` is there: without one it has
        // nothing to find (each lookup hashes the name; most requests carry none, or only
        // metadata, trace id or cache headers, which later layers read).
        let none = HeaderMap::new();
        let headers = if routing { req.headers() } else { &none };
        let chosen = match shared.byok(headers)? {
            Some((stack, key)) => (stack, false, Some(key)),
            None => {
                let (stack, route) = shared.select(headers, caller.as_deref())?;
                (stack, route, None)
            }
        };
        let timeout = request_timeout(headers, shared.config.server.request_timeout)?;
        Ok::<_, Refusal>((chosen, timeout))
    })();
    let ((stack, route, key), timeout) = match prepared {
        Ok(p) => p,
        Err(r) => return answer(*r),
    };
    if let Some(key) = key {
        req.extensions_mut().insert(key);
    }
    Box::pin(dispatch(shared, req, stack, route, caller, timeout))
}

/// Runs a request through `stack` behind the edge (body read once, parsed once), the slug
/// router, the tag layer and the per-request limits, within `timeout`.
fn dispatch<B>(
    shared: Arc<Shared>,
    mut req: Request<B>,
    stack: Stack,
    route: bool,
    caller: Option<Arc<str>>,
    timeout: Option<Duration>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // The tag layer fills in the rest of the caller (virtual key, user, team) and reads the
    // metadata once the body is parsed.
    let mut identity = Caller::default();
    identity.api_key = caller;
    req.extensions_mut().insert(identity);
    let budget = shared.compiled.budgets.request.clone();
    let stack = match &budget {
        Some(b) => Stack::new(b.layer(stack)),
        None => stack,
    };
    let slug = Slug {
        inner: shared.tag.layer(stack),
        budget,
        route,
        providers: shared.compiled.providers.clone(),
        tag: shared.tag.clone(),
    };
    let mut edge = Edge::new(slug, shared.config.server.body_limit);
    async move {
        // Not `oneshot`: holding a `Oneshot<Edge<_>, _>` across an await trips
        // rust-lang/rust#102211 when the future must be `Send`.
        let Ok(()) =
            std::future::poll_fn(|cx| Service::<Request<B>>::poll_ready(&mut edge, cx)).await;
        // Built for this request: the service moves into the future, no clone left behind.
        let response = edge.call_once(req);
        match timeout {
            None => response.await,
            Some(after) => match tokio::time::timeout(after, response).await {
                Ok(r) => r,
                Err(_) => {
                    let err: BoxError = RequestTimeout { after }.into();
                    Ok(error::error_response(&err))
                }
            },
        }
    }
}

/// `POST /v1/prompts/{id}/completions` and `/render`: the body read (within the body
/// limit), the template rendered, then the rendered request answered like a chat
/// completion through the prompt's route (`render`: returned as it is).
async fn prompt<B>(
    shared: Arc<Shared>,
    req: Request<B>,
    id: String,
    render_only: bool,
    caller: Option<Arc<str>>,
) -> Result<Response<Body>, Infallible>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    let bad = |msg: String| {
        Ok(*refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_prompt_request",
            msg,
        ))
    };
    let limit = shared.config.server.body_limit;
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
                Ok(*refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    "request_too_large",
                    format!("the request body is larger than {limit} bytes"),
                ))
            } else {
                bad(format!("the request body could not be read: {e}"))
            };
        }
    };
    let body: Value = if bytes.is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return bad(format!("request body is not valid JSON: {e}")),
        }
    };
    let prompt = &shared.config.prompts[&id];
    let rendered = match shared.compiled.templates.render(&id, prompt, &body) {
        Ok(r) => r,
        Err(msg) => return bad(msg),
    };
    if render_only {
        let doc = serde_json::json!({"success": true, "data": rendered});
        return Ok(json_response(
            StatusCode::OK,
            serde_json::to_vec(&doc).expect("JSON serialises").into(),
        ));
    }
    let chosen = match &prompt.route {
        crate::config::PromptRoute::Provider(name) => shared
            .compiled
            .providers
            .get(name)
            .cloned()
            .map(|s| (s, false))
            .ok_or_else(|| bad_config(format!("unknown provider `{name}`"))),
        crate::config::PromptRoute::Saved(id) => shared
            .compiled
            .saved
            .get(id)
            .cloned()
            .map(|s| (s, false))
            .ok_or_else(|| bad_config(format!("unknown saved config `{id}`"))),
        crate::config::PromptRoute::Tree(_) => shared
            .compiled
            .prompt_trees
            .get(&id)
            .cloned()
            .map(|s| (s, false))
            .ok_or_else(|| bad_config(format!("prompt `{id}` has no compiled config"))),
        _ => match crate::portkey_headers::check(&parts.headers) {
            Err((name, why)) => Err(refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "unsupported_header",
                format!("{name}: {why}"),
            )),
            Ok(_) => shared.select(&parts.headers, caller.as_deref()),
        },
    };
    let timeout = request_timeout(&parts.headers, shared.config.server.request_timeout);
    let ((stack, route), timeout) = match chosen.and_then(|c| timeout.map(|t| (c, t))) {
        Ok(p) => p,
        Err(r) => return Ok(*r),
    };
    let bytes = Bytes::from(serde_json::to_vec(&rendered).expect("JSON serialises"));
    let mut req = Request::from_parts(parts, http_body_util::Full::new(bytes.clone()));
    *req.uri_mut() = http::Uri::from_static("/v1/chat/completions");
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    dispatch(shared, req, stack, route, caller, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_compared_by_digest() {
        let key = key_digest(b"abcdefgh");
        assert!(constant_time_eq(&key, &key_digest(b"abcdefgh")));
        for other in [&b"abcdefgx"[..], b"abcdefg", b"abcdefghi", b"", b"ABCDEFGH"] {
            assert!(!constant_time_eq(&key, &key_digest(other)), "{other:?}");
        }
        // Every byte counts, the last as much as the first.
        let mut last = key;
        last[31] ^= 1;
        assert!(!constant_time_eq(&key, &last));
        let mut first = key;
        first[0] ^= 0x80;
        assert!(!constant_time_eq(&key, &first));
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            key_digest(b"abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "the digest is SHA-256"
        );
    }

    #[test]
    fn bearer_scheme_in_any_case_with_spaces() {
        for value in [
            "Bearer k-1",
            "bearer k-1",
            "BEARER k-1",
            "bEaReR   k-1",
            "Bearer\tk-1",
            "  Bearer k-1  ",
        ] {
            assert_eq!(bearer_token(value), Some("k-1"), "{value:?}");
        }
        for value in [
            "Bearer",
            "Bearer ",
            "Basic k-1",
            "Bearerk-1",
            "Token k-1",
            "",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
