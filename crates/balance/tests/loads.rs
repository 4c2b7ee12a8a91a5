//! Load-aware strategies: least in flight (streams count until they end) and peak EWMA
//! (latency to response headers, under paused time).

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use portcullis_balance::{Balance, BoxTarget, PeakEwma, Strategy, Target};
use portcullis_core::{Body, BoxError, BufferedBody};
use tokio::sync::mpsc;
use tower::{Service, ServiceExt, service_fn};

use support::{Mode, Switch, now, request, target_of};

/// A target that answers every call with a stream the test feeds and ends.
#[derive(Clone, Default)]
struct Streams {
    senders: Arc<Mutex<Vec<mpsc::UnboundedSender<Bytes>>>>,
}

impl Streams {
    fn sender(&self, i: usize) -> mpsc::UnboundedSender<Bytes> {
        self.senders.lock().unwrap()[i].clone()
    }

    /// Ends every stream opened so far.
    fn end_all(&self) {
        self.senders.lock().unwrap().clear();
    }
}

struct ChannelBody(mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

impl Service<Request<BufferedBody>> for Streams {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<BufferedBody>) -> Self::Future {
        let (tx, rx) = mpsc::unbounded_channel();
        self.senders.lock().unwrap().push(tx);
        std::future::ready(Ok(Response::new(Body::new(ChannelBody(rx)))))
    }
}

fn least_in_flight(a: &Streams, b: &Streams) -> Balance<Streams> {
    Balance::builder()
        .target(Target::new("a", a.clone()))
        .target(Target::new("b", b.clone()))
        .strategy(Strategy::LeastInFlight)
        .seed(9)
        .build()
        .unwrap()
}

#[tokio::test]
async fn least_in_flight_prefers_the_idle_target_while_a_stream_is_open() {
    let (a, b) = (Streams::default(), Streams::default());
    let streams = [&a, &b];
    let mut lb = least_in_flight(&a, &b);

    let open = now(lb.call(request())).unwrap();
    let busy = target_of(&open);
    let idle = 1 - busy;
    assert_eq!(lb.in_flight(busy), Some(1));
    assert_eq!(lb.in_flight(idle), Some(0));

    for _ in 0..50 {
        let response = now(lb.call(request())).unwrap();
        assert_eq!(target_of(&response), idle);
        // A response dropped before its end (the client went away) stops counting.
        drop(response);
        assert_eq!(lb.in_flight(idle), Some(0));
    }

    // The stream still counts while it streams...
    let mut body = open.into_body();
    streams[busy]
        .sender(0)
        .send(Bytes::from_static(b"data: {}\n\n"))
        .unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: {}\n\n");
    assert_eq!(lb.in_flight(busy), Some(1));
    assert_eq!(target_of(&now(lb.call(request())).unwrap()), idle);

    // ...and is forgotten once it ends: both targets share the traffic again.
    streams[busy].end_all();
    assert!(body.frame().await.is_none());
    assert_eq!(lb.in_flight(busy), Some(0));
    let mut counts = [0usize; 2];
    for _ in 0..400 {
        counts[target_of(&now(lb.call(request())).unwrap())] += 1;
    }
    assert!(counts[0] > 150 && counts[1] > 150, "{counts:?}");
}

#[tokio::test]
async fn least_in_flight_counts_concurrent_streams() {
    let (a, b) = (Streams::default(), Streams::default());
    let mut lb = least_in_flight(&a, &b);
    // Held streams alternate: each new one goes to the target with fewer open.
    let held: Vec<_> = (0..10).map(|_| now(lb.call(request())).unwrap()).collect();
    assert_eq!((lb.in_flight(0), lb.in_flight(1)), (Some(5), Some(5)));
    drop(held);
    assert_eq!((lb.in_flight(0), lb.in_flight(1)), (Some(0), Some(0)));
}

#[tokio::test]
async fn failed_and_unavailable_calls_stop_counting_at_once() {
    let (a, b) = (
        Switch::with_mode("a", Mode::Fails("boom")),
        Switch::with_mode("b", Mode::Unavailable(None)),
    );
    let mut lb = Balance::builder()
        .target(Target::new("a", a.clone()))
        .target(Target::new("b", b.clone()))
        .strategy(Strategy::LeastInFlight)
        .build()
        .unwrap();
    for _ in 0..20 {
        assert!(now(lb.call(request())).is_err());
    }
    assert!(a.calls() > 0 && b.calls() > 0);
    assert_eq!((lb.in_flight(0), lb.in_flight(1)), (Some(0), Some(0)));
    // A body that has ended already is not wrapped and does not count.
    a.set(Mode::Up);
    b.set(Mode::Up);
    let response = now(lb.call(request())).unwrap();
    let t = target_of(&response);
    assert_eq!(lb.in_flight(t), Some(1), "a full body counts until read");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes.len(), 1);
    assert_eq!(lb.in_flight(t), Some(0));
}

/// A target that answers after `delay` (virtual time), with `status`.
fn delayed(delay: Duration, status: StatusCode) -> BoxTarget {
    BoxTarget::new(service_fn(move |_req: Request<BufferedBody>| async move {
        tokio::time::sleep(delay).await;
        let mut response = Response::new(Body::from("{}"));
        *response.status_mut() = status;
        Ok::<_, BoxError>(response)
    }))
}

fn peak_ewma(targets: [(&'static str, BoxTarget); 2], settings: PeakEwma) -> Balance<BoxTarget> {
    Balance::builder()
        .targets(
            targets
                .into_iter()
                .map(|(name, svc)| Target::new(name, svc)),
        )
        .strategy(Strategy::PeakEwma(settings))
        .seed(5)
        .build()
        .unwrap()
}

async fn sequential(lb: &mut Balance<BoxTarget>, n: usize) -> [usize; 2] {
    let mut counts = [0; 2];
    for _ in 0..n {
        let response = lb.ready().await.unwrap().call(request()).await.unwrap();
        counts[target_of(&response)] += 1;
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_prefers_the_faster_target_after_exploring_both() {
    let ok = StatusCode::OK;
    let mut lb = peak_ewma(
        [
            ("slow", delayed(Duration::from_millis(50), ok)),
            ("fast", delayed(Duration::from_millis(10), ok)),
        ],
        PeakEwma::new(),
    );
    let counts = sequential(&mut lb, 200).await;
    // Each untried target is explored once, then the fast one takes everything.
    assert_eq!(counts, [1, 199]);
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_tries_the_slow_target_again_as_its_estimate_decays() {
    let ok = StatusCode::OK;
    let mut lb = peak_ewma(
        [
            ("slow", delayed(Duration::from_millis(50), ok)),
            ("fast", delayed(Duration::from_millis(10), ok)),
        ],
        PeakEwma::new().decay(Duration::from_secs(1)),
    );
    // ~10 s of traffic: the slow estimate falls below the fast one about every
    // ln(50/10) s = 1.6 s of traffic the fast one takes.
    let counts = sequential(&mut lb, 1_000).await;
    assert!((3..=15).contains(&counts[0]), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_spills_concurrent_requests_onto_the_slower_target() {
    let ok = StatusCode::OK;
    let lb = peak_ewma(
        [
            ("slow", delayed(Duration::from_millis(50), ok)),
            ("fast", delayed(Duration::from_millis(10), ok)),
        ],
        PeakEwma::new(),
    );
    sequential(&mut lb.clone(), 10).await;
    // Cost = latency × (in flight + 1): past 4 in flight, fast costs more than idle slow.
    let calls: Vec<_> = (0..12)
        .map(|_| tokio::spawn(lb.clone().oneshot(request())))
        .collect();
    let mut counts = [0usize; 2];
    for call in calls {
        counts[target_of(&call.await.unwrap().unwrap())] += 1;
    }
    assert!(counts[0] >= 1 && counts[1] > counts[0], "{counts:?}");
    assert_eq!((lb.in_flight(0), lb.in_flight(1)), (Some(0), Some(0)));
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_does_not_mistake_fast_failures_for_speed() {
    let mut lb = peak_ewma(
        [
            (
                "failing",
                delayed(Duration::from_millis(1), StatusCode::INTERNAL_SERVER_ERROR),
            ),
            (
                "working",
                delayed(Duration::from_millis(300), StatusCode::OK),
            ),
        ],
        PeakEwma::new(),
    );
    // 100 requests take 30 s: the failing target is explored once, and tried once more
    // when its 5 s penalty has decayed below 300 ms (10 s × ln(5 / 0.3) = 28 s).
    let counts = sequential(&mut lb, 100).await;
    assert_eq!(counts, [2, 98]);
}
