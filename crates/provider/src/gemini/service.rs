use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use portcullis_core::context::ClientKey;
use portcullis_core::error::{self as core_error, ErrorBody, HttpError, InvalidRequest};
use portcullis_core::{Body, BoxError, BufferedBody, BuildError, RequestView};
use tower_service::Service;

use super::future::{Answer, Call, ResponseFuture};
use super::request::Translator;
use crate::anthropic::Anthropic;
use crate::builder::{self, checked_base, header_value};
use crate::call::{self, CallFuture};
use crate::client::HttpClient;
use crate::endpoint::{self, Endpoint};
use crate::openai::DEFAULT_RESPONSE_TIMEOUT;
use crate::vertex::{self, Credentials, Publisher, ServiceAccount, TokenSource};

/// Google AI Studio's Gemini API, the default base URL.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The Gemini API version of Google AI Studio's URLs (Vertex AI's is `v1`).
pub const DEFAULT_API_VERSION: &str = "v1beta";

/// Headers the provider sets itself or that describe one connection only; configuring them
/// with [`GeminiBuilder::header`] is a build error (the key has a method of its own).
const RESERVED: [&str; 13] = [
    "authorization",
    "x-goog-api-key",
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
    "accept",
];

/// Builds a [`Gemini`] provider: for Google AI Studio by default, for Vertex AI with
/// [`vertex`](Self::vertex).
pub struct GeminiBuilder {
    base_url: Option<String>,
    api_version: Option<String>,
    api_key: Option<String>,
    client_keys: bool,
    vertex: Option<vertex::Settings>,
    claude_max_tokens: Option<u32>,
    claude_beta: Vec<String>,
    headers: Vec<(String, String)>,
    name: Option<String>,
    client: Option<HttpClient>,
    response_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    translator: Translator,
    endpoint: Option<Endpoint>,
}

impl fmt::Debug for GeminiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiBuilder")
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("client_keys", &self.client_keys)
            .field("vertex", &self.vertex)
            .field("claude_max_tokens", &self.claude_max_tokens)
            .field("claude_beta", &self.claude_beta)
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

impl GeminiBuilder {
    /// Sets the base URL. Default: [`DEFAULT_BASE_URL`] for Google AI Studio;
    /// `https://{region}-aiplatform.googleapis.com` for Vertex AI
    /// (`https://aiplatform.googleapis.com` for the `global` region).
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Sets the API version in the URL (default [`DEFAULT_API_VERSION`] for Google AI Studio,
    /// `v1` for Vertex AI).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }

    /// Sets the Google AI Studio API key, sent as `x-goog-api-key` (never in the URL, where
    /// it would reach access logs).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Bring-your-own-key: each call uses the key the request carries in its
    /// [`ClientKey`] extension, sent as `x-goog-api-key` (over any configured key); a call
    /// without one is answered 401 without reaching the upstream. Google AI Studio only.
    pub fn client_keys(mut self, on: bool) -> Self {
        self.client_keys = on;
        self
    }

    /// Speaks to Vertex AI instead of Google AI Studio: URLs
    /// `{base}/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:…`,
    /// and `Authorization: Bearer` access tokens made from the service-account JSON key at
    /// `service_account_file` (read when the provider is built). An empty `project` takes the
    /// file's `project_id`.
    ///
    /// Claude models (`claude-…`, `anthropic.…`) are served too, by an
    /// [`Anthropic`] provider in its Vertex AI mode inside this one, sharing its token cache;
    /// see [`Publisher::of`] for how the publisher of a request is picked.
    pub fn vertex(
        mut self,
        project: impl Into<String>,
        region: impl Into<String>,
        service_account_file: impl Into<PathBuf>,
    ) -> Self {
        self.vertex = Some(vertex::Settings {
            project: project.into(),
            region: region.into(),
            credentials: Credentials::File(service_account_file.into()),
        });
        self
    }

    /// [`vertex`](Self::vertex) with a service account already read.
    pub fn vertex_service_account(
        mut self,
        project: impl Into<String>,
        region: impl Into<String>,
        account: ServiceAccount,
    ) -> Self {
        self.vertex = Some(vertex::Settings {
            project: project.into(),
            region: region.into(),
            credentials: Credentials::Account(account),
        });
        self
    }

    /// Vertex AI: the `max_tokens` sent for Claude models when a request has neither
    /// `max_completion_tokens` nor `max_tokens` (default
    /// [`DEFAULT_MAX_TOKENS`](crate::anthropic::DEFAULT_MAX_TOKENS); Anthropic requires one).
    pub fn anthropic_max_tokens(mut self, max_tokens: u32) -> Self {
        self.claude_max_tokens = Some(max_tokens);
        self
    }

    /// Vertex AI: adds a beta feature to the `anthropic-beta` header of Claude requests.
    pub fn anthropic_beta(mut self, feature: impl Into<String>) -> Self {
        self.claude_beta.push(feature.into());
        self
    }

    /// Adds a header sent on every upstream request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the name recorded as the provider in response facts (default `google`, or
    /// `vertex-ai` for Vertex AI).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Shares a pooled client (and its connect timeout) with other providers; the Vertex AI
    /// token endpoint is reached through it too.
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

    /// Drops the request fields Gemini cannot honour instead of answering 400 (see
    /// [`Translator::drop_unsupported`]). Default: refuse.
    pub fn drop_unsupported(mut self, drop: bool) -> Self {
        self.translator = self.translator.drop_unsupported(drop);
        self
    }

    /// Pins the provider to `endpoint`, whatever the incoming path (see
    /// [`OpenAiBuilder::endpoint`](crate::openai::OpenAiBuilder::endpoint)). Chat
    /// completions and embeddings are served; the others are answered 400.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Builds the provider, checking the base URL and headers, and for Vertex AI reading the
    /// service account and building the provider of Claude models beside.
    ///
    /// # Errors
    /// A [`BuildError`] for a base URL that is not `http://` or `https://`, has no host or
    /// has a query; an `https://` base URL in a build without the `rustls` feature; a key or
    /// header that is not a valid header, or a header the provider sets itself; for Vertex
    /// AI, a service-account file that cannot be read or used, a project or region that is
    /// empty or not a plain name, `client_keys`, an Anthropic `max_tokens` of 0 or a beta
    /// feature that is not a valid header.
    pub fn build(self) -> Result<Gemini, BuildError> {
        let client = self.client.unwrap_or_default();
        let version = |default: &str| self.api_version.as_deref().unwrap_or(default).to_owned();
        // The route after the base URL, up to `publishers/` on Vertex AI.
        let (default_base, auth, route, name) = match &self.vertex {
            None => (
                DEFAULT_BASE_URL.to_owned(),
                if self.client_keys {
                    Auth::ClientKeys
                } else {
                    Auth::Static
                },
                format!("/{}/", version(DEFAULT_API_VERSION)),
                "google",
            ),
            Some(settings) => {
                if self.client_keys {
                    return Err(BuildError::at(
                        "client_keys",
                        "client keys are for Google AI Studio; Vertex AI uses the service account",
                    ));
                }
                let resolved = settings.resolve(&client)?;
                (
                    resolved.default_base,
                    Auth::Vertex(resolved.tokens),
                    format!("/{}{}", version("v1"), resolved.route),
                    "vertex-ai",
                )
            }
        };
        let url = self.base_url.unwrap_or(default_base);
        let root = format!("{}{route}", checked_base(&url)?);
        let prefix = match auth {
            Auth::Vertex(_) => format!("{root}google/models/"),
            _ => format!("{root}models/"),
        };
        // The URL of a model's method must parse: checked once here with a model name.
        Uri::try_from(format!("{prefix}m:generateContent?alt=sse"))
            .map_err(|e| BuildError::at("base_url", format!("`{url}`: {e}")))?;

        let mut headers = builder::headers(&self.headers, &RESERVED)?;
        if let Some(host) = crate::upstream::plain_host_at(&root) {
            headers.insert(http::header::HOST, host);
        }
        if let Some(key) = &self.api_key {
            if matches!(auth, Auth::Vertex(_)) {
                return Err(BuildError::at(
                    "api_key",
                    "an API key is for Google AI Studio; Vertex AI uses the service account",
                ));
            }
            let mut key = header_value("api_key", key)?;
            key.set_sensitive(true);
            headers.insert("x-goog-api-key", key);
        }
        let name: Arc<str> = self.name.as_deref().unwrap_or(name).into();
        // Claude on the same project: one provider for the Anthropic publisher, answering
        // under this one's name and sharing its client, timeouts and token cache.
        let claude = match &auth {
            Auth::Vertex(tokens) => {
                let mut b = Anthropic::builder()
                    .vertex_shared(format!("{root}anthropic/models/"), tokens.clone())
                    .name(&*name)
                    .client(client.clone())
                    .idle_timeout(self.idle_timeout)
                    .drop_unsupported(self.translator.drops_unsupported());
                b = match self.response_timeout {
                    Some(t) => b.response_timeout(t),
                    None => b.no_response_timeout(),
                };
                if let Some(n) = self.claude_max_tokens {
                    b = b.max_tokens(n);
                }
                for feature in &self.claude_beta {
                    b = b.beta(feature.clone());
                }
                for (k, v) in &self.headers {
                    b = b.header(k.clone(), v.clone());
                }
                if let Some(endpoint) = self.endpoint {
                    b = b.endpoint(endpoint);
                }
                Some(b.build()?)
            }
            _ => None,
        };
        Ok(Gemini {
            shared: Arc::new(Shared {
                client,
                name,
                prefix,
                headers,
                auth,
                claude,
                response_timeout: self.response_timeout,
                idle_timeout: self.idle_timeout,
                translator: self.translator,
                endpoint: self.endpoint,
            }),
        })
    }
}

/// How upstream requests are authorised.
enum Auth {
    /// The configured key, in the headers already (or none).
    Static,
    /// The client's own key.
    ClientKeys,
    /// Vertex AI access tokens.
    Vertex(Arc<TokenSource>),
}

/// A provider for Google's Gemini API (Google AI Studio or Vertex AI) that speaks OpenAI's
/// chat completions and embeddings to its callers (see the [module docs](super)).
#[derive(Clone)]
pub struct Gemini {
    shared: Arc<Shared>,
}

struct Shared {
    client: HttpClient,
    name: Arc<str>,
    /// `{base}/v1beta/models/` (or Vertex AI's route): the model and method follow.
    prefix: String,
    headers: HeaderMap,
    auth: Auth,
    /// Vertex AI: the provider of Claude models (the `anthropic` publisher).
    claude: Option<Anthropic>,
    response_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    translator: Translator,
    endpoint: Option<Endpoint>,
}

impl fmt::Debug for Gemini {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gemini")
            .field("name", &self.shared.name)
            .field("prefix", &self.shared.prefix)
            .field("vertex", &self.is_vertex())
            .field("endpoint", &self.shared.endpoint)
            .finish_non_exhaustive()
    }
}

impl Gemini {
    /// Starts building a provider for Google AI Studio at [`DEFAULT_BASE_URL`] (Vertex AI
    /// with [`GeminiBuilder::vertex`]).
    pub fn builder() -> GeminiBuilder {
        GeminiBuilder {
            base_url: None,
            api_version: None,
            api_key: None,
            client_keys: false,
            vertex: None,
            claude_max_tokens: None,
            claude_beta: Vec::new(),
            headers: Vec::new(),
            name: None,
            client: None,
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            idle_timeout: None,
            translator: Translator::new(),
            endpoint: None,
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The URL of `model`'s `method` (`generateContent`, `streamGenerateContent`,
    /// `embedContent`, …): `{base}/v1beta/models/{model}:{method}`, or Vertex AI's
    /// `{base}/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:{method}`.
    pub fn url(&self, model: &str, method: &str) -> String {
        format!("{}{model}:{method}", self.shared.prefix)
    }

    /// Whether the provider speaks to Vertex AI.
    pub fn is_vertex(&self) -> bool {
        matches!(self.shared.auth, Auth::Vertex(_))
    }

    /// The endpoint the provider is pinned to, if any (see [`GeminiBuilder::endpoint`]).
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.shared.endpoint
    }

    /// The translator of requests, as configured.
    pub fn translator(&self) -> &Translator {
        &self.shared.translator
    }

    /// Vertex AI: the provider of Claude models, which this one hands their requests to.
    pub fn claude(&self) -> Option<&Anthropic> {
        self.shared.claude.as_ref()
    }

    /// Builds the upstream request (without its Vertex AI token), or the request for the
    /// Claude provider, or the answer when there is none to make (boxed: it is the rare
    /// path).
    fn prepare(&self, req: Request<BufferedBody>) -> Result<Prepared, Box<Response<Body>>> {
        let shared = &*self.shared;
        let Some(endpoint) = Endpoint::of(&req, shared.endpoint) else {
            return Err(Box::new(endpoint::unknown(&req)));
        };
        if !matches!(endpoint, Endpoint::Chat | Endpoint::Embeddings) {
            return Err(Box::new(core_error::response(
                StatusCode::BAD_REQUEST,
                ErrorBody::new(
                    "invalid_request_error",
                    format!(
                        "the Gemini provider serves chat completions (POST /chat/completions) \
                         and embeddings (POST /embeddings), not {}",
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
                    format!("{} takes POST, not {}", endpoint.path(), req.method()),
                )
                .code("method_not_allowed"),
            )));
        }
        let refuse = |e: &InvalidRequest| Box::new(HttpError::from(e).to_response());
        let (mut parts, body) = req.into_parts();
        let view = match parts.extensions.get::<Arc<RequestView>>() {
            Some(view) => view.clone(),
            None => Arc::new(RequestView::parse(body.into_bytes()).map_err(|e| refuse(&e))?),
        };
        // On Vertex AI the model picks the publisher; a missing model is refused by the
        // translator below.
        let publisher = match (self.is_vertex(), view.model()) {
            (true, Some(model)) => Publisher::of(model).map_err(|e| refuse(&e))?.0,
            _ => Publisher::Google,
        };
        if let (Publisher::Anthropic, Some(claude)) = (publisher, &shared.claude) {
            // The Claude provider reads the view from the extensions rather than parse the
            // body again.
            let bytes = view.bytes().clone();
            parts.extensions.insert(view);
            let request = Request::from_parts(parts, BufferedBody::new(bytes));
            return Ok(Prepared::Claude(claude.clone(), request));
        }
        let (body, model, method, answer, stream, strip_usage) = if endpoint == Endpoint::Chat {
            let translated = shared.translator.request(&view).map_err(|e| refuse(&e))?;
            let stream = translated.stream();
            let method = if stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            let strip_usage = stream && !translated.include_usage();
            let model: Arc<str> = translated.model().into();
            let (body, response) = translated.into_parts();
            (
                body,
                model,
                method,
                Answer::Chat(response),
                stream,
                strip_usage,
            )
        } else {
            let translated = if self.is_vertex() {
                shared.translator.vertex_embeddings(&view)
            } else {
                shared.translator.embeddings(&view)
            }
            .map_err(|e| refuse(&e))?;
            let method = translated.method();
            let model: Arc<str> = translated.model().into();
            let (body, response) = translated.into_parts();
            (
                body,
                model,
                method,
                Answer::Embeddings(response),
                false,
                false,
            )
        };
        let model = match self.is_vertex() {
            // Checked above: `google.` is removed.
            true => Publisher::of(&model).map_err(|e| refuse(&e))?.1,
            false => &*model,
        };
        // The model was checked to be a plain name, and the prefix to make URLs.
        let uri = Uri::try_from(self.url(model, method)).map_err(|e| {
            refuse(&InvalidRequest::param(
                "model",
                format!("the model makes no URL: {e}"),
            ))
        })?;

        let mut headers = shared.headers.clone();
        if let Auth::ClientKeys = shared.auth {
            let refused = |message: &str| {
                Box::new(core_error::response(
                    StatusCode::UNAUTHORIZED,
                    ErrorBody::new("authentication_error", message).code("missing_provider_key"),
                ))
            };
            let key = parts.extensions.get::<ClientKey>().ok_or_else(|| {
                refused(
                    "this provider takes the client's own Google API key (x-api-key or \
                     Authorization: Bearer), and none was sent",
                )
            })?;
            let mut value = HeaderValue::try_from(key.expose())
                .map_err(|_| refused("the provider key has characters not allowed in a header"))?;
            value.set_sensitive(true);
            headers.insert("x-goog-api-key", value);
        }
        headers.insert(header::ACCEPT, crate::upstream::accept(stream));
        let mut upstream = Request::new(BufferedBody::new(body));
        *upstream.method_mut() = Method::POST;
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;
        // The request's extensions (trace id, metadata, caller) stay with it: the client
        // ignores them and nothing of them goes on the wire.
        *upstream.extensions_mut() = parts.extensions;
        Ok(Prepared::Upstream(
            upstream,
            Call {
                name: shared.name.clone(),
                answer,
                strip_usage,
                connect_timeout: shared.client.connect_timeout,
                response_timeout: shared.response_timeout,
                idle_timeout: shared.idle_timeout,
            },
        ))
    }
}

/// What a request comes to before anything is sent.
enum Prepared {
    /// A Gemini request (without its Vertex AI token yet) and what its answer needs.
    Upstream(Request<BufferedBody>, Call),
    /// A request for a Claude model on Vertex AI, for the Claude provider.
    Claude(Anthropic, Request<BufferedBody>),
}

impl Service<Request<BufferedBody>> for Gemini {
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
            Ok(Prepared::Upstream(upstream, call)) => {
                let tokens = match &shared.auth {
                    Auth::Vertex(tokens) => Some(tokens),
                    Auth::Static | Auth::ClientKeys => None,
                };
                call::send(&shared.client, tokens, upstream, call)
            }
            // The Claude provider is always ready (its `poll_ready` is), so its clone may be
            // called without being driven ready first.
            Ok(Prepared::Claude(mut claude, request)) => {
                return ResponseFuture::claude(claude.call(request));
            }
            Err(answer) => CallFuture::answered(*answer),
        };
        ResponseFuture::new(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The default base URLs are https.
    #[cfg(feature = "rustls")]
    #[test]
    fn urls_for_ai_studio_and_vertex() {
        let studio = Gemini::builder().build().unwrap();
        assert_eq!(
            studio.url("gemini-2.5-flash", "generateContent"),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(studio.name(), "google");
        let key = include_str!("../../tests/golden/gemini/test_only_service_account_key.pem");
        let json = serde_json::json!({"client_email": "sa@x", "private_key": key,
            "project_id": "from-file"});
        let account = ServiceAccount::from_json(json.to_string().as_bytes()).unwrap();
        let vertex = Gemini::builder()
            .vertex_service_account("", "europe-west4", account.clone())
            .build()
            .unwrap();
        assert_eq!(
            vertex.url("gemini-2.5-pro", "streamGenerateContent?alt=sse"),
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/from-file/locations/\
             europe-west4/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(vertex.name(), "vertex-ai");
        let global = Gemini::builder()
            .vertex_service_account("p", "global", account.clone())
            .build()
            .unwrap();
        assert!(
            global
                .url("m", "generateContent")
                .starts_with("https://aiplatform.googleapis.com/v1/projects/p/locations/global/")
        );
        let err = Gemini::builder()
            .vertex_service_account("p/../x", "r", account)
            .build()
            .unwrap_err();
        assert!(err.to_string().starts_with("vertex_project"), "{err}");
    }
}
