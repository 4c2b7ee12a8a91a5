//! The gateway's entry service: endpoints, authentication, Portkey's request headers, and the
//! choice of a compiled stack for each request.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use portcullis_core::context::Caller;
use portcullis_core::error::{self, ErrorBody, RequestTimeout};
use portcullis_core::{Body, BoxError, Edge};
use portcullis_tag::{Prometheus, TagLayer};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::build::{Compiled, Stack, compile};
use crate::config::{Config, Node, Origin};

/// How many distinct `x-portkey-config` values are kept compiled.
const HEADER_CONFIG_CACHE: usize = 256;

/// The longest `x-portkey-config` accepted.
const MAX_HEADER_CONFIG: usize = 16 * 1024;

/// The gateway service: cheap to clone, shared state behind an `Arc`.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    compiled: Compiled,
    header_configs: Mutex<HashMap<String, Stack>>,
    api_keys: Vec<(Arc<str>, Vec<u8>)>,
    models: Bytes,
    tag: TagLayer,
    prometheus: Option<Prometheus>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field(
                "providers",
                &self.shared.config.providers.keys().collect::<Vec<_>>(),
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
        let compiled = Compiled::new(&config)?;
        let api_keys = config
            .server
            .api_keys
            .iter()
            .map(|(name, key)| (Arc::from(name.as_str()), key.as_bytes().to_vec()))
            .collect();
        let models = models_document(&config);
        let mut tag = TagLayer::new();
        for key in &config.server.metadata_labels {
            tag = tag.metadata_label(key.clone());
        }
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                compiled,
                header_configs: Mutex::new(HashMap::new()),
                api_keys,
                models,
                tag,
                prometheus,
            }),
        })
    }

    /// The config the gateway runs.
    pub fn config(&self) -> &Config {
        &self.shared.config
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

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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
            header_str(headers, "x-portkey-api-key").filter(|k| !k.is_empty()),
            header_str(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")),
        ];
        for presented in candidates.into_iter().flatten() {
            let mut found = None;
            for (name, key) in &self.api_keys {
                if constant_time_eq(presented.as_bytes(), key) {
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

    /// The stack for this request: `x-portkey-config`, else `x-portkey-virtual-key`, else the
    /// file's tree.
    fn select(&self, headers: &HeaderMap) -> Result<Stack, Refusal> {
        let bad = |msg: String| {
            refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_config",
                msg,
            )
        };
        if let Some(raw) = headers.get("x-portkey-config") {
            let raw = raw
                .to_str()
                .map_err(|_| bad("x-portkey-config: not visible ASCII".into()))?;
            if raw.len() > MAX_HEADER_CONFIG {
                return Err(bad(format!(
                    "x-portkey-config: longer than {MAX_HEADER_CONFIG} bytes"
                )));
            }
            if let Some(stack) = self
                .header_configs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(raw)
            {
                return Ok(stack.clone());
            }
            let trimmed = raw.trim_start();
            if !trimmed.starts_with('{') {
                return Err(bad(
                    "x-portkey-config: saved config ids are not supported; send the config as JSON"
                        .into(),
                ));
            }
            let value: Value = serde_json::from_str(raw)
                .map_err(|e| bad(format!("x-portkey-config: not valid JSON: {e}")))?;
            let node = Node::parse(
                &value,
                "x-portkey-config",
                &self.config.providers,
                Origin::Header,
            )
            .map_err(|e| bad(e.to_string()))?;
            let stack = compile(&node, &self.compiled.providers).map_err(|e| bad(e.to_string()))?;
            let mut cache = self
                .header_configs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if cache.len() >= HEADER_CONFIG_CACHE {
                cache.clear();
            }
            cache.insert(raw.to_owned(), stack.clone());
            return Ok(stack);
        }
        if let Some(name) = header_str(headers, "x-portkey-virtual-key") {
            return self
                .compiled
                .providers
                .get(name)
                .cloned()
                .ok_or_else(|| bad(format!("x-portkey-virtual-key: unknown provider `{name}`")));
        }
        if headers.contains_key("x-portkey-custom-host") {
            return Err(bad(
                "x-portkey-custom-host: custom hosts are not allowed".into()
            ));
        }
        self.compiled.default.clone().ok_or_else(|| {
            bad("no routing: the server has no `config`; send x-portkey-config or x-portkey-virtual-key".into())
        })
    }
}

fn request_timeout(
    headers: &HeaderMap,
    default: Option<Duration>,
) -> Result<Option<Duration>, Refusal> {
    match header_str(headers, "x-portkey-request-timeout") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
            _ => Err(refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_timeout",
                "x-portkey-request-timeout: must be a whole number of milliseconds > 0",
            )),
        },
    }
}

/// The endpoints that go through a stack.
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
        let shared = self.shared.clone();
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
            (&Method::GET, "/v1/models") => {
                if let Err(r) = shared.authenticate(req.headers()) {
                    return answer(*r);
                }
                return answer(json_response(StatusCode::OK, shared.models.clone()));
            }
            (&Method::POST, p) if is_llm_endpoint(p) => {}
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
            let stack = shared.select(req.headers())?;
            let timeout = request_timeout(req.headers(), shared.config.server.request_timeout)?;
            Ok::<_, Refusal>((stack, timeout))
        })();
        let (stack, timeout) = match prepared {
            Ok(p) => p,
            Err(r) => return answer(*r),
        };
        let mut req = req;
        // The tag layer fills in the rest of the caller (virtual key, user, team) and reads the
        // metadata once the body is parsed.
        let mut identity = Caller::default();
        identity.api_key = caller;
        req.extensions_mut().insert(identity);
        let mut edge = Edge::new(shared.tag.layer(stack), shared.config.server.body_limit);
        Box::pin(async move {
            // Not `oneshot`: holding a `Oneshot<Edge<_>, _>` across an await trips
            // rust-lang/rust#102211 when the future must be `Send`.
            let Ok(()) =
                std::future::poll_fn(|cx| Service::<Request<B>>::poll_ready(&mut edge, cx)).await;
            let response = edge.call(req);
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abcdefgh", b"abcdefgh"));
        assert!(!constant_time_eq(b"abcdefgh", b"abcdefgx"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
