//! [`ResponseFuture`]: reserves (when the store needs I/O), calls, and attaches the ticket.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::{Body, BoxError, BufferedBody};
use tower_service::Service;

use crate::limits::{Decision, Limits, Plan};
use crate::store::{LimitStore, MemoryStore, Reservation};
use crate::ticket::Ticket;

pin_project! {
    /// The response future of [`Budget`](crate::Budget): the store's answer when it needs
    /// I/O, then the inner call with the reservation's ticket; or the layer's own answer.
    pub struct ResponseFuture<S, St = MemoryStore>
    where
        S: Service<Request<BufferedBody>>,
        St: LimitStore,
    {
        #[pin]
        state: State<S, St>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<S, St>
    where
        S: Service<Request<BufferedBody>>,
        St: LimitStore,
    {
        /// Waiting for the store; the readied service and the request wait beside it.
        Reserving {
            reserve: St::Future,
            service: S,
            request: Request<BufferedBody>,
            limits: Arc<Limits<St>>,
            reservation: Arc<Reservation>,
            plan: Arc<Plan>,
        },
        /// The inner service's future; the ticket settles what it reserved.
        Calling {
            #[pin]
            future: S::Future,
            ticket: Option<Ticket<St>>,
        },
        /// A refusal, already here.
        Answered {
            response: Response<Body>,
        },
        /// The answer was given (and, for a moment, while a state's contents move out).
        Done,
    }
}

impl<S, St> ResponseFuture<S, St>
where
    S: Service<Request<BufferedBody>>,
    St: LimitStore,
{
    pub(crate) fn calling(future: S::Future, ticket: Option<Ticket<St>>) -> Self {
        Self {
            state: State::Calling { future, ticket },
        }
    }

    pub(crate) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered { response },
        }
    }

    pub(crate) fn reserving(
        reserve: St::Future,
        service: S,
        request: Request<BufferedBody>,
        limits: Arc<Limits<St>>,
        reservation: Arc<Reservation>,
        plan: Arc<Plan>,
    ) -> Self {
        Self {
            state: State::Reserving {
                reserve,
                service,
                request,
                limits,
                reservation,
                plan,
            },
        }
    }
}

impl<S, St> fmt::Debug for ResponseFuture<S, St>
where
    S: Service<Request<BufferedBody>>,
    St: LimitStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Reserving { .. } => "reserving",
            State::Calling { .. } => "calling",
            State::Answered { .. } => "answered",
            State::Done => "done",
        };
        f.debug_struct("budget::ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, St> Future for ResponseFuture<S, St>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
    St: LimitStore,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reserving { reserve, .. } => {
                    let result = ready!(Pin::new(reserve).poll(cx));
                    // The state is `Reserving`, so the pattern always matches.
                    if let StateOwned::Reserving {
                        mut service,
                        request,
                        limits,
                        reservation,
                        plan,
                        ..
                    } = this.state.as_mut().project_replace(State::Done)
                    {
                        let next = match limits.decide(&reservation, &plan, result) {
                            Decision::Admitted {
                                standings,
                                fallback,
                            } => {
                                let ticket =
                                    Ticket::new(limits, reservation, plan, standings, fallback);
                                State::Calling {
                                    future: service.call(request),
                                    ticket: Some(ticket),
                                }
                            }
                            Decision::Answer(response) => State::Answered { response },
                        };
                        this.state.set(next);
                    }
                }
                StateProj::Calling { future, ticket } => {
                    let result = ready!(future.poll(cx));
                    let ticket = ticket.take();
                    this.state.set(State::Done);
                    // An error drops the ticket, which gives the reservation back.
                    let response = result.map_err(Into::into)?;
                    return Poll::Ready(Ok(match ticket {
                        Some(ticket) => ticket.attach(response),
                        None => response,
                    }));
                }
                StateProj::Answered { .. } => {
                    if let StateOwned::Answered { response } =
                        this.state.as_mut().project_replace(State::Done)
                    {
                        return Poll::Ready(Ok(response));
                    }
                }
                StateProj::Done => panic!("budget::ResponseFuture polled after completion"),
            }
        }
    }
}
