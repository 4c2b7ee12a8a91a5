//! A fallback under the request's whole budget of upstream attempts: once it is spent, the
//! fallback answers what it has (the last upstream response or error) instead of moving on to a
//! target that could only refuse with `attempts_exhausted`.

mod common;

use http::{Request, Response};
use portcullis_core::context::AttemptBudget;
use portcullis_core::error::{AttemptsExhausted, UpstreamError, UpstreamErrorKind};
use portcullis_core::{Body, BoxError, BufferedBody, SpendAttemptLayer};
use portcullis_fallback::{BoxTarget, Fallback, box_target};
use tower::{Layer, ServiceExt};

use common::{Log, event_stream, ok, path, request, status, stream_request, target, text};

/// A target that spends one attempt of the request's budget before it answers, as every
/// leaf of a gateway stack does.
fn spending<A>(name: &'static str, log: &Log, answer: A) -> BoxTarget
where
    A: Fn() -> Result<Response<Body>, BoxError> + Clone + Send + Sync + 'static,
{
    box_target(SpendAttemptLayer::new().layer(target(name, log, answer)))
}

fn with_budget(mut req: Request<BufferedBody>, budget: &AttemptBudget) -> Request<BufferedBody> {
    req.extensions_mut().insert(budget.clone());
    req
}

#[tokio::test]
async fn a_spent_budget_answers_the_last_response_instead_of_moving_on() {
    let log = Log::default();
    let fallback = Fallback::new([
        spending("a", &log, || status(500, "from a")),
        spending("b", &log, || status(429, "from b")),
        spending("c", &log, || ok("c")),
    ]);
    let budget = AttemptBudget::new(2);
    let r = fallback
        .oneshot(with_budget(request(), &budget))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "the upstream's answer, not a synthetic 502"
    );
    assert_eq!(path(&r), "targets[1]");
    assert!(text(r).await.contains("from b"));
    assert_eq!(log.names(), ["a", "b"], "c is never called");
    assert_eq!(budget.remaining(), 0);
}

#[tokio::test]
async fn a_spent_budget_answers_the_last_error_instead_of_moving_on() {
    let log = Log::default();
    let fallback = Fallback::new([
        spending("a", &log, || {
            Err(UpstreamError::new(UpstreamErrorKind::Connect, "from a").into())
        }),
        spending("b", &log, || ok("b")),
    ]);
    let budget = AttemptBudget::new(1);
    let err = fallback
        .oneshot(with_budget(request(), &budget))
        .await
        .unwrap_err();
    assert!(err.is::<UpstreamError>(), "{err}");
    assert!(err.to_string().contains("from a"), "{err}");
    assert_eq!(log.names(), ["a"]);
}

#[tokio::test]
async fn a_stream_on_the_budgets_last_attempt_is_answered_as_it_is() {
    // As for the last target: with no next turn there is nothing to hold the stream for.
    let log = Log::default();
    let fallback = Fallback::new([
        spending("broken", &log, || Ok(event_stream(vec![Err("reset")]))),
        spending("healthy", &log, || ok("healthy")),
    ]);
    let budget = AttemptBudget::new(1);
    let r = fallback
        .oneshot(with_budget(stream_request(), &budget))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(path(&r), "targets[0]");
    assert!(text(r).await.contains("stream_interrupted"));
    assert_eq!(log.names(), ["broken"]);
}

#[tokio::test]
async fn with_attempts_left_it_moves_on_as_usual() {
    let log = Log::default();
    let fallback = Fallback::new([
        spending("a", &log, || status(500, "from a")),
        spending("b", &log, || status(503, "from b")),
        spending("c", &log, || ok("c")),
    ]);
    let budget = AttemptBudget::new(5);
    let r = fallback
        .oneshot(with_budget(request(), &budget))
        .await
        .unwrap();
    assert_eq!(path(&r), "targets[2]");
    assert_eq!(text(r).await, "c");
    assert_eq!(budget.remaining(), 2);
}

#[tokio::test]
async fn a_budget_spent_before_the_first_target_is_still_refused_by_the_leaf() {
    // Nothing was answered yet, so there is no last answer to give: the leaf's refusal is the
    // answer, and the fallback does not walk the other targets to collect more of them.
    let log = Log::default();
    let fallback = Fallback::new([
        spending("a", &log, || ok("a")),
        spending("b", &log, || ok("b")),
    ]);
    let budget = AttemptBudget::new(0);
    let err = fallback
        .oneshot(with_budget(request(), &budget))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<AttemptsExhausted>(),
        Some(&AttemptsExhausted { limit: 0 })
    );
    assert!(log.names().is_empty());
}
