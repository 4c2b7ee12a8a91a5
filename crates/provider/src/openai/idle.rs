use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::BoxError;
use portcullis_core::error::{TimeoutPhase, UpstreamTimeout};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// A response body that fails when the upstream sends nothing for too long.
    pub(crate) struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        after: Duration,
    }
}

impl<B> IdleTimeout<B> {
    pub(crate) fn new(inner: B, after: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(after),
            after,
        }
    }
}

impl<B> http_body::Body for IdleTimeout<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if frame.is_some() {
                    this.sleep.as_mut().reset(Instant::now() + *this.after);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(UpstreamTimeout::new(
                    TimeoutPhase::Idle,
                    *this.after,
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
