//! The edge step: read the request body once, with a size limit, and parse it once.
//!
//! [`Edge`] sits at the outside of a stack. It reads the client's body into a
//! [`BufferedBody`](crate::BufferedBody) (413 past the limit, checked against
//! `content-length` before reading a byte), parses a JSON body into a
//! [`RequestView`](crate::RequestView) stored in the request's extensions behind an `Arc`
//! (400 with a message that says what is wrong), and turns every error of the stack below
//! into an OpenAI-style error response, so its own error type is `Infallible` and it can be
//! handed to axum or hyper as it is.
//!
//! # What is parsed
//!
//! Every layer that decides something (routing on `params.*`, `override_params`, and the
//! cache key, guards and budgets) reads the view, so a body that reached them unparsed would
//! walk around them. The edge therefore reads **every non-empty body as JSON, whatever its
//! `content-type`**: a body labelled `text/plain` or a form is parsed like any other, and a
//! body that is not a JSON object is answered 400 (`invalid_request_error`) without calling
//! the stack.
//!
//! - **Byte order mark.** A UTF-8 BOM (`EF BB BF`) before the JSON is tolerated and
//!   stripped: the view is parsed from the bytes after it, and those same bytes, without the
//!   BOM, are what the stack forwards (`content-length` is corrected when present). Some
//!   Windows tools write one; RFC 8259 lets a parser ignore it.
//! - **Empty bodies.** A `POST`, `PUT` or `PATCH` with an empty body (or only a BOM) is 400.
//!   Other methods may come without a body (`GET /v1/models`) and pass on with no view.
//! - **Not JSON by design.** A stack that also serves bodies that are not JSON (multipart
//!   audio uploads, say) turns this off with [`EdgeLayer::json_only`]`(false)`; then only
//!   bodies labelled JSON or opening with `{` are parsed, and the others go on unparsed, seen
//!   by no policy that reads the view. The gateway keeps the default: only its JSON
//!   endpoints reach an edge.
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use portcullis_core::{Body, BufferedBody, BoxError, EdgeLayer, RequestView};
//! use std::sync::Arc;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let stack = ServiceBuilder::new()
//!     .layer(EdgeLayer::new().limit(1024))
//!     .service(service_fn(|req: http::Request<BufferedBody>| async move {
//!         let view = req.extensions().get::<Arc<RequestView>>().unwrap();
//!         Ok::<_, BoxError>(http::Response::new(Body::from(view.model().unwrap().to_owned())))
//!     }));
//!
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(Full::new(bytes::Bytes::from_static(br#"{"model":"gpt-4o-mini"}"#)))
//!     .unwrap();
//! let res = stack.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "gpt-4o-mini");
//!
//! // The content type does not decide whether a body is parsed.
//! let labelled = http::Request::post("/v1/chat/completions")
//!     .header("content-type", "text/plain")
//!     .body(Full::new(bytes::Bytes::from_static(b"\xEF\xBB\xBF{\"model\":\"m\"}")))
//!     .unwrap();
//! let res = stack.clone().oneshot(labelled).await.unwrap();
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "m");
//!
//! let bad = http::Request::post("/v1/chat/completions")
//!     .header("content-type", "text/plain")
//!     .body(Full::new(bytes::Bytes::from_static(b"not json")))
//!     .unwrap();
//! assert_eq!(stack.oneshot(bad).await.unwrap().status(), 400);
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::EdgeLayer;
pub use self::service::Edge;

/// The default body limit: 32 MiB, room for base64 images.
pub const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;
