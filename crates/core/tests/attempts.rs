//! The record of upstream attempts: what each leaf call came to, in order, in the response
//! facts, with durations on tokio's (paused) clock.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use portcullis_core::attempts::{AttemptOutcome, Attempts};
use portcullis_core::context::{AttemptBudget, TargetPath};
use portcullis_core::error::{TimeoutPhase, UpstreamError, UpstreamErrorKind, UpstreamTimeout};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::{AttemptLimitLayer, BoxError, SpendAttemptLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A leaf that waits `after`, then answers `status`, or fails when `status` is `None`.
fn leaf(
    name: &'static str,
    after: Duration,
    status: Option<u16>,
) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send> + Clone {
    SpendAttemptLayer::new()
        .provider(name)
        .layer(service_fn(move |_req: Request<()>| async move {
            tokio::time::sleep(after).await;
            match status {
                Some(s) => Ok(Response::builder().status(s).body(()).unwrap()),
                None => Err::<Response<()>, BoxError>(
                    UpstreamError::new(UpstreamErrorKind::Connect, "connection refused").into(),
                ),
            }
        }))
}

fn copy(req: &Request<()>, target: usize) -> Request<()> {
    let mut r = Request::new(());
    *r.extensions_mut() = req.extensions().clone();
    TargetPath::enter(&mut r, target);
    r
}

#[tokio::test(start_paused = true)]
async fn a_retried_target_then_a_fallback_are_all_recorded_in_order() {
    // Target 0 is tried three times (a retry of 2) and fails with 503; target 1 answers.
    let stack = AttemptLimitLayer::new(10).layer(service_fn(|req: Request<()>| async move {
        for _ in 0..3 {
            let r = leaf("a", Duration::from_millis(12), Some(503))
                .oneshot(copy(&req, 0))
                .await?;
            assert_eq!(r.status(), 503);
        }
        leaf("b", Duration::from_millis(20), Some(200))
            .oneshot(copy(&req, 1))
            .await
    }));
    let response = stack.oneshot(Request::new(())).await.unwrap();
    let attempts = &ResponseFacts::get(&response).unwrap().attempts;
    assert_eq!(attempts.len(), 4);
    assert_eq!(
        attempts.to_string(),
        "targets[0]/a:503:12ms,targets[0]/a:503:12ms,targets[0]/a:503:12ms,targets[1]/b:200:20ms"
    );
    let records = attempts.to_vec();
    assert_eq!(records[3].outcome, AttemptOutcome::Status(StatusCode::OK));
    assert_eq!(records[3].provider.as_deref(), Some("b"));
    assert_eq!(records[0].target.indices(), &[0]);
    assert_eq!(records[0].duration, Duration::from_millis(12));
}

#[tokio::test(start_paused = true)]
async fn errors_are_classified_and_an_outer_budget_sees_them() {
    let budget = AttemptBudget::new(5);
    let mut req = Request::new(());
    req.extensions_mut().insert(budget.clone());
    let err = leaf("a", Duration::from_millis(3), None)
        .oneshot(copy(&req, 0))
        .await
        .unwrap_err();
    assert!(err.is::<UpstreamError>());
    let timeout = SpendAttemptLayer::new().layer(service_fn(|_req: Request<()>| async {
        Err::<Response<()>, BoxError>(
            UpstreamTimeout::new(TimeoutPhase::Response, Duration::from_secs(1)).into(),
        )
    }));
    timeout.oneshot(copy(&req, 1)).await.unwrap_err();
    let other = SpendAttemptLayer::new().layer(service_fn(|_req: Request<()>| async {
        Err::<Response<()>, BoxError>("boom".into())
    }));
    other.oneshot(copy(&req, 2)).await.unwrap_err();
    assert_eq!(
        budget.attempts().to_string(),
        "targets[0]/a:connect:3ms,targets[1]:timeout:0ms,targets[2]:error:0ms"
    );
    assert_eq!(budget.remaining(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_answer_is_recorded_as_cancelled() {
    let budget = AttemptBudget::new(5);
    let mut req = Request::new(());
    req.extensions_mut().insert(budget.clone());
    let slow = leaf("a", Duration::from_secs(60), Some(200));
    let timed_out = tokio::time::timeout(Duration::from_millis(250), slow.oneshot(req)).await;
    assert!(timed_out.is_err());
    let records = budget.attempts().to_vec();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, AttemptOutcome::Cancelled);
    assert_eq!(records[0].duration, Duration::from_millis(250));
    assert_eq!(budget.attempts().to_string(), "a:cancelled:250ms");
}

#[tokio::test]
async fn the_provider_comes_from_the_response_when_the_layer_names_none() {
    let provider = service_fn(|_req: Request<()>| async {
        let mut r = Response::new(());
        ResponseFacts::get_mut(&mut r).provider = Some("openai".into());
        Ok::<_, BoxError>(r)
    });
    let stack = AttemptLimitLayer::new(1).layer(SpendAttemptLayer::new().layer(provider));
    let response = stack.oneshot(Request::new(())).await.unwrap();
    let attempts = &ResponseFacts::get(&response).unwrap().attempts;
    assert_eq!(attempts.to_string(), "openai:200:0ms");
}

#[tokio::test]
async fn without_a_budget_nothing_is_recorded_and_spent_attempts_are_not_attempts() {
    let provider = service_fn(|_req: Request<()>| async { Ok::<_, BoxError>(Response::new(())) });
    let response = SpendAttemptLayer::new()
        .layer(provider)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert!(ResponseFacts::get(&response).is_none());
    assert!(Attempts::default().is_empty());
    assert_eq!(Attempts::default().to_string(), "");

    // A leaf refused for want of attempts made no attempt.
    let budget = AttemptBudget::new(0);
    let mut req = Request::new(());
    req.extensions_mut().insert(budget.clone());
    let provider = service_fn(|_req: Request<()>| async { Ok::<_, BoxError>(Response::new(())) });
    SpendAttemptLayer::new()
        .layer(provider)
        .oneshot(req)
        .await
        .unwrap_err();
    assert!(budget.attempts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_earlier_answer_holds_the_whole_record_of_the_request() {
    let budget = AttemptBudget::new(5);
    let mut req = Request::new(());
    req.extensions_mut().insert(budget.clone());
    let first = leaf("a", Duration::from_millis(5), Some(503))
        .oneshot(copy(&req, 0))
        .await
        .unwrap();
    let second = leaf("b", Duration::from_millis(7), Some(200))
        .oneshot(copy(&req, 1))
        .await
        .unwrap();
    // Each answer's facts are a handle on the one record, not a copy taken at its answer.
    let early = &ResponseFacts::get(&first).unwrap().attempts;
    let late = &ResponseFacts::get(&second).unwrap().attempts;
    assert_eq!(
        early.to_string(),
        "targets[0]/a:503:5ms,targets[1]/b:200:7ms"
    );
    assert_eq!(early, late);
    assert_eq!(*early, budget.attempts());
}

#[tokio::test]
async fn the_layer_s_provider_name_wins_over_the_answer_s() {
    let provider = service_fn(|_req: Request<()>| async {
        let mut r = Response::builder().status(429).body(()).unwrap();
        ResponseFacts::get_mut(&mut r).provider = Some("upstream".into());
        Ok::<_, BoxError>(r)
    });
    let stack =
        AttemptLimitLayer::new(1).layer(SpendAttemptLayer::new().provider("named").layer(provider));
    let response = stack.oneshot(Request::new(())).await.unwrap();
    let facts = ResponseFacts::get(&response).unwrap();
    assert_eq!(facts.attempts.to_string(), "named:429:0ms");
    assert_eq!(facts.provider.as_deref(), Some("upstream"));
}

#[tokio::test(start_paused = true)]
async fn a_call_never_polled_is_recorded_as_cancelled_once() {
    let budget = AttemptBudget::new(5);
    let mut req = Request::new(());
    req.extensions_mut().insert(budget.clone());
    let mut leaf = leaf("a", Duration::from_millis(1), Some(200));
    let future = leaf.ready().await.unwrap().call(req);
    tokio::time::advance(Duration::from_millis(40)).await;
    drop(future);
    assert_eq!(budget.attempts().to_string(), "a:cancelled:40ms");
    assert_eq!(budget.remaining(), 4);
}
