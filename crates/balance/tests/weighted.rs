//! Weighted choice: the split, zero weights, skipping unready and unavailable targets,
//! the answer when none can serve, target paths, build errors.

mod support;

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::StatusCode;
use portcullis_balance::{Balance, BoxTarget, BuildError, Target};
use portcullis_core::context::TargetPath;
use portcullis_core::error::{Unavailable, error_response};
use portcullis_core::facts::ResponseFacts;
use tower::{Service, ServiceExt};

use support::{CHI2_P001_DF1, CountingWaker, Mode, Switch, chi_square, now, request, target_of};

fn balance(targets: &[(&'static str, f64, &Switch)], seed: u64) -> Balance<Switch> {
    Balance::builder()
        .targets(
            targets
                .iter()
                .map(|(name, w, s)| Target::new(*name, (*s).clone()).weight(*w)),
        )
        .seed(seed)
        .build()
        .unwrap()
}

/// Sends `n` requests, each answered at once; counts answers by target.
fn split(balance: &mut Balance<Switch>, n: usize) -> Vec<usize> {
    let mut counts = vec![0; balance.len()];
    for _ in 0..n {
        assert!(now(balance.ready()).is_ok(), "a balancer is always ready");
        let response = now(balance.call(request())).unwrap();
        counts[target_of(&response)] += 1;
    }
    counts
}

#[test]
fn weights_of_70_and_30_split_10_000_requests_within_chi_square() {
    let (a, b) = (Switch::new("a"), Switch::new("b"));
    let mut lb = balance(&[("a", 0.7, &a), ("b", 0.3, &b)], 7);
    let counts = split(&mut lb, 10_000);
    let chi2 = chi_square(&counts, &[0.7, 0.3]);
    assert!(chi2 < CHI2_P001_DF1, "{counts:?}: chi2 {chi2}");
    // The facts tell the truth: every answer came from the target they name.
    assert_eq!((a.calls(), b.calls()), (counts[0], counts[1]));
}

#[test]
fn seeded_balancers_repeat_their_choices() {
    let (a, b) = (Switch::new("a"), Switch::new("b"));
    let picks = |seed| {
        let mut lb = balance(&[("a", 1.0, &a), ("b", 1.0, &b)], seed);
        (0..64).map(|_| lb.pick(&request())).collect::<Vec<_>>()
    };
    assert_eq!(picks(3), picks(3));
    assert_ne!(picks(3), picks(4));
}

#[test]
fn clones_draw_their_own_streams() {
    // A clone per request (what `Edge` and `oneshot` do) must not repeat the original's
    // draw: the split holds across fresh clones too.
    let (a, b) = (Switch::new("a"), Switch::new("b"));
    let lb = balance(&[("a", 0.5, &a), ("b", 0.5, &b)], 11);
    let mut counts = [0usize; 2];
    for _ in 0..2_000 {
        let mut clone = lb.clone();
        counts[clone.pick(&request())] += 1;
    }
    let chi2 = chi_square(&counts, &[0.5, 0.5]);
    assert!(chi2 < CHI2_P001_DF1, "{counts:?}: chi2 {chi2}");
}

#[test]
fn weight_zero_is_never_chosen() {
    let (a, b, c) = (Switch::new("a"), Switch::new("b"), Switch::new("c"));
    let mut lb = balance(&[("a", 1.0, &a), ("b", 0.0, &b), ("c", 2.0, &c)], 1);
    let counts = split(&mut lb, 6_000);
    assert_eq!(counts[1], 0);
    assert_eq!(b.calls(), 0);
    let chi2 = chi_square(&[counts[0], counts[2]], &[1.0, 2.0]);
    assert!(chi2 < CHI2_P001_DF1, "{counts:?}: chi2 {chi2}");
    // Not even when every other target is out.
    a.set(Mode::Unavailable(None));
    c.set(Mode::Unavailable(None));
    assert!(now(lb.call(request())).is_err());
    assert_eq!(b.calls(), 0);
}

#[test]
fn an_unready_target_is_skipped_and_the_rest_split_by_renormalised_weights() {
    let (a, b, c) = (
        Switch::with_mode("a", Mode::NotReady),
        Switch::new("b"),
        Switch::new("c"),
    );
    let mut lb = balance(&[("a", 0.5, &a), ("b", 0.3, &b), ("c", 0.2, &c)], 5);
    // `now` panics if a request waits: an unready pick is drawn again, never waited on.
    let counts = split(&mut lb, 10_000);
    assert_eq!(counts[0], 0);
    assert_eq!(a.calls(), 0);
    let chi2 = chi_square(&[counts[1], counts[2]], &[0.6, 0.4]);
    assert!(chi2 < CHI2_P001_DF1, "{counts:?}: chi2 {chi2}");

    // Once ready again it takes its share.
    a.set(Mode::Up);
    let counts = split(&mut lb, 1_000);
    assert!(counts[0] > 400, "{counts:?}");
}

#[test]
fn a_target_answering_unavailable_is_drawn_around() {
    let (a, b) = (
        Switch::with_mode("a", Mode::Unavailable(Some(Duration::from_secs(9)))),
        Switch::new("b"),
    );
    let mut lb = balance(&[("a", 0.9, &a), ("b", 0.1, &b)], 2);
    let counts = split(&mut lb, 500);
    assert_eq!(counts, [0, 500]);
    assert!(
        a.calls() > 300,
        "a was tried first most times: {}",
        a.calls()
    );
    assert_eq!(b.calls(), 500);
}

#[test]
fn a_target_whose_readiness_fails_is_out_for_the_request() {
    let (a, b) = (Switch::with_mode("a", Mode::Broken), Switch::new("b"));
    let mut lb = balance(&[("a", 0.9, &a), ("b", 0.1, &b)], 2);
    assert_eq!(split(&mut lb, 200), [0, 200]);
    assert_eq!(a.calls(), 0);
}

#[test]
fn when_nothing_is_available_the_answer_is_503_with_the_smallest_retry_after() {
    let a = Switch::with_mode("a", Mode::Unavailable(Some(Duration::from_secs(30))));
    let b = Switch::with_mode("b", Mode::Unavailable(Some(Duration::from_millis(4_500))));
    let c = Switch::with_mode("c", Mode::Unavailable(None));
    let d = Switch::with_mode("d", Mode::Broken);
    let mut lb = balance(
        &[
            ("a", 1.0, &a),
            ("b", 1.0, &b),
            ("c", 1.0, &c),
            ("d", 1.0, &d),
        ],
        3,
    );
    let err = now(lb.call(request())).unwrap_err();
    let unavailable = err.downcast_ref::<Unavailable>().expect("Unavailable");
    assert_eq!(unavailable.retry_after, Some(Duration::from_millis(4_500)));
    assert!(
        unavailable
            .message
            .contains("no target can take the request")
    );
    assert_eq!((a.calls(), b.calls(), c.calls(), d.calls()), (1, 1, 1, 0));
    let response = error_response(&err);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
}

#[test]
fn a_single_unavailable_target_answers_503_without_copying_the_request() {
    let a = Switch::with_mode("a", Mode::Unavailable(Some(Duration::from_secs(2))));
    let mut lb = balance(&[("a", 1.0, &a)], 3);
    let err = now(lb.call(request())).unwrap_err();
    assert_eq!(
        err.downcast_ref::<Unavailable>().unwrap().retry_after,
        Some(Duration::from_secs(2))
    );
    assert_eq!(a.calls(), 1);
}

#[test]
fn other_errors_are_returned_as_they_are_without_a_new_draw() {
    let (a, b) = (
        Switch::with_mode("a", Mode::Fails("upstream broke")),
        Switch::new("b"),
    );
    let mut lb = balance(&[("a", 1.0, &a), ("b", 0.0, &b)], 3);
    let err = now(lb.call(request())).unwrap_err();
    assert_eq!(err.to_string(), "upstream broke");
    assert_eq!(b.calls(), 0);
}

#[test]
fn when_every_target_is_pending_the_request_waits_for_the_first_ready() {
    let (a, b) = (
        Switch::with_mode("a", Mode::NotReady),
        Switch::with_mode("b", Mode::NotReady),
    );
    let mut lb = balance(&[("a", 1.0, &a), ("b", 1.0, &b)], 4);
    let mut future = Box::pin(lb.call(request()));
    let waker = CountingWaker::new();
    let w = Waker::from(waker.clone());
    let mut cx = Context::from_waker(&w);
    assert!(future.as_mut().poll(&mut cx).is_pending());
    assert!(
        future.as_mut().poll(&mut cx).is_pending(),
        "still nothing ready"
    );
    b.set(Mode::Up);
    assert!(
        waker.wakes() >= 1,
        "a target becoming ready wakes the request"
    );
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => assert_eq!(target_of(&response), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.calls(), 0);
}

#[test]
fn the_index_goes_onto_the_request_path_and_the_front_of_the_response_path() {
    let (x, leaf, spy) = (Switch::new("x"), Switch::new("leaf"), Switch::new("spy"));
    let inner = Balance::builder()
        .target(Target::boxed("leaf", leaf.clone()).weight(0.0))
        .target(Target::boxed("spy", spy.clone()))
        .build()
        .unwrap();
    let mut outer: Balance<BoxTarget> = Balance::builder()
        .target(Target::boxed("x", x.clone()).weight(0.0))
        .target(Target::boxed("pool", inner))
        .build()
        .unwrap();
    // An outer layer (a router) already chose its branch 2.
    let mut req = request();
    let mut path = TargetPath::root();
    path.push(2);
    req.extensions_mut().insert(path);
    let response = now(outer.call(req)).unwrap();
    let facts = ResponseFacts::get(&response).unwrap();
    assert_eq!(facts.target.unwrap().to_string(), "targets[1].targets[1]");
    assert_eq!(spy.paths(), [vec![2, 1, 1]]);
}

#[tokio::test]
async fn targets_of_different_types_mix_when_boxed() {
    let svc = tower::service_fn(|_req: http::Request<portcullis_core::BufferedBody>| async {
        Ok::<_, std::io::Error>(http::Response::new(portcullis_core::Body::from("fn")))
    });
    let lb = Balance::builder()
        .target(Target::boxed("switch", Switch::new("s")).weight(0.0))
        .target(Target::boxed("fn", svc))
        .build()
        .unwrap();
    let response = lb.oneshot(request()).await.unwrap();
    assert_eq!(target_of(&response), 1);
}

fn build(weights: &[f64]) -> Result<Balance<Switch>, BuildError> {
    let names = ["a", "b", "c", "d"];
    Balance::builder()
        .targets(
            weights
                .iter()
                .zip(names)
                .map(|(&w, name)| Target::new(name, Switch::new(name)).weight(w)),
        )
        .build()
}

#[test]
fn build_errors_name_the_target() {
    let message = |weights: &[f64]| build(weights).unwrap_err().to_string();
    assert_eq!(message(&[1.0, -0.5]), "targets[1].weight: must be >= 0");
    assert_eq!(
        message(&[1.0, 1.0, f64::NAN]),
        "targets[2].weight: must be a number, not NaN"
    );
    assert_eq!(
        message(&[f64::INFINITY]),
        "targets[0].weight: must be finite"
    );
    assert_eq!(
        message(&[0.0, 0.0]),
        "targets: every weight is 0: at least one target must have weight > 0"
    );
    assert_eq!(message(&[]), "targets: at least one target is required");
    assert_eq!(
        message(&[f64::MAX, f64::MAX]),
        "targets: the weights' sum must be finite"
    );
    let err = build(&[1.0, -0.0, -1.0]).unwrap_err();
    assert_eq!(
        (err.path(), err.message()),
        ("targets[2].weight", "must be >= 0")
    );

    let dup = Balance::builder()
        .target(Target::new("openai", Switch::new("a")))
        .target(Target::new("azure", Switch::new("b")))
        .target(Target::new("openai", Switch::new("c")))
        .build()
        .unwrap_err();
    assert_eq!(
        dup.to_string(),
        r#"targets[2].name: duplicate of targets[0] ("openai")"#
    );

    let decay = Balance::builder()
        .target(Target::new("a", Switch::new("a")))
        .strategy(portcullis_balance::Strategy::PeakEwma(
            portcullis_balance::PeakEwma::new().decay(Duration::ZERO),
        ))
        .build()
        .unwrap_err();
    assert_eq!(decay.to_string(), "strategy.decay: must be > 0");

    assert!(build(&[0.7, 0.3, 0.0]).is_ok());
}

#[test]
fn accessors_describe_the_targets() {
    let lb = build(&[0.7, 0.3]).unwrap();
    assert_eq!(lb.len(), 2);
    assert_eq!((lb.name(1), lb.weight(1)), ("b", 0.3));
    assert_eq!(lb.in_flight(0), None, "weighted does not count");
    assert!(format!("{lb:?}").contains(r#"targets: ["a", "b"]"#));
    let _ = Arc::new(lb);
}

#[test]
fn balancers_and_their_futures_cross_threads() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync_clone::<Balance<BoxTarget>>();
    send::<<Balance<BoxTarget> as Service<http::Request<portcullis_core::BufferedBody>>>::Future>();
}
