//! The retry layer around scripted in-process services, with paused time: what is retried,
//! how long each wait is, when the layer stops, and the readiness contract.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use portcullis_core::context::{Attempt, AttemptBudget};
use portcullis_core::error::{
    AttemptsExhausted, BudgetExceeded, GuardDenied, RateLimited, RequestTimeout, Unavailable,
    UpstreamError, UpstreamErrorKind, error_response,
};
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_core::observe::{Observation, Outcome, observe_response};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView, SpendAttemptLayer};
use portcullis_retry::{Retry, RetryLayer, RetryPolicy, RetryPolicyBuilder};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// What the scripted upstream does on one call.
enum Step {
    Status(u16, &'static [(&'static str, &'static str)]),
    Fail(fn() -> BoxError),
    /// Answers after this long.
    Slow(Duration, u16),
    /// A 200 event stream with these frames (an `Err` breaks it there).
    Stream(Vec<Result<&'static str, &'static str>>),
}

/// A call the upstream received: when, and which attempt it said it was.
#[derive(Clone, Debug)]
struct Call {
    at: Instant,
    attempt: Option<u32>,
}

#[derive(Clone)]
struct Upstream {
    steps: Arc<Mutex<VecDeque<Step>>>,
    /// What to do once the script has run out.
    then: Arc<dyn Fn() -> Step + Send + Sync>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Upstream {
    fn new(steps: Vec<Step>, then: impl Fn() -> Step + Send + Sync + 'static) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps.into())),
            then: Arc::new(then),
            calls: Arc::default(),
        }
    }

    fn always(status: u16) -> Self {
        Self::new(vec![], move || Step::Status(status, &[]))
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// The waits between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls();
        calls.windows(2).map(|w| w[1].at - w[0].at).collect()
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<BufferedBody>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        let this = self.clone();
        service_fn(move |req: Request<BufferedBody>| {
            let step = this
                .steps
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| (this.then)());
            this.calls.lock().unwrap().push(Call {
                at: Instant::now(),
                attempt: req.extensions().get::<Attempt>().map(|a| a.0),
            });
            async move {
                match step {
                    Step::Status(status, headers) => Ok(status_response(status, headers)),
                    Step::Fail(err) => Err(err()),
                    Step::Slow(after, status) => {
                        tokio::time::sleep(after).await;
                        Ok(status_response(status, &[]))
                    }
                    Step::Stream(frames) => Ok(stream_response(frames)),
                }
            }
        })
    }
}

fn status_response(status: u16, headers: &[(&str, &str)]) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Body::from(format!("status {status}")))
        .unwrap()
}

fn stream_response(frames: Vec<Result<&'static str, &'static str>>) -> Response<Body> {
    let frames = frames
        .into_iter()
        .map(|f| {
            f.map(|s| Bytes::from_static(s.as_bytes()))
                .map_err(BoxError::from)
        })
        .collect();
    observe_response(
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Frames(frames))
            .unwrap(),
    )
}

/// A body of scripted frames.
struct Frames(VecDeque<Result<Bytes, BoxError>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|f| f.map(http_body::Frame::data)))
    }
}

fn request() -> Request<BufferedBody> {
    Request::post("/v1/chat/completions")
        .body(BufferedBody::new(r#"{"model":"m"}"#))
        .unwrap()
}

fn stream_request() -> Request<BufferedBody> {
    let body = Bytes::from_static(br#"{"model":"m","stream":true}"#);
    let mut req = Request::post("/v1/chat/completions")
        .body(BufferedBody::new(body.clone()))
        .unwrap();
    req.extensions_mut()
        .insert(Arc::new(RequestView::parse(body).unwrap()));
    req
}

/// A policy whose waits are the whole backoff window, with no budget: waits are exact.
fn policy(attempts: u32) -> RetryPolicyBuilder {
    RetryPolicy::builder(attempts)
        .jitter(|window| window)
        .no_budget()
}

async fn send(policy: RetryPolicyBuilder, upstream: &Upstream) -> Result<Response<Body>, BoxError> {
    send_req(policy, upstream, request()).await
}

async fn send_req(
    policy: RetryPolicyBuilder,
    upstream: &Upstream,
    req: Request<BufferedBody>,
) -> Result<Response<Body>, BoxError> {
    Retry::new(upstream.service(), policy.build().unwrap())
        .oneshot(req)
        .await
}

fn retries(response: &Response<Body>) -> Option<Retries> {
    ResponseFacts::get(response).and_then(|f| f.retries)
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn backoff_windows_double_up_to_the_cap() {
    let upstream = Upstream::always(503);
    let start = Instant::now();
    let r = send(
        policy(7).max_total_wait(Duration::from_secs(600)),
        &upstream,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 503, "the last answer is returned");
    assert_eq!(retries(&r), Some(Retries::Exhausted));
    assert_eq!(upstream.hits(), 8);
    assert_eq!(
        upstream.gaps(),
        [
            MS(500),
            MS(1000),
            MS(2000),
            MS(4000),
            MS(8000),
            MS(8000),
            MS(8000)
        ]
    );
    assert_eq!(
        start.elapsed(),
        MS(31_500),
        "returned right after the last try"
    );
    let attempts: Vec<_> = upstream.calls().iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, (0..8).map(Some).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn backoff_base_and_cap_are_configurable() {
    let upstream = Upstream::always(500);
    send(policy(4).backoff(MS(100), MS(300)), &upstream)
        .await
        .unwrap();
    assert_eq!(upstream.gaps(), [MS(100), MS(200), MS(300), MS(300)]);
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_picks_exact_repeatable_waits_inside_each_window() {
    let seed = 0x5eed;
    let upstream = Upstream::always(502);
    let policy = RetryPolicy::builder(5)
        .no_budget()
        .jitter_seed(seed)
        .build()
        .unwrap();
    let svc = Retry::new(upstream.service(), policy);
    svc.clone().oneshot(request()).await.unwrap();
    svc.oneshot(request()).await.unwrap();

    // The same generator, drawn the same way: whole milliseconds in [0, window].
    let mut rng = fastrand::Rng::with_seed(seed);
    let windows = [500, 1000, 2000, 4000, 8000];
    let expected: Vec<_> = (0..2)
        .flat_map(|_| windows.map(|w| MS(rng.u64(0..=w))))
        .collect();
    let calls = upstream.calls();
    let gaps: Vec<_> = [&calls[..6], &calls[6..]]
        .iter()
        .flat_map(|c| c.windows(2).map(|w| w[1].at - w[0].at).collect::<Vec<_>>())
        .collect();
    assert_eq!(gaps, expected);
    for (gap, window) in gaps.iter().zip(windows.iter().chain(windows.iter())) {
        assert!(*gap <= MS(*window));
    }
    assert_ne!(gaps[..5], gaps[5..], "requests draw different waits");
}

#[tokio::test(start_paused = true)]
async fn success_after_failures_counts_the_retries() {
    let upstream = Upstream::new(vec![Step::Status(503, &[]), Step::Status(429, &[])], || {
        Step::Status(200, &[])
    });
    let r = send(policy(3), &upstream).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(retries(&r), Some(Retries::Made(2)));
    assert_eq!(upstream.gaps(), [MS(500), MS(1000)]);
}

#[tokio::test(start_paused = true)]
async fn first_success_is_made_zero_at_once() {
    let upstream = Upstream::always(200);
    let start = Instant::now();
    let r = send(policy(3), &upstream).await.unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(0)));
    assert_eq!(upstream.hits(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(text(r).await, "status 200", "the body is untouched");
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_is_honoured_on_429_and_503() {
    let upstream = Upstream::new(
        vec![
            Step::Status(429, &[("retry-after", "3")]),
            Step::Status(503, &[("retry-after", "5")]),
        ],
        || Step::Status(200, &[]),
    );
    let r = send(policy(3).use_retry_after_header(true), &upstream)
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(2)));
    assert_eq!(upstream.gaps(), [MS(3000), MS(5000)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_ignored_unless_enabled_and_on_other_statuses() {
    let upstream = Upstream::new(
        vec![
            Step::Status(429, &[("retry-after", "3")]),
            Step::Status(500, &[("retry-after", "3")]),
        ],
        || Step::Status(200, &[]),
    );
    send(policy(3), &upstream).await.unwrap();
    assert_eq!(
        upstream.gaps(),
        [MS(500), MS(1000)],
        "disabled: the backoff"
    );

    let upstream = Upstream::new(vec![Step::Status(500, &[("retry-after", "3")])], || {
        Step::Status(200, &[])
    });
    send(policy(3).use_retry_after_header(true), &upstream)
        .await
        .unwrap();
    assert_eq!(
        upstream.gaps(),
        [MS(500)],
        "a 500's retry-after: the backoff"
    );
}

fn fixed_clock() -> SystemTime {
    // Sun, 06 Nov 1994 08:49:30 GMT
    UNIX_EPOCH + Duration::from_secs(784_111_770)
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_counts_from_the_clock() {
    let upstream = Upstream::new(
        vec![
            Step::Status(503, &[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            Step::Status(503, &[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
        ],
        || Step::Status(200, &[]),
    );
    let r = send(
        policy(3).use_retry_after_header(true).clock(fixed_clock),
        &upstream,
    )
    .await
    .unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(2)));
    assert_eq!(
        upstream.gaps(),
        [MS(7000), MS(0)],
        "7 s ahead of the clock, then a date already past"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_ms_headers_win_over_retry_after() {
    let upstream = Upstream::new(
        vec![
            Step::Status(429, &[("retry-after", "9"), ("retry-after-ms", "1500")]),
            Step::Status(429, &[("retry-after", "9"), ("x-ms-retry-after-ms", "250")]),
            Step::Status(429, &[("retry-after", "garbage")]),
        ],
        || Step::Status(200, &[]),
    );
    send(policy(3).use_retry_after_header(true), &upstream)
        .await
        .unwrap();
    assert_eq!(
        upstream.gaps(),
        [MS(1500), MS(250), MS(2000)],
        "an unreadable header falls back to the backoff (retry 3: 2 s)"
    );
}

#[tokio::test(start_paused = true)]
async fn total_wait_is_capped_and_past_the_cap_the_layer_stops() {
    let upstream = Upstream::new(vec![], || Step::Status(429, &[("retry-after", "25")]));
    let start = Instant::now();
    let r = send(policy(5).use_retry_after_header(true), &upstream)
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(retries(&r), Some(Retries::Exhausted));
    assert_eq!(
        upstream.gaps(),
        [MS(25_000), MS(25_000)],
        "a third 25 s passes 60 s"
    );
    assert_eq!(start.elapsed(), MS(50_000), "stopped without waiting again");

    // One wait longer than the cap: no retry at all, no wait.
    let upstream = Upstream::new(vec![], || Step::Status(503, &[("retry-after-ms", "61000")]));
    let start = Instant::now();
    let r = send(policy(5).use_retry_after_header(true), &upstream)
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Exhausted));
    assert_eq!(upstream.hits(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // The cap is configurable and counts backoff waits too.
    let upstream = Upstream::always(503);
    send(policy(5).max_total_wait(MS(1600)), &upstream)
        .await
        .unwrap();
    assert_eq!(
        upstream.gaps(),
        [MS(500), MS(1000)],
        "500 + 1000 + 2000 > 1600"
    );
}

#[tokio::test(start_paused = true)]
async fn spent_budget_returns_the_answer_at_once() {
    // Retries may add half the first tries, with no floor: every second request may retry
    // once.
    let upstream = Upstream::always(503);
    let policy = RetryPolicy::builder(3)
        .jitter(|w| w)
        .budget(Duration::from_secs(10), 0, 0.5)
        .build()
        .unwrap();
    let svc = RetryLayer::new(policy).layer(upstream.service());
    let mut hits = Vec::new();
    for _ in 0..6 {
        let before = upstream.hits();
        let start = Instant::now();
        let r = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(retries(&r), Some(Retries::Exhausted));
        let made = upstream.hits() - before;
        if made == 1 {
            assert_eq!(start.elapsed(), Duration::ZERO, "no wait without budget");
        }
        hits.push(made);
    }
    assert_eq!(hits, [1, 2, 1, 2, 1, 2], "9 calls for 6 requests, not 24");
}

#[tokio::test(start_paused = true)]
async fn default_budget_allows_retries_at_low_volume() {
    let upstream = Upstream::always(503);
    let policy = RetryPolicy::builder(3).jitter(|w| w).build().unwrap();
    assert!(policy.budget().is_some());
    let r = Retry::new(upstream.service(), policy)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Exhausted));
    assert_eq!(
        upstream.hits(),
        4,
        "the 10/s floor covers a lone failing request"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_started_is_never_retried() {
    const HEL: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    let upstream = Upstream::new(
        vec![Step::Stream(vec![Ok(HEL), Err("reset later")])],
        || Step::Status(200, &[]),
    );
    let r = send_req(policy(3), &upstream, stream_request())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(retries(&r), Some(Retries::Made(0)));
    let observation = r.extensions().get::<Observation>().unwrap().clone();
    let body = text(r).await;
    assert!(body.starts_with(HEL), "the first event is kept: {body}");
    assert!(body.contains("stream_interrupted"), "{body}");
    assert_eq!(upstream.hits(), 1);
    assert!(matches!(
        observation.report().unwrap().outcome,
        Outcome::Failed(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_broke_before_its_first_event_is_retried() {
    const HI: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";
    let upstream = Upstream::new(
        vec![
            Step::Stream(vec![Err("reset before anything")]),
            Step::Stream(vec![Ok("data: {\"choi"), Err("reset mid event")]),
        ],
        || Step::Stream(vec![Ok(HI), Ok(DONE)]),
    );
    let r = send_req(policy(3), &upstream, stream_request())
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(2)));
    assert_eq!(upstream.gaps(), [MS(500), MS(1000)]);
    assert_eq!(text(r).await, [HI, DONE].concat());

    // Every attempt broke: the last one's answer (an error event) is returned.
    let upstream = Upstream::new(vec![], || Step::Stream(vec![Err("reset")]));
    let r = send_req(policy(1), &upstream, stream_request())
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Exhausted));
    assert_eq!(upstream.hits(), 2);
    assert!(text(r).await.contains("stream_interrupted"));
}

#[tokio::test(start_paused = true)]
async fn without_the_stream_flag_a_response_is_not_held() {
    // No view (or stream: false): the 200 is final as soon as its headers arrive.
    let upstream = Upstream::new(vec![Step::Stream(vec![Err("reset")])], || {
        Step::Status(200, &[])
    });
    let r = send(policy(3), &upstream).await.unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(0)));
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn attempts_zero_means_one_call() {
    let upstream = Upstream::new(vec![], || Step::Stream(vec![Err("reset")]));
    let r = send_req(policy(0), &upstream, stream_request())
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(0)));
    assert_eq!(upstream.hits(), 1);

    let upstream = Upstream::always(503);
    let r = send(policy(0), &upstream).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(retries(&r), Some(Retries::Made(0)));
    assert_eq!(upstream.hits(), 1);
    assert_eq!(upstream.calls()[0].attempt, Some(0));

    let upstream = Upstream::new(vec![], || Step::Fail(transport));
    assert!(send(policy(0), &upstream).await.is_err());
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn at_most_ten_attempts() {
    let err = RetryPolicy::builder(11).build().unwrap_err();
    assert_eq!(err.path(), "attempts");
    assert_eq!(err.to_string(), "attempts: must be at most 10, got 11");

    let upstream = Upstream::always(503);
    let r = send(policy(10).backoff(MS(0), MS(0)), &upstream)
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Exhausted));
    assert_eq!(upstream.hits(), 11);
}

#[tokio::test(start_paused = true)]
async fn a_custom_status_list_replaces_the_default() {
    let upstream = Upstream::always(503);
    let r = send(policy(3).on_status_codes([500, 446]), &upstream)
        .await
        .unwrap();
    assert_eq!(
        retries(&r),
        Some(Retries::Made(0)),
        "503 is no longer listed"
    );
    assert_eq!(upstream.hits(), 1);

    let upstream = Upstream::new(vec![Step::Status(446, &[])], || Step::Status(200, &[]));
    let r = send(policy(3).on_status_codes([500, 446]), &upstream)
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(1)), "446 is listed");

    // An empty list: only transport errors.
    let upstream = Upstream::new(vec![Step::Fail(transport)], || Step::Status(500, &[]));
    let r = send(policy(3).on_status_codes([]), &upstream)
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(retries(&r), Some(Retries::Made(1)));
}

#[tokio::test(start_paused = true)]
async fn unlisted_statuses_pass_through_at_once() {
    for status in [400, 401, 402, 403, 404, 408, 422, 446, 501] {
        let upstream = Upstream::always(status);
        let start = Instant::now();
        let r = send(policy(3), &upstream).await.unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(retries(&r), Some(Retries::Made(0)), "{status}");
        assert_eq!(upstream.hits(), 1, "{status}");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

fn transport() -> BoxError {
    UpstreamError::new(UpstreamErrorKind::Connect, "connection refused").into()
}

#[tokio::test(start_paused = true)]
async fn transport_errors_are_retried_and_the_last_one_returned() {
    let upstream = Upstream::new(vec![Step::Fail(transport), Step::Fail(transport)], || {
        Step::Status(200, &[])
    });
    let r = send(policy(3), &upstream).await.unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(2)));
    assert_eq!(upstream.gaps(), [MS(500), MS(1000)]);

    let upstream = Upstream::new(vec![], || Step::Fail(|| "some other failure".into()));
    let err = send(policy(2), &upstream).await.unwrap_err();
    assert_eq!(err.to_string(), "some other failure");
    assert_eq!(upstream.hits(), 3, "any error is a transport error");

    let upstream = Upstream::new(vec![], || Step::Fail(transport));
    let err = send(policy(2).on_status_codes([]), &upstream)
        .await
        .unwrap_err();
    assert!(err.is::<UpstreamError>());
    assert_eq!(upstream.hits(), 3, "whatever the status list");
}

#[tokio::test(start_paused = true)]
async fn errors_with_an_http_status_follow_the_list() {
    let denied = || -> BoxError {
        GuardDenied {
            message: "no".into(),
        }
        .into()
    };
    let spent = || -> BoxError {
        BudgetExceeded {
            message: "spent".into(),
        }
        .into()
    };
    for fail in [denied, spent] {
        let upstream = Upstream::new(vec![], move || Step::Fail(fail));
        assert!(send(policy(3), &upstream).await.is_err());
        assert_eq!(upstream.hits(), 1, "446 and 402 are not retried by default");
    }
    let upstream = Upstream::new(vec![Step::Fail(denied)], || Step::Status(200, &[]));
    let r = send(policy(3).on_status_codes([446]), &upstream)
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(1)), "unless listed");
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_error_from_a_layer_below_is_waited_out() {
    let limited = || -> BoxError {
        RateLimited {
            message: "slow down".into(),
            retry_after: MS(2500),
        }
        .into()
    };
    let upstream = Upstream::new(vec![Step::Fail(limited)], || Step::Status(200, &[]));
    let r = send(policy(2).use_retry_after_header(true), &upstream)
        .await
        .unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(1)));
    assert_eq!(
        upstream.gaps(),
        [MS(2500)],
        "its retry_after, like a 429's header"
    );
}

#[tokio::test(start_paused = true)]
async fn unavailable_is_not_retried() {
    let upstream = Upstream::new(vec![], || {
        Step::Fail(|| {
            Unavailable {
                message: "circuit open".into(),
                retry_after: Some(MS(100)),
            }
            .into()
        })
    });
    let start = Instant::now();
    let err = send(policy(3), &upstream).await.unwrap_err();
    assert!(err.is::<Unavailable>());
    assert_eq!(upstream.hits(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_times_out_as_408_and_is_retried() {
    let upstream = Upstream::new(vec![Step::Slow(Duration::from_secs(60), 200)], || {
        Step::Slow(MS(200), 200)
    });
    let start = Instant::now();
    let r = send(policy(2).attempt_timeout(Duration::from_secs(1)), &upstream)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(retries(&r), Some(Retries::Made(1)));
    assert_eq!(upstream.gaps(), [MS(1500)], "1 s timeout + 0.5 s backoff");
    assert_eq!(start.elapsed(), MS(1700));

    // Every attempt too slow: the timeout is the answer, as a 408 timeout_error.
    let upstream = Upstream::new(vec![], || Step::Slow(Duration::from_secs(60), 200));
    let start = Instant::now();
    let err = send(policy(2).attempt_timeout(Duration::from_secs(1)), &upstream)
        .await
        .unwrap_err();
    assert_eq!(
        *err.downcast_ref::<RequestTimeout>().unwrap(),
        RequestTimeout {
            after: Duration::from_secs(1)
        }
    );
    assert_eq!(start.elapsed(), MS(3000 + 500 + 1000));
    let r = error_response(&err);
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    assert_eq!(v["error"]["type"], "timeout_error");
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_covers_a_streams_first_event() {
    // Headers at once, but the first event never comes: the attempt times out.
    let stalled = service_fn(|_req: Request<BufferedBody>| async {
        Ok::<_, BoxError>(observe_response(
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Stalled)
                .unwrap(),
        ))
    });
    let policy = policy(1)
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = Retry::new(stalled, policy)
        .oneshot(stream_request())
        .await
        .unwrap_err();
    assert!(err.is::<RequestTimeout>());
    assert_eq!(start.elapsed(), MS(2000 + 500 + 2000));
}

/// A body that never sends anything.
struct Stalled;

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn the_retry_calls_only_services_it_readied() {
    let policy = RetryPolicy::builder(2)
        .no_budget()
        .jitter(|w| w)
        .build()
        .unwrap();
    let (mut svc, mut handle) =
        mock::spawn_with::<Request<BufferedBody>, Response<Body>, _, _>(|m| {
            RetryLayer::new(policy.clone()).layer(m)
        });
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    // The mock panics if a clone that was not readied is called.
    let fut = tokio::spawn(svc.call(request()));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.extensions().get::<Attempt>(), Some(&Attempt(0)));
    send.send_response(status_response(503, &[]));

    // The retry waits for its clone to be ready again: no capacity, no call.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(!fut.is_finished());
    handle.allow(1);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.extensions().get::<Attempt>(), Some(&Attempt(1)));
    assert_eq!(
        req.body().bytes(),
        r#"{"model":"m"}"#,
        "the body is replayed"
    );
    send.send_response(status_response(200, &[]));
    let r = fut.await.unwrap().unwrap();
    assert_eq!(retries(&r), Some(Retries::Made(1)));

    // The layer needs readiness again for the next call.
    assert!(svc.poll_ready().is_pending());
}

#[tokio::test(start_paused = true)]
async fn a_poll_ready_error_is_returned() {
    let policy = RetryPolicy::builder(2).build().unwrap();
    let (mut svc, mut handle) =
        mock::spawn_with::<Request<BufferedBody>, Response<Body>, _, _>(|m| {
            RetryLayer::new(policy.clone()).layer(m)
        });
    handle.send_error("inner not ready");
    match svc.poll_ready() {
        Poll::Ready(Err(err)) => assert_eq!(err.to_string(), "inner not ready"),
        other => panic!("expected the inner error, got {other:?}"),
    }
}

fn with_budget(mut req: Request<BufferedBody>, budget: &AttemptBudget) -> Request<BufferedBody> {
    req.extensions_mut().insert(budget.clone());
    req
}

/// Retries around a leaf that spends the request's attempt budget, as in a gateway stack.
async fn send_spending(
    policy: RetryPolicyBuilder,
    upstream: &Upstream,
    req: Request<BufferedBody>,
) -> Result<Response<Body>, BoxError> {
    let leaf = SpendAttemptLayer::new().layer(upstream.service());
    Retry::new(leaf, policy.build().unwrap()).oneshot(req).await
}

#[tokio::test(start_paused = true)]
async fn a_spent_attempt_budget_stops_retries_with_the_last_answer() {
    let upstream = Upstream::new(
        vec![
            Step::Status(500, &[]),
            Step::Status(429, &[("x-from", "b")]),
        ],
        || Step::Status(200, &[]),
    );
    let budget = AttemptBudget::new(2);
    let start = Instant::now();
    let r = send_spending(policy(5), &upstream, with_budget(request(), &budget))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "the upstream's answer, not attempts_exhausted"
    );
    assert_eq!(r.headers()["x-from"], "b");
    assert_eq!(retries(&r), Some(Retries::Exhausted));
    assert_eq!(upstream.hits(), 2);
    assert_eq!(
        start.elapsed(),
        MS(500),
        "no wait for a retry that will not be made"
    );
    assert_eq!(budget.remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_spent_attempt_budget_returns_the_last_error() {
    let upstream = Upstream::new(vec![], || Step::Fail(transport));
    let budget = AttemptBudget::new(1);
    let err = send_spending(policy(5), &upstream, with_budget(request(), &budget))
        .await
        .unwrap_err();
    assert!(err.is::<UpstreamError>(), "{err}");
    assert!(!err.is::<AttemptsExhausted>());
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_budget_spent_elsewhere_is_read_before_each_retry() {
    // No leaf spends here: the layer reads the shared budget, whoever spent it (a sibling
    // target, an earlier fallback turn).
    let upstream = Upstream::always(503);
    let budget = AttemptBudget::new(0);
    let r = send_req(policy(3), &upstream, with_budget(request(), &budget))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(retries(&r), Some(Retries::Exhausted));
    assert_eq!(
        upstream.hits(),
        1,
        "the first try is not the retry layer's to refuse"
    );
}

#[tokio::test(start_paused = true)]
async fn with_attempts_left_in_the_budget_retries_go_on() {
    let upstream = Upstream::new(vec![Step::Status(503, &[]), Step::Status(503, &[])], || {
        Step::Status(200, &[])
    });
    let budget = AttemptBudget::new(10);
    let r = send_spending(policy(5), &upstream, with_budget(request(), &budget))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(retries(&r), Some(Retries::Made(2)));
    assert_eq!(budget.remaining(), 7);
}
