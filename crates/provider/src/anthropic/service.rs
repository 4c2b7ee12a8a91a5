use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use portcullis_core::error::{self as core_error, ErrorBody, HttpError};
use portcullis_core::{Body, BoxError, BufferedBody, BuildError, RequestView};
use tower_service::Service;

use super::future::{Call, ResponseFuture};
use super::request::{DEFAULT_MAX_TOKENS, Translator};
use crate::builder::{self, checked_base, header_value};
use crate::call::{self, CallFuture};
use crate::client::HttpClient;
use crate::endpoint::{self, Endpoint};
use crate::openai::DEFAULT_RESPONSE_TIMEOUT;
use crate::vertex::{self, Credentials, ServiceAccount, TokenSource};

/// Anthropic's API, the default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The `anthropic-version` sent by default.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The `anthropic_version` Vertex AI wants in the body of Claude requests.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// Headers the provider sets itself or that describe one connection only; configuring them
/// with [`AnthropicBuilder::header`] is a build error (the key, version and beta features
/// have methods of their own).
const RESERVED: [&str; 14] = [
    "authorization",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "host",
    "content-length",
    "content-type",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Which API the provider speaks to, as the builder was told.
enum Upstream {
    /// Anthropic's own Messages API.
    Messages,
    /// Claude on Vertex AI, with the credentials to read.
    Vertex(vertex::Settings),
    /// Claude on Vertex AI beside a Gemini provider: its URL prefix
    /// (`…/publishers/anthropic/models/`) and its token source, shared.
    VertexShared {
        prefix: String,
        tokens: Arc<TokenSource>,
    },
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Messages => f.write_str("Messages"),
            Upstream::Vertex(settings) => f.debug_tuple("Vertex").field(settings).finish(),
            Upstream::VertexShared { prefix, .. } => {
                f.debug_tuple("VertexShared").field(prefix).finish()
            }
        }
    }
}

/// Builds an [`Anthropic`] provider: for Anthropic's API by default, for Claude on Vertex AI
/// with [`vertex`](Self::vertex).
pub struct AnthropicBuilder {
    base_url: Option<String>,
    upstream: Upstream,
    api_key: Option<String>,
    version: Option<String>,
    beta: Vec<String>,
    headers: Vec<(String, String)>,
    name: Option<String>,
    client: Option<HttpClient>,
    response_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    translator: Translator,
    endpoint: Option<Endpoint>,
    client_keys: bool,
}

impl fmt::Debug for AnthropicBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicBuilder")
            .field("base_url", &self.base_url)
            .field("upstream", &self.upstream)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("version", &self.version)
            .field("beta", &self.beta)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("name", &self.name)
            .field("response_timeout", &self.response_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("translator", &self.translator)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl AnthropicBuilder {
    /// Sets the base URL (default [`DEFAULT_BASE_URL`]); requests go to `{base_url}/v1/messages`.
    /// For Vertex AI the default is `https://{region}-aiplatform.googleapis.com`
    /// (`https://aiplatform.googleapis.com` for the `global` region), and requests go to
    /// `{base_url}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/…`.
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Speaks to Claude on Vertex AI instead of Anthropic's API: `POST
    /// {base}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
    /// (`:streamRawPredict` for streams; a leading `anthropic.` is removed from the model),
    /// the body without `model` and with `anthropic_version` (default [`VERTEX_VERSION`], or
    /// the one set with [`version`](Self::version)), and `Authorization: Bearer` access tokens
    /// made from the service-account JSON key at `service_account_file` (read when the
    /// provider is built; see [`Gemini`](crate::gemini) for how tokens are kept). No
    /// `x-api-key` nor `anthropic-version` header is sent; `anthropic-beta` still is. An
    /// empty `project` takes the key file's `project_id`.
    pub fn vertex(
        mut self,
        project: impl Into<String>,
        region: impl Into<String>,
        service_account_file: impl Into<PathBuf>,
    ) -> Self {
        self.upstream = Upstream::Vertex(vertex::Settings {
            project: project.into(),
            region: region.into(),
            credentials: Credentials::File(service_account_file.into()),
        });
        self
    }

    /// Like [`vertex`](Self::vertex), with a service account read already.
    pub fn vertex_service_account(
        mut self,
        project: impl Into<String>,
        region: impl Into<String>,
        account: ServiceAccount,
    ) -> Self {
        self.upstream = Upstream::Vertex(vertex::Settings {
            project: project.into(),
            region: region.into(),
            credentials: Credentials::Account(account),
        });
        self
    }

    /// Claude on Vertex AI at `prefix` (`…/publishers/anthropic/models/`), with the token
    /// source of the Gemini provider it serves beside, so both publishers share one token.
    pub(crate) fn vertex_shared(mut self, prefix: String, tokens: Arc<TokenSource>) -> Self {
        self.upstream = Upstream::VertexShared { prefix, tokens };
        self
    }

    /// Bring-your-own-key: each call uses the key the request carries in its
    /// [`ClientKey`](portcullis_core::context::ClientKey) extension, sent as `x-api-key` (over
    /// any configured key); a call without one is answered 401 without reaching the upstream.
    pub fn client_keys(mut self, on: bool) -> Self {
        self.client_keys = on;
        self
    }

    /// Sets the API key, sent as `x-api-key`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sets the `anthropic-version` sent (default [`DEFAULT_VERSION`]; on Vertex AI the body's
    /// `anthropic_version`, default [`VERTEX_VERSION`]). A request's body field
    /// `anthropic_version` overrides it for that request.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Adds a beta feature to `anthropic-beta` (default: none, and no header is sent). A
    /// request's body field `anthropic_beta` adds its own for that request.
    pub fn beta(mut self, feature: impl Into<String>) -> Self {
        self.beta.push(feature.into());
        self
    }

    /// Adds a header sent on every upstream request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the name recorded as the provider in response facts (default `anthropic`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Shares a pooled client (and its connect timeout) with other providers.
    pub fn client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Sets how long to wait for the response headers (default 600 s): 504 past it.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// Arms no timer of the provider's own for the response headers: for a stack whose outer
    /// deadline always comes first (the gateway does this when its request timeout is shorter
    /// than the response timeout), so that a call registers no timer it cannot need.
    pub fn no_response_timeout(mut self) -> Self {
        self.response_timeout = None;
        self
    }

    /// Sets how long a response body may go without a chunk (default: no limit). Past it a
    /// stream ends with an SSE error event, and a JSON answer is a 504.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the `max_tokens` sent when a request has neither `max_completion_tokens` nor
    /// `max_tokens` (default [`DEFAULT_MAX_TOKENS`]): Anthropic requires one.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.translator = self.translator.max_tokens(max_tokens);
        self
    }

    /// Drops the request fields Anthropic cannot honour instead of answering 400 (see
    /// [`Translator::drop_unsupported`]). Default: refuse.
    pub fn drop_unsupported(mut self, drop: bool) -> Self {
        self.translator = self.translator.drop_unsupported(drop);
        self
    }

    /// Pins the provider to `endpoint`, whatever the incoming path (see
    /// [`OpenAiBuilder::endpoint`](crate::openai::OpenAiBuilder::endpoint)). Only
    /// [`Endpoint::Chat`] is served; the others are answered 400.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Builds the provider, checking the base URL and headers, and for Vertex AI reading the
    /// service account.
    ///
    /// # Errors
    /// A [`BuildError`] for a base URL that is not `http://` or `https://`, has no host or
    /// has a query; an `https://` base URL in a build without the `rustls` feature; a key,
    /// version, beta feature or header that is not a valid header, or a header the provider
    /// sets itself; a `max_tokens` of 0; for Vertex AI, a service-account file that cannot be
    /// read or used, a project or region that is empty or not a plain name, an API key or
    /// `client_keys`.
    pub fn build(self) -> Result<Anthropic, BuildError> {
        let client = self.client.unwrap_or_default();
        let mut translator = self.translator;
        let target = match self.upstream {
            Upstream::Messages => {
                let url = self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
                let uri = Uri::try_from(format!("{}/v1/messages", checked_base(url)?))
                    .map_err(|e| BuildError::at("base_url", format!("`{url}`: {e}")))?;
                Target::Messages(uri)
            }
            Upstream::Vertex(_) | Upstream::VertexShared { .. } => {
                if self.api_key.is_some() {
                    return Err(BuildError::at(
                        "api_key",
                        "an API key is for Anthropic's API; Vertex AI uses the service account",
                    ));
                }
                if self.client_keys {
                    return Err(BuildError::at(
                        "client_keys",
                        "client keys are for Anthropic's API; Vertex AI uses the service account",
                    ));
                }
                let (prefix, tokens) = match self.upstream {
                    Upstream::Vertex(settings) => {
                        let resolved = settings.resolve(&client)?;
                        let url = self.base_url.unwrap_or(resolved.default_base);
                        let prefix = format!(
                            "{}/v1{}anthropic/models/",
                            checked_base(&url)?,
                            resolved.route
                        );
                        // The URL of a model's method must parse: checked once here.
                        Uri::try_from(format!("{prefix}m:streamRawPredict"))
                            .map_err(|e| BuildError::at("base_url", format!("`{url}`: {e}")))?;
                        (prefix, resolved.tokens)
                    }
                    Upstream::VertexShared { prefix, tokens } => (prefix, tokens),
                    Upstream::Messages => unreachable!("matched above"),
                };
                translator = translator.vertex(self.version.as_deref().unwrap_or(VERTEX_VERSION));
                Target::Vertex { prefix, tokens }
            }
        };

        let mut headers = builder::headers(&self.headers, &RESERVED)?;
        let host = match &target {
            Target::Messages(uri) => crate::upstream::plain_host(uri),
            Target::Vertex { prefix, .. } => crate::upstream::plain_host_at(prefix),
        };
        if let Some(host) = host {
            headers.insert(http::header::HOST, host);
        }
        if let Some(key) = &self.api_key {
            let mut key = header_value("api_key", key)?;
            key.set_sensitive(true);
            headers.insert("x-api-key", key);
        }
        // Vertex AI takes the version in the body (the translator writes it there).
        if let Target::Messages(_) = target {
            let version = self.version.as_deref().unwrap_or(DEFAULT_VERSION);
            headers.insert("anthropic-version", header_value("version", version)?);
        }
        if !self.beta.is_empty() {
            headers.insert(
                "anthropic-beta",
                header_value("beta", &self.beta.join(","))?,
            );
        }
        if translator.default_max_tokens() == 0 {
            return Err(BuildError::at("max_tokens", "must be at least 1"));
        }
        let default_name = match target {
            Target::Messages(_) => "anthropic",
            Target::Vertex { .. } => "vertex-ai",
        };
        Ok(Anthropic {
            shared: Arc::new(Shared {
                client,
                name: self.name.as_deref().unwrap_or(default_name).into(),
                target,
                headers,
                response_timeout: self.response_timeout,
                idle_timeout: self.idle_timeout,
                translator,
                endpoint: self.endpoint,
                client_keys: self.client_keys,
            }),
        })
    }
}

/// Where requests go.
enum Target {
    /// `{base_url}/v1/messages`, with `x-api-key`.
    Messages(Uri),
    /// Vertex AI: `{prefix}{model}:rawPredict`, with access tokens.
    Vertex {
        /// `{base}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/`.
        prefix: String,
        tokens: Arc<TokenSource>,
    },
}

/// A provider for Anthropic's Messages API that speaks OpenAI's chat completions to its
/// callers (see the [module docs](super)).
#[derive(Clone)]
pub struct Anthropic {
    shared: Arc<Shared>,
}

struct Shared {
    client: HttpClient,
    name: Arc<str>,
    target: Target,
    headers: HeaderMap,
    response_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    translator: Translator,
    endpoint: Option<Endpoint>,
    client_keys: bool,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("name", &self.shared.name)
            .field("vertex", &self.is_vertex())
            .field("endpoint", &self.shared.endpoint)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// Starts building a provider for [`DEFAULT_BASE_URL`] (Claude on Vertex AI with
    /// [`AnthropicBuilder::vertex`]).
    pub fn builder() -> AnthropicBuilder {
        AnthropicBuilder {
            base_url: None,
            upstream: Upstream::Messages,
            api_key: None,
            version: None,
            beta: Vec::new(),
            headers: Vec::new(),
            name: None,
            client: None,
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            idle_timeout: None,
            translator: Translator::new().max_tokens(DEFAULT_MAX_TOKENS),
            endpoint: None,
            client_keys: false,
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The upstream URL a request for `model` goes to: `{base_url}/v1/messages` whatever the
    /// model, or on Vertex AI
    /// `{base}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
    /// (`:streamRawPredict` for a stream; a leading `anthropic.` removed from the model).
    pub fn url(&self, model: &str, stream: bool) -> String {
        match &self.shared.target {
            Target::Messages(uri) => uri.to_string(),
            Target::Vertex { prefix, .. } => {
                let model = model.strip_prefix("anthropic.").unwrap_or(model);
                let method = if stream {
                    "streamRawPredict"
                } else {
                    "rawPredict"
                };
                format!("{prefix}{model}:{method}")
            }
        }
    }

    /// Whether the provider speaks to Claude on Vertex AI.
    pub fn is_vertex(&self) -> bool {
        matches!(self.shared.target, Target::Vertex { .. })
    }

    /// The endpoint the provider is pinned to, if any (see [`AnthropicBuilder::endpoint`]).
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.shared.endpoint
    }

    /// The translator of requests, as configured.
    pub fn translator(&self) -> &Translator {
        &self.shared.translator
    }

    /// Builds the upstream request, or the answer when there is none to make (boxed: it is
    /// the rare path).
    fn prepare(
        &self,
        req: Request<BufferedBody>,
    ) -> Result<(Request<BufferedBody>, Call), Box<Response<Body>>> {
        let shared = &*self.shared;
        let Some(endpoint) = Endpoint::of(&req, shared.endpoint) else {
            return Err(Box::new(endpoint::unknown(&req)));
        };
        if endpoint != Endpoint::Chat {
            return Err(Box::new(core_error::response(
                StatusCode::BAD_REQUEST,
                ErrorBody::new(
                    "invalid_request_error",
                    format!(
                        "the Anthropic provider serves chat completions only \
                         (POST /chat/completions), not {}",
                        endpoint.path()
                    ),
                )
                .code("unsupported_endpoint"),
            )));
        }
        if req.method() != Method::POST {
            return Err(Box::new(core_error::response(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorBody::new(
                    "invalid_request_error",
                    format!("/chat/completions takes POST, not {}", req.method()),
                )
                .code("method_not_allowed"),
            )));
        }
        let refuse =
            |e: &portcullis_core::error::InvalidRequest| Box::new(HttpError::from(e).to_response());
        let (parts, body) = req.into_parts();
        let parsed;
        let view = match parts.extensions.get::<Arc<RequestView>>() {
            Some(view) => &**view,
            None => {
                parsed = RequestView::parse(body.into_bytes()).map_err(|e| refuse(&e))?;
                &parsed
            }
        };
        let translated = shared.translator.request(view).map_err(|e| refuse(&e))?;
        let uri = match &shared.target {
            Target::Messages(uri) => uri.clone(),
            Target::Vertex { .. } => {
                let model = translated.model();
                let name = model.strip_prefix("anthropic.").unwrap_or(model);
                if !vertex::plain_model(name) {
                    return Err(refuse(&portcullis_core::error::InvalidRequest::param(
                        "model",
                        format!(
                            "`{model}` is not a Vertex AI model name (letters, digits, `-`, \
                             `.`, `_`, `@`)"
                        ),
                    )));
                }
                // The prefix was checked to make URLs, and the model to be a plain name.
                Uri::try_from(self.url(model, translated.stream())).map_err(|e| {
                    refuse(&portcullis_core::error::InvalidRequest::param(
                        "model",
                        format!("the model makes no URL: {e}"),
                    ))
                })?
            }
        };

        let mut headers = shared.headers.clone();
        if shared.client_keys {
            let refused = |message: &str| {
                Box::new(portcullis_core::error::response(
                    http::StatusCode::UNAUTHORIZED,
                    portcullis_core::error::ErrorBody::new("authentication_error", message)
                        .code("missing_provider_key"),
                ))
            };
            let key = parts
                .extensions
                .get::<portcullis_core::context::ClientKey>()
                .ok_or_else(|| {
                    refused("this provider takes the client's own key (x-api-key or Authorization: Bearer), and none was sent")
                })?;
            let mut value = HeaderValue::try_from(key.expose())
                .map_err(|_| refused("the provider key has characters not allowed in a header"))?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        headers.insert(header::ACCEPT, crate::upstream::accept(translated.stream()));
        // Checked by the translator: both are valid header values. Vertex AI has the version
        // in the body.
        if let Some(version) = translated
            .version()
            .filter(|_| !self.is_vertex())
            .and_then(|v| HeaderValue::try_from(v).ok())
        {
            headers.insert("anthropic-version", version);
        }
        if let Some(beta) = translated.beta() {
            let joined = match headers.get("anthropic-beta").and_then(|v| v.to_str().ok()) {
                Some(configured) => format!("{configured},{beta}"),
                None => beta.to_owned(),
            };
            if let Ok(value) = HeaderValue::try_from(joined) {
                headers.insert("anthropic-beta", value);
            }
        }
        let strip_usage = translated.stream() && !translated.include_usage();
        let (body, response) = translated.into_parts();
        let mut upstream = Request::new(BufferedBody::new(body));
        *upstream.method_mut() = Method::POST;
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;
        // The request's extensions (trace id, metadata, caller) stay with it: the client
        // ignores them and nothing of them goes on the wire.
        *upstream.extensions_mut() = parts.extensions;
        Ok((
            upstream,
            Call {
                name: shared.name.clone(),
                answer: response,
                strip_usage,
                connect_timeout: shared.client.connect_timeout,
                response_timeout: shared.response_timeout,
                idle_timeout: shared.idle_timeout,
            },
        ))
    }
}

impl Service<Request<BufferedBody>> for Anthropic {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready: the pooled client opens connections as calls need them, and a Vertex AI
    /// token is fetched by the call that needs it.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> ResponseFuture {
        let shared = &*self.shared;
        let future = match self.prepare(req) {
            Ok((upstream, call)) => {
                let tokens = match &shared.target {
                    Target::Vertex { tokens, .. } => Some(tokens),
                    Target::Messages(_) => None,
                };
                call::send(&shared.client, tokens, upstream, call)
            }
            Err(answer) => CallFuture::answered(*answer),
        };
        ResponseFuture::new(future)
    }
}
