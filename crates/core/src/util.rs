//! Small pieces shared by services.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::{Body, BoxError};

pin_project! {
    /// The inner service's future, or an answer given without calling it.
    #[derive(Debug)]
    pub struct EitherResponse<F> {
        #[pin]
        state: State<F>,
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

impl<F> EitherResponse<F> {
    /// Waits on `future`.
    pub fn future(future: F) -> Self {
        Self {
            state: State::Future { future },
        }
    }

    /// Answers `response` at once.
    pub fn answer(response: Response<Body>) -> Self {
        Self {
            state: State::Answer {
                response: Some(response),
            },
        }
    }
}

impl<F, E> Future for EitherResponse<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Future { future } => {
                Poll::Ready(ready!(future.poll(cx)).map_err(Into::into))
            }
            StateProj::Answer { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
