use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use portcullis_core::{Body, BoxError};

use super::response::{ResponseTranslator, error_body};
use super::stream::StreamTranslator;
use crate::call::{Answers, CallFuture};

/// What a call to Anthropic carries to translate its answer.
pub(super) type Call = crate::call::Call<ResponseTranslator>;

impl Answers for ResponseTranslator {
    const UPSTREAM: &'static str = "Anthropic";
    type Stream = StreamTranslator;

    fn stream(&self, created: u64) -> Option<StreamTranslator> {
        Some(ResponseTranslator::stream(self, created))
    }

    fn json(&self, body: &[u8], created: u64) -> Result<Bytes, BoxError> {
        Ok(ResponseTranslator::json(self, body, created)?)
    }

    fn error_body(status: StatusCode, body: &[u8]) -> Bytes {
        error_body(status, body)
    }
}

pin_project! {
    /// The response future of [`Anthropic`](super::Anthropic).
    pub struct ResponseFuture {
        #[pin]
        inner: CallFuture<ResponseTranslator>,
    }
}

impl ResponseFuture {
    pub(super) fn new(inner: CallFuture<ResponseTranslator>) -> Self {
        Self { inner }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("anthropic::ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}
