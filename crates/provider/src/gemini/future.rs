use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use portcullis_core::{Body, BoxError};

use super::embed::EmbeddingTranslator;
use super::response::{ResponseTranslator, error_body};
use super::stream::StreamTranslator;
use crate::call::{Answers, CallFuture};

/// What the answer of a call is translated with.
pub(super) enum Answer {
    /// A chat completion, JSON or stream.
    Chat(ResponseTranslator),
    /// Embeddings.
    Embeddings(EmbeddingTranslator),
}

/// What a call to Gemini carries to translate its answer.
pub(super) type Call = crate::call::Call<Answer>;

impl Answers for Answer {
    const UPSTREAM: &'static str = "Gemini";
    type Stream = StreamTranslator;

    /// Embeddings are never streamed: their answer is read whole whatever its type.
    fn stream(&self, created: u64) -> Option<StreamTranslator> {
        match self {
            Answer::Chat(translator) => Some(translator.stream(created)),
            Answer::Embeddings(_) => None,
        }
    }

    fn json(&self, body: &[u8], created: u64) -> Result<Bytes, BoxError> {
        Ok(match self {
            Answer::Chat(translator) => translator.json(body, created),
            Answer::Embeddings(translator) => translator.json(body),
        }?)
    }

    fn error_body(status: StatusCode, body: &[u8]) -> Bytes {
        error_body(status, body)
    }
}

pin_project! {
    /// The response future of [`Gemini`](super::Gemini).
    pub struct ResponseFuture {
        #[pin]
        inner: Inner,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner {
        /// A call to Gemini (or an answer without one).
        Gemini {
            #[pin]
            future: CallFuture<Answer>,
        },
        /// A Claude model's request, answered by the Claude provider.
        Claude {
            #[pin]
            future: crate::anthropic::ResponseFuture,
        },
    }
}

impl ResponseFuture {
    pub(super) fn new(future: CallFuture<Answer>) -> Self {
        Self {
            inner: Inner::Gemini { future },
        }
    }

    pub(super) fn claude(future: crate::anthropic::ResponseFuture) -> Self {
        Self {
            inner: Inner::Claude { future },
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gemini::ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            InnerProj::Gemini { future } => future.poll(cx),
            InnerProj::Claude { future } => future.poll(cx),
        }
    }
}
