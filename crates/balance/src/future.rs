use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use portcullis_core::context::TargetPath;
use portcullis_core::error::Unavailable;
use portcullis_core::{Body, BoxError, BufferedBody, clone_request};
use tokio::time::Instant;
use tower_service::Service;

use crate::body::InFlightBody;
use crate::pick::InFlight;
use crate::service::Shared;
use crate::strategy::Key;

pin_project! {
    /// The response future of [`Balance`](crate::Balance): readies the chosen target, calls
    /// it, and draws another while the choice is not ready or answers `Unavailable`.
    pub struct ResponseFuture<S, F> {
        shared: Arc<Shared<S>>,
        // Kept while another target could still be tried; moved into the last call.
        request: Option<Request<BufferedBody>>,
        rng: fastrand::Rng,
        key: Option<Key>,
        // Only once a choice was not ready or unavailable: the success path allocates none.
        slots: Option<Box<[Slot<S>]>>,
        // Why targets could not take the request, for the answer when none can.
        refusals: Refusals,
        #[pin]
        state: State<S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        // Driving `service`, a clone of target `index`, ready.
        Readying {
            index: usize,
            service: Option<S>,
        },
        // Choosing the next target to ready (the slots exist).
        Choosing,
        Calling {
            #[pin]
            future: F,
            index: usize,
            guard: Option<InFlight>,
            started: Option<Instant>,
        },
        Done,
    }
}

/// What a call knows of one target after the first choice failed.
struct Slot<S> {
    /// A clone driven toward readiness and not ready yet (it has the task's waker).
    service: Option<S>,
    mark: Mark,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// May be tried in this round.
    Untried,
    /// Not ready in this round.
    Pending,
    /// Unavailable or failed readiness: out for this request.
    Out,
}

#[derive(Default)]
struct Refusals {
    /// The last reason a target gave, with its index.
    last: Option<(usize, String)>,
    /// The earliest time a target said it would take requests again.
    retry_after: Option<Duration>,
}

impl<S, F> ResponseFuture<S, F> {
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        request: Request<BufferedBody>,
        rng: fastrand::Rng,
        key: Option<Key>,
        index: usize,
        service: S,
    ) -> Self {
        Self {
            shared,
            request: Some(request),
            rng,
            key,
            slots: None,
            refusals: Refusals::default(),
            state: State::Readying {
                index,
                service: Some(service),
            },
        }
    }
}

impl<S, F> fmt::Debug for ResponseFuture<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Readying { index, .. } => format!("readying targets[{index}]"),
            State::Choosing => "choosing".to_owned(),
            State::Calling { index, .. } => format!("calling targets[{index}]"),
            State::Done => "done".to_owned(),
        };
        f.debug_struct("balance::ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S> Future for ResponseFuture<S, S::Future>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared: &Shared<S> = this.shared;
        let n = shared.picker.len();
        loop {
            match this.state.as_mut().project() {
                StateProj::Readying { index, service } => {
                    let index = *index;
                    let ready = service
                        .as_mut()
                        .expect("a readying state holds its service")
                        .poll_ready(cx);
                    match ready {
                        Poll::Ready(Ok(())) => {
                            let mut service = service.take().expect("present");
                            let keep = others_remain(shared, this.slots.as_deref(), index);
                            let request = request_for(this.request, keep, index);
                            let guard = shared.picker.loads.as_ref().map(|l| l.start(index));
                            let started = guard
                                .as_ref()
                                .filter(|_| shared.picker.tracks_latency())
                                .map(|_| Instant::now());
                            let future = service.call(request);
                            this.state.set(State::Calling {
                                future,
                                index,
                                guard,
                                started,
                            });
                        }
                        Poll::Pending => {
                            let service = service.take();
                            let slot = &mut slots(this.slots, n)[index];
                            slot.service = service;
                            slot.mark = Mark::Pending;
                            this.state.set(State::Choosing);
                        }
                        Poll::Ready(Err(err)) => {
                            let err: BoxError = err.into();
                            this.refusals.last = Some((index, err.to_string()));
                            slots(this.slots, n)[index] = Slot {
                                service: None,
                                mark: Mark::Out,
                            };
                            this.state.set(State::Choosing);
                        }
                    }
                }
                StateProj::Choosing => {
                    let slots = this.slots.as_deref_mut().expect("choosing has slots");
                    let next = shared
                        .picker
                        .next(this.rng, *this.key, |i| slots[i].mark == Mark::Untried);
                    match next {
                        Some(index) => {
                            let service = slots[index]
                                .service
                                .take()
                                .unwrap_or_else(|| shared.service(index));
                            this.state.set(State::Readying {
                                index,
                                service: Some(service),
                            });
                        }
                        None if slots.iter().any(|s| s.mark == Mark::Pending) => {
                            // Every candidate was polled in this round and holds the waker:
                            // the first to become ready wakes the next round.
                            new_round(slots);
                            return Poll::Pending;
                        }
                        None => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(none_available(shared, this.refusals)));
                        }
                    }
                }
                StateProj::Calling {
                    future,
                    index,
                    guard,
                    started,
                } => {
                    let index = *index;
                    let result = ready!(future.poll(cx));
                    let loads = shared.picker.loads.as_deref();
                    match result {
                        Ok(mut response) => {
                            if let (Some(loads), Some(started)) = (loads, *started) {
                                let failed = is_failure(response.status());
                                loads.observe(index, started, failed);
                            }
                            TargetPath::answered(&mut response, index);
                            if let Some(guard) = guard.take() {
                                response = response.map(|body| InFlightBody::wrap(body, guard));
                            }
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                        Err(err) => {
                            let err: BoxError = err.into();
                            let Some(refusal) = err.downcast_ref::<Unavailable>() else {
                                if let (Some(loads), Some(started)) = (loads, *started) {
                                    loads.observe(index, started, true);
                                }
                                this.state.set(State::Done);
                                return Poll::Ready(Err(err));
                            };
                            let refusals = &mut *this.refusals;
                            refusals.last = Some((index, refusal.message.clone()));
                            if let Some(wait) = refusal.retry_after {
                                refusals.retry_after =
                                    Some(refusals.retry_after.map_or(wait, |w| w.min(wait)));
                            }
                            let slots = slots(this.slots, n);
                            slots[index].mark = Mark::Out;
                            if this.request.is_none() {
                                // It was the last candidate.
                                this.state.set(State::Done);
                                return Poll::Ready(Err(none_available(shared, this.refusals)));
                            }
                            // Targets found not ready before this call may be ready by now,
                            // and their wakers may have fired already: poll them afresh.
                            new_round(slots);
                            this.state.set(State::Choosing);
                        }
                    }
                }
                StateProj::Done => panic!("balance::ResponseFuture polled after completion"),
            }
        }
    }
}

/// Whether a target other than `index` could still take the request, should it answer
/// `Unavailable`.
fn others_remain<S>(shared: &Shared<S>, slots: Option<&[Slot<S>]>, index: usize) -> bool {
    let weights = &shared.picker.weights;
    match slots {
        None => shared.picker.positive > 1,
        Some(slots) => slots
            .iter()
            .enumerate()
            .any(|(i, s)| i != index && s.mark != Mark::Out && weights[i] > 0.0),
    }
}

/// The request for a call to target `index`: a copy while another draw may need the
/// original, else the original itself; its target path extended by `index`.
fn request_for(
    kept: &mut Option<Request<BufferedBody>>,
    keep: bool,
    index: usize,
) -> Request<BufferedBody> {
    let mut request = if keep {
        clone_request(kept.as_ref().expect("kept until the last call"))
    } else {
        kept.take().expect("kept until the last call")
    };
    TargetPath::enter(&mut request, index);
    request
}

/// The slots, created on the first failed choice.
fn slots<S>(slots: &mut Option<Box<[Slot<S>]>>, n: usize) -> &mut [Slot<S>] {
    slots.get_or_insert_with(|| {
        (0..n)
            .map(|_| Slot {
                service: None,
                mark: Mark::Untried,
            })
            .collect()
    })
}

fn new_round<S>(slots: &mut [Slot<S>]) {
    for slot in slots {
        if slot.mark == Mark::Pending {
            slot.mark = Mark::Untried;
        }
    }
}

/// Whether a response counts as a failure for the latency estimate.
fn is_failure(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// The answer when no target can take the request: 503 with the earliest retry time known.
fn none_available<S>(shared: &Shared<S>, refusals: &Refusals) -> BoxError {
    let message = match &refusals.last {
        Some((index, reason)) => format!(
            "no target can take the request (last: targets[{index}] {:?}: {reason})",
            &*shared.picker.names[*index]
        ),
        None => "no target can take the request".to_owned(),
    };
    Unavailable {
        message,
        retry_after: refusals.retry_after,
    }
    .into()
}
