//! Test services and helpers shared by the balance tests.

#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use http::{Request, Response};
use portcullis_core::context::Metadata;
use portcullis_core::error::Unavailable;
use portcullis_core::facts::ResponseFacts;
use portcullis_core::{Body, BoxError, BufferedBody};
use tower::Service;

/// A chat request without context.
pub(crate) fn request() -> Request<BufferedBody> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(BufferedBody::new(
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
        ))
        .unwrap()
}

/// A chat request from `user` (`metadata._user`).
pub(crate) fn request_from(user: &str) -> Request<BufferedBody> {
    let mut req = request();
    req.extensions_mut().insert(Metadata::new(
        [("_user".to_owned(), user.to_owned())].into(),
    ));
    req
}

/// The index the balancer recorded in the response facts (the outermost level).
pub(crate) fn target_of(response: &Response<Body>) -> usize {
    let path = ResponseFacts::get(response)
        .and_then(|f| f.target)
        .expect("the balancer records the target");
    path.indices()[0] as usize
}

/// Polls `future` once and expects it to be done: it must not wait.
pub(crate) fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited"),
    }
}

/// Pearson's chi-square statistic of `observed` against `weights`.
pub(crate) fn chi_square(observed: &[usize], weights: &[f64]) -> f64 {
    let n: usize = observed.iter().sum();
    let total: f64 = weights.iter().sum();
    observed
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let expected = n as f64 * w / total;
            (o as f64 - expected).powi(2) / expected
        })
        .sum()
}

/// Chi-square critical values at p = 0.001, by degrees of freedom.
pub(crate) const CHI2_P001_DF1: f64 = 10.828;
pub(crate) const CHI2_P001_DF2: f64 = 13.816;

/// A waker that counts its wakes.
#[derive(Default)]
pub(crate) struct CountingWaker(AtomicUsize);

impl CountingWaker {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What a [`Switch`] does now.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Mode {
    /// Ready, answers 200 with its name.
    Up,
    /// `poll_ready` is pending until the mode changes.
    NotReady,
    /// Ready, but its call answers `Unavailable` at once (an open breaker).
    Unavailable(Option<Duration>),
    /// `poll_ready` fails.
    Broken,
    /// Ready, its call fails with this message.
    Fails(&'static str),
}

/// A target whose availability a test switches.
#[derive(Clone)]
pub(crate) struct Switch {
    name: &'static str,
    shared: Arc<SwitchShared>,
}

struct SwitchShared {
    mode: Mutex<Mode>,
    wakers: Mutex<Vec<Waker>>,
    calls: AtomicUsize,
    paths: Mutex<Vec<Vec<u16>>>,
}

impl Switch {
    pub(crate) fn new(name: &'static str) -> Self {
        Self::with_mode(name, Mode::Up)
    }

    pub(crate) fn with_mode(name: &'static str, mode: Mode) -> Self {
        Self {
            name,
            shared: Arc::new(SwitchShared {
                mode: Mutex::new(mode),
                wakers: Mutex::new(Vec::new()),
                calls: AtomicUsize::new(0),
                paths: Mutex::new(Vec::new()),
            }),
        }
    }

    pub(crate) fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
        for waker in self.shared.wakers.lock().unwrap().drain(..) {
            waker.wake();
        }
    }

    /// Calls made to this target (including those answered `Unavailable`).
    pub(crate) fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// The request `TargetPath` each call carried.
    pub(crate) fn paths(&self) -> Vec<Vec<u16>> {
        self.shared.paths.lock().unwrap().clone()
    }
}

impl Service<Request<BufferedBody>> for Switch {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &*self.shared.mode.lock().unwrap() {
            Mode::NotReady => {
                self.shared.wakers.lock().unwrap().push(cx.waker().clone());
                Poll::Pending
            }
            Mode::Broken => Poll::Ready(Err("target is broken".into())),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        self.shared.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(path) = req
            .extensions()
            .get::<portcullis_core::context::TargetPath>()
        {
            self.shared
                .paths
                .lock()
                .unwrap()
                .push(path.indices().to_vec());
        }
        let answer = match &*self.shared.mode.lock().unwrap() {
            Mode::Unavailable(retry_after) => Err(Unavailable {
                message: format!("{} is open", self.name),
                retry_after: *retry_after,
            }
            .into()),
            Mode::Fails(message) => Err((*message).into()),
            Mode::NotReady | Mode::Broken => panic!("{} called while not ready", self.name),
            Mode::Up => Ok(Response::new(Body::from(self.name))),
        };
        std::future::ready(answer)
    }
}
