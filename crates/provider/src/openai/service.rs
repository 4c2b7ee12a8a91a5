use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use portcullis_core::error::{self as core_error, ErrorBody};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use serde_json::{Map, Value};
use tower_service::Service;

use super::future::{Call, ResponseFuture};
use super::query::QueryAllowlist;
use crate::client::HttpClient;
use crate::endpoint::{self, Endpoint};

/// The default time allowed for the response headers to arrive.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a provider could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

impl BuildError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Builds an [`OpenAi`] provider.
pub struct OpenAiBuilder {
    base_url: String,
    api_key: Option<String>,
    headers: Vec<(String, String)>,
    name: Option<String>,
    client: Option<HttpClient>,
    response_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    stream_usage: bool,
    query_params: Vec<String>,
    endpoint: Option<Endpoint>,
    client_keys: bool,
    fixed_query: Vec<(String, String)>,
    key_header: Option<String>,
}

impl fmt::Debug for OpenAiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("name", &self.name)
            .field("response_timeout", &self.response_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("stream_usage", &self.stream_usage)
            .field("query_params", &self.query_params)
            .field("endpoint", &self.endpoint)
            .field("client_keys", &self.client_keys)
            .field("fixed_query", &self.fixed_query)
            .field("key_header", &self.key_header)
            .finish()
    }
}

/// Headers the provider sets itself or that describe one connection only; configuring them
/// is a build error.
const RESERVED: [&str; 11] = [
    "authorization",
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

impl OpenAiBuilder {
    /// Sets the API key, sent as `authorization: Bearer KEY`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Bring-your-own-key: each call uses the key the request carries in its
    /// [`ClientKey`](portcullis_core::context::ClientKey) extension (over any configured key),
    /// and a call without one is answered 401 without reaching the upstream.
    pub fn client_keys(mut self, on: bool) -> Self {
        self.client_keys = on;
        self
    }

    /// A query parameter sent on every upstream request, before any the client may pass
    /// (Azure OpenAI's `api-version`).
    pub fn fixed_query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fixed_query.push((name.into(), value.into()));
        self
    }

    /// Sends the key as `NAME: KEY` instead of `authorization: Bearer KEY` (Azure OpenAI's
    /// `api-key`).
    pub fn key_header(mut self, name: impl Into<String>) -> Self {
        self.key_header = Some(name.into());
        self
    }

    /// Adds a header sent on every upstream request (e.g. `openai-organization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the name recorded as the provider in response facts (default: the URL's host).
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
    /// stream ends with an SSE error event.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Whether to ask the upstream for usage on streams that did not (default on). Turn it
    /// off for upstreams that reject `stream_options`.
    pub fn stream_usage(mut self, on: bool) -> Self {
        self.stream_usage = on;
        self
    }

    /// Adds query parameter names the client may pass on to the upstream (default: none).
    ///
    /// The client's query string is dropped unless this names some of its parameters: a
    /// client cannot pick the upstream's `api-version`, add a `key=…`, or reach any behaviour
    /// a query parameter turns on that the operator did not allow. Each name is matched
    /// exactly as the client wrote it (not decoded); every pair with an allowed name is
    /// passed in the client's order and spelling, except one that holds a `;`. Names are
    /// plain (letters, digits, `-._~`); any other is a build error.
    ///
    /// ```
    /// use portcullis_provider::OpenAi;
    ///
    /// let vllm = OpenAi::builder("http://127.0.0.1:8000/v1")
    ///     .allow_query_params(["trace"])
    ///     .build()
    ///     .unwrap();
    /// # let _ = vllm;
    /// assert!(OpenAi::builder("http://x/v1").allow_query_params(["a=b"]).build().is_err());
    /// ```
    pub fn allow_query_params<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.query_params.extend(names.into_iter().map(Into::into));
        self
    }

    /// Pins the provider to `endpoint`: every request goes there, whatever its path, so the
    /// provider serves a route of any name (`/chat`, `/api/summarise`). An [`Endpoint`] in a
    /// request's extensions still overrides the pin for that request (see [`Endpoint`] for
    /// the order). Default: unpinned, the incoming path decides.
    ///
    /// ```
    /// use portcullis_provider::{Endpoint, OpenAi};
    ///
    /// let chat = OpenAi::builder("http://localhost:8000/v1")
    ///     .endpoint(Endpoint::Chat)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(chat.endpoint(), Some(Endpoint::Chat));
    /// ```
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Builds the provider, checking the base URL, headers and query parameter names.
    ///
    /// # Errors
    /// A [`BuildError`] for a base URL that is not `http://` or `https://`, has no host or
    /// has a query; an `https://` base URL in a build without the `rustls` feature; a header
    /// that is not valid or is one the provider sets; a query parameter that is not a name.
    pub fn build(self) -> Result<OpenAi, BuildError> {
        let base: Uri = self
            .base_url
            .parse()
            .map_err(|e| BuildError(format!("base_url `{}` is not a URL: {e}", self.base_url)))?;
        let scheme = base.scheme_str().unwrap_or("");
        if scheme != "http" && scheme != "https" {
            return Err(BuildError(format!(
                "base_url `{}` must start with http:// or https://",
                self.base_url
            )));
        }
        if scheme == "https" && !HttpClient::TLS {
            return Err(BuildError(format!(
                "base_url `{}` needs TLS: this build of portcullis-provider has no TLS; \
                 enable its `rustls` feature (`portcullis` and the gateway: `rustls`)",
                self.base_url
            )));
        }
        let authority = base
            .authority()
            .ok_or_else(|| BuildError(format!("base_url `{}` has no host", self.base_url)))?
            .clone();
        if base.query().is_some() {
            return Err(BuildError(format!(
                "base_url `{}` must not have a query",
                self.base_url
            )));
        }
        let prefix = base.path().trim_end_matches('/');
        let mut fixed = String::new();
        for (name, value) in &self.fixed_query {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            };
            if !ok(name) || !ok(value) {
                return Err(BuildError(format!(
                    "fixed query `{name}={value}`: letters, digits, `-`, `.`, `_` and `~` only"
                )));
            }
            fixed.push(if fixed.is_empty() { '?' } else { '&' });
            fixed.push_str(name);
            fixed.push('=');
            fixed.push_str(value);
        }
        let uris = Endpoint::table(|e| {
            Uri::builder()
                .scheme(scheme)
                .authority(authority.clone())
                .path_and_query(format!("{prefix}{}{fixed}", e.path()))
                .build()
                .expect("parts of a valid URI")
        });

        // An index with room to spare, which each call's copy keeps: a map whose index is at
        // its bound builds a bigger one at the next `insert` or `entry`, even of a name it
        // has, and hyper's client looks up `host` with `entry` on every call (for an
        // `http://` upstream it finds it here; for `https://` it adds it, and the copy's
        // entries, cloned without spare room, still grow then).
        let mut headers = HeaderMap::with_capacity(16);
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION"))),
        );
        let key_header = match &self.key_header {
            None => header::AUTHORIZATION,
            Some(name) => {
                let parsed = HeaderName::try_from(name.as_str()).map_err(|_| {
                    BuildError(format!("key_header: `{name}` is not a header name"))
                })?;
                // The key would replace a header the provider sets (the body's length, the
                // host), or be replaced by it.
                if parsed != header::AUTHORIZATION && RESERVED.contains(&parsed.as_str()) {
                    return Err(BuildError(format!(
                        "key_header: `{name}` is set by the provider and cannot carry the key"
                    )));
                }
                parsed
            }
        };
        let bearer = key_header == header::AUTHORIZATION;
        if let Some(key) = &self.api_key {
            let text = if bearer {
                format!("Bearer {key}")
            } else {
                key.clone()
            };
            let mut value = HeaderValue::try_from(text)
                .map_err(|_| BuildError("api_key has characters not allowed in a header".into()))?;
            value.set_sensitive(true);
            headers.insert(key_header.clone(), value);
        }
        for (name, value) in &self.headers {
            let header_name = HeaderName::try_from(name.as_str())
                .map_err(|_| BuildError(format!("headers: `{name}` is not a header name")))?;
            if RESERVED.contains(&header_name.as_str()) {
                return Err(BuildError(format!(
                    "headers: `{name}` is set by the provider and cannot be configured"
                )));
            }
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| BuildError(format!("headers.{name}: not a valid header value")))?;
            headers.append(header_name, value);
        }
        if let Some(host) = crate::upstream::plain_host(&base) {
            headers.insert(header::HOST, host);
        }
        let query = QueryAllowlist::new(self.query_params)?;
        let name = self.name.unwrap_or_else(|| authority.host().to_owned());
        // The headers of each kind of call, made once: inserting two per call cost more than
        // the copy of the map it goes into.
        let headers =
            [(false, false), (false, true), (true, false), (true, true)].map(|(post, stream)| {
                let mut headers = headers.clone();
                if post {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    // A place for the body's length, which each call sets.
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                }
                headers.insert(header::ACCEPT, crate::upstream::accept(stream));
                headers
            });
        Ok(OpenAi {
            shared: Arc::new(Shared {
                client: self.client.unwrap_or_default(),
                name: name.into(),
                uris,
                headers,
                response_timeout: self.response_timeout,
                idle_timeout: self.idle_timeout,
                stream_usage: self.stream_usage,
                query,
                endpoint: self.endpoint,
                client_keys: self.client_keys,
                key_header,
            }),
        })
    }
}

/// An OpenAI-compatible provider (see the [module docs](super)).
#[derive(Clone)]
pub struct OpenAi {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) client: HttpClient,
    pub(super) name: Arc<str>,
    uris: [Uri; endpoint::COUNT],
    /// The outbound headers by the call's kind (see [`outbound_headers`]). A POST's hold a
    /// `content-length` of 0 that every call replaces with its body's.
    headers: [HeaderMap; 4],
    pub(super) response_timeout: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
    stream_usage: bool,
    query: QueryAllowlist,
    endpoint: Option<Endpoint>,
    client_keys: bool,
    key_header: HeaderName,
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("name", &self.shared.name)
            .field("base", &self.shared.uris[0])
            .field("endpoint", &self.shared.endpoint)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// Starts building a provider for the API at `base_url` (e.g.
    /// `https://api.openai.com/v1`).
    pub fn builder(base_url: impl Into<String>) -> OpenAiBuilder {
        OpenAiBuilder {
            base_url: base_url.into(),
            api_key: None,
            headers: Vec::new(),
            name: None,
            client: None,
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            idle_timeout: None,
            stream_usage: true,
            query_params: Vec::new(),
            endpoint: None,
            client_keys: false,
            fixed_query: Vec::new(),
            key_header: None,
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The upstream URL of `endpoint`.
    pub fn uri(&self, endpoint: Endpoint) -> &Uri {
        &self.shared.uris[endpoint.index()]
    }

    /// The endpoint the provider is pinned to, if any (see [`OpenAiBuilder::endpoint`]).
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.shared.endpoint
    }

    /// Builds the upstream request, or the answer when there is none to make.
    fn upstream_request(&self, req: Request<BufferedBody>) -> Prepared {
        let shared = &*self.shared;
        let Some(endpoint) = Endpoint::of(&req, shared.endpoint) else {
            return Prepared::Answer(endpoint::unknown(&req));
        };
        if req.method() != endpoint.method() {
            return Prepared::Answer(core_error::response(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorBody::new(
                    "invalid_request_error",
                    format!(
                        "{} takes {}, not {}",
                        endpoint.path(),
                        endpoint.method(),
                        req.method()
                    ),
                )
                .code("method_not_allowed"),
            ));
        }
        let view = req.extensions().get::<Arc<RequestView>>().cloned();
        let (parts, body) = req.into_parts();
        let stream = view.as_ref().is_some_and(|v| v.stream());
        let mut strip_usage = false;
        let body = match &view {
            Some(view) if shared.stream_usage && stream && !view.include_usage() => {
                strip_usage = true;
                BufferedBody::new(with_usage_requested(view))
            }
            _ => body,
        };

        let base = &shared.uris[endpoint.index()];
        let uri = match parts.uri.query().and_then(|q| shared.query.filter(q)) {
            Some(query) => with_query(base, &query),
            None => base.clone(),
        };
        let post = endpoint.method() == Method::POST;
        // What hyper's client would send: the body's exact size as the body reports it (a body
        // already read reports 0), and with it the length it would otherwise write itself.
        let exact = http_body::Body::size_hint(&body).exact();
        let mut upstream = Request::new(body);
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = uri;
        let headers = upstream.headers_mut();
        headers.clone_from(outbound_headers(&shared.headers, post, stream));
        // The POST headers keep a place for the length (see `Shared::headers`).
        if let Some(place) = headers.get_mut(header::CONTENT_LENGTH) {
            match exact {
                Some(n) => *place = content_length(&parts.headers, n),
                None => {
                    headers.remove(header::CONTENT_LENGTH);
                }
            }
        }
        if shared.client_keys {
            let bearer = shared.key_header == header::AUTHORIZATION;
            match client_key_header(&parts.extensions, bearer) {
                Ok(value) => {
                    headers.insert(shared.key_header.clone(), value);
                }
                Err(answer) => return Prepared::Answer(*answer),
            }
        }
        // The request's extensions (trace id, metadata, caller) stay with it: the client
        // ignores them and nothing of them goes on the wire.
        *upstream.extensions_mut() = parts.extensions;
        Prepared::Send(upstream, strip_usage)
    }
}

/// The `content-length` of a body of `len` bytes: the client's own value when it gives that
/// length (shared, not written again), else the number written. hyper's client would write
/// it on every call, and it keeps a length it is given, so this one must be the body's.
fn content_length(request: &HeaderMap, len: u64) -> HeaderValue {
    let mut digits = [0; 20];
    let text = portcullis_core::digits::decimal(len, &mut digits);
    match request.get(header::CONTENT_LENGTH) {
        // The same digits: no sign, spaces or leading zeros.
        Some(value) if value.as_bytes() == text.as_bytes() => value.clone(),
        _ => HeaderValue::from_str(text).expect("digits are a header value"),
    }
}

/// The provider's headers for a call: `content-type: application/json` for a POST, `accept`
/// as the answer will come (`text/event-stream` for a stream, else `application/json`).
fn outbound_headers(headers: &[HeaderMap; 4], post: bool, stream: bool) -> &HeaderMap {
    &headers[usize::from(post) * 2 + usize::from(stream)]
}

/// `Bearer KEY` from the request's [`ClientKey`](portcullis_core::context::ClientKey), or
/// the 401 for a request that brought none.
fn client_key_header(
    extensions: &http::Extensions,
    bearer: bool,
) -> Result<HeaderValue, Box<Response<Body>>> {
    let refused = |message: &str| {
        Box::new(core_error::response(
            StatusCode::UNAUTHORIZED,
            ErrorBody::new("authentication_error", message).code("missing_provider_key"),
        ))
    };
    let Some(key) = extensions.get::<portcullis_core::context::ClientKey>() else {
        return Err(refused(
            "this provider takes the client's own key (Authorization: Bearer), and none was sent",
        ));
    };
    let text = if bearer {
        format!("Bearer {}", key.expose())
    } else {
        key.expose().to_owned()
    };
    let mut value = HeaderValue::try_from(text)
        .map_err(|_| refused("the provider key has characters not allowed in a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

enum Prepared {
    /// Send this request upstream; `true` when usage was asked for on the client's behalf.
    Send(Request<BufferedBody>, bool),
    /// Answer this without calling the upstream.
    Answer(Response<Body>),
}

/// `base` with the client's allowed `query` added (after the provider's fixed parameters).
fn with_query(base: &Uri, query: &str) -> Uri {
    let mut parts = base.clone().into_parts();
    // After the provider's fixed parameters, if it has any.
    parts.path_and_query = match base.query() {
        Some(fixed) => format!("{}?{fixed}&{query}", base.path()),
        None => format!("{}?{query}", base.path()),
    }
    .parse()
    .ok();
    // The kept pairs come from a query that already parsed, so this holds; were it not to,
    // sending no query is the safe answer.
    Uri::from_parts(parts).unwrap_or_else(|_| base.clone())
}

/// The request body with `stream_options.include_usage` set: the one re-serialisation.
fn with_usage_requested(view: &RequestView) -> Bytes {
    let mut options = match view.get("stream_options") {
        Some(Value::Object(options)) => options.clone(),
        _ => Map::new(),
    };
    options.insert("include_usage".into(), Value::Bool(true));
    let mut patch = Map::new();
    patch.insert("stream_options".into(), Value::Object(options));
    view.with_overrides(&patch)
        .expect("stream_options is an object")
        .bytes()
        .clone()
}

impl Service<Request<BufferedBody>> for OpenAi {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready: the pooled client opens connections as calls need them.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> ResponseFuture {
        match self.upstream_request(req) {
            Prepared::Send(upstream, strip_usage) => {
                let shared = &*self.shared;
                let future = shared.client.inner.request(upstream);
                ResponseFuture::calling(
                    future,
                    Call {
                        name: shared.name.clone(),
                        strip_usage,
                        connect_timeout: shared.client.connect_timeout,
                        response_timeout: shared.response_timeout,
                        idle_timeout: shared.idle_timeout,
                    },
                )
            }
            Prepared::Answer(answer) => ResponseFuture::answered(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_length_is_kept_only_when_it_is_the_bodys() {
        let mut client = HeaderMap::new();
        assert_eq!(content_length(&client, 412), "412");
        for other in [
            "411",
            "0412",
            "+412",
            " 412",
            "412 ",
            "4 12",
            "",
            "18446744073709551616",
        ] {
            client.insert(header::CONTENT_LENGTH, HeaderValue::from_static(other));
            assert_eq!(content_length(&client, 412), "412", "{other:?}");
        }
        client.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(content_length(&client, 0), "0");
        client.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(content_length(&client, u64::MAX), "18446744073709551615");
        client.insert(header::CONTENT_LENGTH, HeaderValue::from_static("412"));
        let kept = content_length(&client, 412);
        assert_eq!(kept, "412");
        assert_eq!(
            kept.as_bytes().as_ptr(),
            client[header::CONTENT_LENGTH].as_bytes().as_ptr()
        );
        assert_eq!(content_length(&client, 500), "500");
    }
}
