//! [`FirstFrame`]: records the time to the first frame of a streamed body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::{Body, BoxError};
use tokio::time::Instant;

use crate::meter::Series;

pin_project! {
    /// A streamed response body that records, on its first non-empty data frame, the time
    /// since the request started.
    pub(crate) struct FirstFrame {
        #[pin]
        inner: Body,
        pending: Option<(Instant, Arc<Series>)>,
    }
}

impl FirstFrame {
    pub(crate) fn new(inner: Body, start: Instant, series: Arc<Series>) -> Self {
        Self {
            inner,
            pending: Some((start, series)),
        }
    }
}

impl http_body::Body for FirstFrame {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && frame.data_ref().is_some_and(|data| !data.is_empty())
            && let Some((start, series)) = this.pending.take()
        {
            series
                .time_to_first_token()
                .record(start.elapsed().as_secs_f64());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
