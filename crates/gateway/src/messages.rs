//! `POST /v1/messages`: Anthropic's Messages API, served by the same stacks as chat
//! completions.
//!
//! The request is translated into a chat completion by
//! [`MessagesApi`](portcullis_provider::inbound::anthropic::MessagesApi) and answered by the
//! gateway's own chat-completions route: the same routing tree, config headers, virtual keys,
//! cache, guards and budgets. The answer, and every refusal, comes back in Anthropic's shape.
//!
//! The Anthropic SDKs send their key in `x-api-key` (and `anthropic-version`, maybe
//! `anthropic-beta`, which are accepted and not read). When the gateway has API keys and the
//! request carries neither `x-portkey-api-key` nor `Authorization`, `x-api-key` is the
//! gateway key: it is moved to `x-portkey-api-key`, so it is never taken for a provider key
//! (bring-your-own-key reads `x-api-key` for Anthropic). No client header reaches a provider
//! either way: providers send only their own.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use http::{HeaderMap, HeaderName, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use portcullis_core::{Body, BoxError, BufferedBody};
use portcullis_provider::inbound::anthropic::{MessagesApiLayer, error_body, error_response};
use tower::ServiceExt;
use tower_layer::Layer;

use crate::config::Server;

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

const PORTKEY_API_KEY: HeaderName = HeaderName::from_static("x-portkey-api-key");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Answers `/v1/messages`: `authenticate` checks the gateway key before a byte of the body is
/// read; `chat` answers the translated request as `POST /v1/chat/completions`.
pub(crate) fn serve<B, A, C>(
    mut req: Request<B>,
    server: &Server,
    authenticate: A,
    chat: C,
) -> BoxFuture
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    A: FnOnce(&HeaderMap) -> Result<(), Box<Response<Body>>>,
    C: Fn(Request<BufferedBody>) -> BoxFuture + Clone + Send + 'static,
{
    let headers = req.headers_mut();
    if !server.api_keys.is_empty()
        && !headers.contains_key(&PORTKEY_API_KEY)
        && !headers.contains_key(header::AUTHORIZATION)
        && let Some(key) = headers.remove(&X_API_KEY)
    {
        headers.insert(PORTKEY_API_KEY, key);
    }
    if let Err(refusal) = authenticate(req.headers()) {
        return Box::pin(in_anthropic_shape(*refusal));
    }
    let api = MessagesApiLayer::new()
        .limit(server.body_limit)
        .layer(tower::service_fn(chat));
    Box::pin(async move {
        Ok(match api.oneshot(req).await {
            Ok(response) => response,
            // The chat route answers every error itself; an error here is one of the
            // translation's own, which have no better status.
            Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        })
    })
}

/// A refusal of the gateway's (OpenAI's shape) in Anthropic's shape, its status and headers
/// kept.
async fn in_anthropic_shape(response: Response<Body>) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = error_body(parts.status, &bytes);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
    Ok(Response::from_parts(parts, Body::full(body)))
}
