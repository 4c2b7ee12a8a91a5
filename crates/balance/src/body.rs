//! The response body that keeps its request counted in flight until it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::{Body, BoxError};

use crate::pick::InFlight;

pin_project! {
    /// A body that ends its request's [`InFlight`] count at its end, on an error, or when it
    /// is dropped (the client went away), whichever comes first.
    pub(crate) struct InFlightBody {
        #[pin]
        inner: Body,
        guard: Option<InFlight>,
    }
}

impl InFlightBody {
    /// Wraps `inner`; a body that has already ended ends the count at once.
    pub(crate) fn wrap(inner: Body, guard: InFlight) -> Body {
        if http_body::Body::is_end_stream(&inner) {
            return inner;
        }
        Body::boxed(Self {
            inner,
            guard: Some(guard),
        })
    }
}

impl http_body::Body for InFlightBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = this.inner.as_mut().poll_frame(cx);
        match &frame {
            Poll::Ready(None | Some(Err(_))) => *this.guard = None,
            // A server may stop polling once the body says it has ended.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => *this.guard = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
