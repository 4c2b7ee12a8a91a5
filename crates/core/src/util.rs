//! Small pieces shared by services.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::{Body, BoxError};

pin_project! {
    /// The inner service's future, or an answer given without calling it.
    ///
    /// `E` is the inner error; its conversion to [`BoxError`] is fixed when the future is
    /// made, so the `Future` impl carries no `Into` bound (such bounds make rustc fail to prove
    /// `Send` for async blocks that hold the future, rust-lang/rust#102211).
    #[derive(Debug)]
    pub struct EitherResponse<F, E> {
        #[pin]
        state: State<F>,
        into_box: fn(E) -> BoxError,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Future {
            #[pin]
            future: F,
        },
        Answer {
            response: Option<Response<Body>>,
        },
    }
}

impl<F, E: Into<BoxError>> EitherResponse<F, E> {
    /// Waits on `future`.
    pub(crate) fn future(future: F) -> Self {
        Self {
            state: State::Future { future },
            into_box: Into::into,
        }
    }

    /// Answers `response` at once.
    pub(crate) fn answer(response: Response<Body>) -> Self {
        Self {
            state: State::Answer {
                response: Some(response),
            },
            into_box: Into::into,
        }
    }
}

impl<F, E> Future for EitherResponse<F, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let into_box = *this.into_box;
        match this.state.project() {
            StateProj::Future { future } => Poll::Ready(ready!(future.poll(cx)).map_err(into_box)),
            StateProj::Answer { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
