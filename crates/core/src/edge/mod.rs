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
//! let bad = http::Request::post("/v1/chat/completions")
//!     .body(Full::new(bytes::Bytes::from_static(b"{not json")))
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
