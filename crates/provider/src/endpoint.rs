//! The OpenAI endpoints a provider serves, and how a request picks one.

use http::{Method, Request, Response, StatusCode};
use portcullis_core::Body;
use portcullis_core::error::{self as core_error, ErrorBody};

/// An OpenAI API endpoint: the upstream path a provider sends a request to.
///
/// A provider ([`OpenAi`](crate::OpenAi), [`Mock`](crate::Mock)) picks the endpoint of each
/// request from the first of these that is there:
///
/// 1. an `Endpoint` in the request's extensions, put there by the application (a layer such
///    as tower-http's `AddExtensionLayer`, or a handler), to choose per request;
/// 2. the endpoint the provider is pinned to with its builder's `endpoint` method
///    ([`OpenAiBuilder::endpoint`](crate::openai::OpenAiBuilder::endpoint),
///    [`MockBuilder::endpoint`](crate::mock::MockBuilder::endpoint)), so it serves a route of
///    any name such as `/chat`;
/// 3. the incoming path, `/chat/completions`, `/completions`, `/embeddings` or `/models`,
///    with or without a `/v1` prefix ([`Endpoint::from_path`]); any other path is answered
///    404 without calling the upstream.
///
/// Extensions are written by server code, never by a client, and a client that chooses by
/// path reaches one of these endpoints and nothing else of the upstream. Whichever way the
/// endpoint is chosen, the request's method must be the endpoint's (405 otherwise).
///
/// ```
/// use http_body_util::Full;
/// use portcullis_core::EdgeLayer;
/// use portcullis_provider::{Endpoint, Mock};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let body = || Full::new(bytes::Bytes::from_static(br#"{"model":"m","input":"hi"}"#));
/// let pinned = EdgeLayer::new().layer(Mock::builder().endpoint(Endpoint::Chat).build());
///
/// // The pin beats the path...
/// let req = http::Request::post("/chat").body(body()).unwrap();
/// let res = pinned.clone().oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 200);
///
/// // ...and an `Endpoint` in the extensions beats the pin.
/// let mut req = http::Request::post("/chat").body(body()).unwrap();
/// req.extensions_mut().insert(Endpoint::Embeddings);
/// let res = pinned.oneshot(req).await.unwrap();
/// # use http_body_util::BodyExt;
/// # let json: serde_json::Value =
/// #     serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
/// # assert_eq!(json["data"][0]["object"], "embedding");
///
/// // Unpinned, the path decides, and `/chat` names no endpoint.
/// let unpinned = EdgeLayer::new().layer(Mock::default());
/// let req = http::Request::post("/chat").body(body()).unwrap();
/// assert_eq!(unpinned.oneshot(req).await.unwrap().status(), 404);
/// assert_eq!(Endpoint::from_path("/v1/chat/completions"), Some(Endpoint::Chat));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// Chat completions: `POST /chat/completions`.
    Chat,
    /// Legacy text completions: `POST /completions`.
    Completions,
    /// Embeddings: `POST /embeddings`.
    Embeddings,
    /// The model list: `GET /models`.
    Models,
}

/// How many endpoints there are: the size of a provider's table of upstream URLs.
pub(crate) const COUNT: usize = 4;

/// Every endpoint, in the order of [`Endpoint::index`].
const EVERY: [Endpoint; COUNT] = [
    Endpoint::Chat,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Models,
];

impl Endpoint {
    /// Every endpoint.
    pub const ALL: &'static [Endpoint] = &EVERY;

    /// The endpoint a request path names, with or without the `/v1` prefix.
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.strip_prefix("/v1").unwrap_or(path);
        EVERY.into_iter().find(|e| e.path() == path)
    }

    /// The path below the provider's base URL, e.g. `/chat/completions`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Models => "/models",
        }
    }

    /// The method the endpoint takes.
    pub fn method(self) -> Method {
        match self {
            Endpoint::Models => Method::GET,
            _ => Method::POST,
        }
    }

    /// `f` applied to every endpoint, in the order of [`Endpoint::index`].
    pub(crate) fn table<T>(f: impl FnMut(Endpoint) -> T) -> [T; COUNT] {
        EVERY.map(f)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The endpoint `req` is for: its extension, else `pinned`, else its path (see the
    /// [type docs](Endpoint)).
    pub(crate) fn of<B>(req: &Request<B>, pinned: Option<Endpoint>) -> Option<Endpoint> {
        req.extensions()
            .get::<Endpoint>()
            .copied()
            .or(pinned)
            .or_else(|| Endpoint::from_path(req.uri().path()))
    }
}

/// The 404 for a request that names no endpoint.
pub(crate) fn unknown<B>(req: &Request<B>) -> Response<Body> {
    core_error::response(
        StatusCode::NOT_FOUND,
        ErrorBody::new(
            "invalid_request_error",
            format!("unknown endpoint {} {}", req.method(), req.uri().path()),
        )
        .code("unknown_endpoint"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_and_without_v1() {
        assert_eq!(
            Endpoint::from_path("/v1/chat/completions"),
            Some(Endpoint::Chat)
        );
        assert_eq!(
            Endpoint::from_path("/completions"),
            Some(Endpoint::Completions)
        );
        assert_eq!(
            Endpoint::from_path("/v1/embeddings"),
            Some(Endpoint::Embeddings)
        );
        assert_eq!(Endpoint::from_path("/v1/models"), Some(Endpoint::Models));
        assert_eq!(Endpoint::from_path("/v1/chat/completions/x"), None);
        assert_eq!(Endpoint::from_path("/v2/models"), None);
        assert_eq!(Endpoint::from_path("/v1"), None);
        assert_eq!(Endpoint::from_path("/chat"), None);
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        assert_eq!(Endpoint::table(Endpoint::index), [0, 1, 2, 3]);
    }

    #[test]
    fn extension_then_pin_then_path() {
        let req = |path: &str, ext: Option<Endpoint>| {
            let mut req = Request::post(path).body(()).unwrap();
            if let Some(ext) = ext {
                req.extensions_mut().insert(ext);
            }
            req
        };
        let chat = Some(Endpoint::Chat);
        let models = Some(Endpoint::Models);
        // The extension beats the pin and the path.
        assert_eq!(Endpoint::of(&req("/v1/completions", models), chat), models);
        assert_eq!(Endpoint::of(&req("/x", models), None), models);
        // The pin beats the path, known or not.
        assert_eq!(Endpoint::of(&req("/v1/embeddings", None), chat), chat);
        assert_eq!(Endpoint::of(&req("/chat", None), chat), chat);
        // Neither: the path decides.
        assert_eq!(
            Endpoint::of(&req("/v1/embeddings", None), None),
            Some(Endpoint::Embeddings)
        );
        assert_eq!(Endpoint::of(&req("/chat", None), None), None);
    }
}
