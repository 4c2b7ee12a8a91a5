use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use http::Response;
use pin_project_lite::pin_project;
use portcullis_core::error::{HttpError, Unavailable};
use portcullis_core::{BoxError, retry_after};

use crate::store::{BreakerStore, MemoryStore, Permit};
use crate::{Circuit, Classify, DefaultClassifier, Outcome};

pin_project! {
    /// The response future of [`CircuitBreaker`](crate::CircuitBreaker): the inner call,
    /// recorded when it ends, or the refusal of an open circuit.
    pub struct ResponseFuture<F, C = DefaultClassifier, St = MemoryStore>
    where
        St: BreakerStore,
    {
        #[pin]
        kind: Kind<F, C, St>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C, St>
    where
        St: BreakerStore,
    {
        Called {
            #[pin]
            future: F,
            recorder: Option<Recorder<C, St>>,
        },
        Rejected {
            error: Option<Unavailable>,
        },
    }
}

impl<F, C, St: BreakerStore> ResponseFuture<F, C, St> {
    pub(crate) fn called(future: F, recorder: Recorder<C, St>) -> Self {
        Self {
            kind: Kind::Called {
                future,
                recorder: Some(recorder),
            },
        }
    }

    pub(crate) fn rejected(error: Unavailable) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, St: BreakerStore> fmt::Debug for ResponseFuture<F, C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "Called",
            Kind::Rejected { .. } => "Rejected",
        };
        f.debug_tuple("breaker::ResponseFuture")
            .field(&kind)
            .finish()
    }
}

impl<F, B, E, C, St> Future for ResponseFuture<F, C, St>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    C: Classify,
    St: BreakerStore,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, recorder } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(recorder) = recorder.take() {
                    recorder.finish(&result);
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(error.into()))
            }
        }
    }
}

/// Records the outcome of one admitted call; a call dropped before its end (the client went
/// away, an outer timeout) is recorded as [`Outcome::Ignored`], so a probe frees its place.
pub(crate) struct Recorder<C, St: BreakerStore> {
    circuit: Arc<Circuit<C, St>>,
    permit: Permit,
    done: bool,
}

impl<C, St: BreakerStore> Recorder<C, St> {
    pub(crate) fn new(circuit: Arc<Circuit<C, St>>, permit: Permit) -> Self {
        Self {
            circuit,
            permit,
            done: false,
        }
    }

    fn finish<B>(mut self, result: &Result<Response<B>, BoxError>)
    where
        C: Classify,
    {
        self.done = true;
        let classifier = self.circuit.classifier();
        let (outcome, wait) = match result {
            Ok(response) => {
                let outcome = classifier.classify_response(response.status(), response.headers());
                let wait = match outcome {
                    // Only to count an HTTP date from: the circuit's own time is tokio's.
                    Outcome::Failure => retry_after(response.headers(), SystemTime::now()),
                    _ => None,
                };
                (outcome, wait)
            }
            Err(error) => {
                let outcome = classifier.classify_error(error);
                let wait = match outcome {
                    Outcome::Failure => error
                        .downcast_ref::<HttpError>()
                        .and_then(HttpError::retry_after),
                    _ => None,
                };
                (outcome, wait)
            }
        };
        self.circuit.record(self.permit, outcome, wait);
    }
}

impl<C, St: BreakerStore> Drop for Recorder<C, St> {
    fn drop(&mut self) {
        if !self.done {
            self.circuit.record(self.permit, Outcome::Ignored, None);
        }
    }
}
