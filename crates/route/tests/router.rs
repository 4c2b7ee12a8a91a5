//! The router as a service: order, default, the 400 without one, recorded target paths,
//! readiness, and build errors that name their position.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use portcullis_core::context::{Metadata, TargetPath};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::{Body, BoxError, BufferedBody};
use portcullis_route::{BoxTarget, BuildError, Condition, ConditionalRouter, RouteInput};
use serde_json::{Value, json};
use tower::{Service, ServiceExt, service_fn};
use tower_test::mock;

/// A target that answers `name`, and the target path the request carried.
fn named(name: &'static str) -> BoxTarget {
    BoxTarget::new(service_fn(move |req: Request<BufferedBody>| async move {
        let path = req
            .extensions()
            .get::<TargetPath>()
            .map(|p| p.to_string())
            .unwrap_or_default();
        Ok::<_, BoxError>(Response::new(Body::from(format!("{name} {path}"))))
    }))
}

fn with_plan(plan: &str) -> Request<BufferedBody> {
    let mut req = Request::post("/v1/chat/completions")
        .body(BufferedBody::empty())
        .unwrap();
    let map: BTreeMap<String, String> = [("plan".to_owned(), plan.to_owned())].into();
    req.extensions_mut().insert(Metadata::new(map));
    req
}

async fn text(res: Response<Body>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn three_way(default: Option<&str>) -> ConditionalRouter {
    let builder = ConditionalRouter::builder()
        .target("a", named("a"))
        .target("b", named("b"))
        .target("c", named("c"))
        .conditions(&json!([
            {"query": {"metadata.plan": {"$in": ["paid", "team"]}}, "then": "b"},
            {"query": {"metadata.plan": "team"}, "then": "c"},
            {"query": {"metadata.plan": {"$regex": "^t"}}, "then": "a"},
        ]))
        .unwrap();
    match default {
        Some(name) => builder.default(name).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

#[tokio::test]
async fn the_first_matching_condition_wins_then_the_default() {
    let router = three_way(Some("c"));
    assert!(router.has_default());
    assert_eq!(router.default_target(), Some(2));
    assert_eq!(router.condition_count(), 3);
    assert_eq!(router.target_names().collect::<Vec<_>>(), ["a", "b", "c"]);
    // "team" matches conditions 0 and 1: the first wins.
    for (plan, expected) in [
        ("team", "b targets[1]"),
        ("paid", "b targets[1]"),
        ("trial", "a targets[0]"),
        ("free", "c targets[2]"),
    ] {
        let res = router.clone().oneshot(with_plan(plan)).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(text(res).await, expected, "{plan}");
    }
}

#[tokio::test]
async fn no_match_and_no_default_is_a_400_without_calling_a_target() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let counting = BoxTarget::new(service_fn(move |_req: Request<BufferedBody>| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, BoxError>(Response::new(Body::empty())) }
    }));
    let router = ConditionalRouter::builder()
        .target("paid", counting)
        .conditions(&json!([{"query": {"metadata.plan": "paid"}, "then": "paid"}]))
        .unwrap()
        .build()
        .unwrap();
    assert!(!router.has_default());
    assert_eq!(router.route(&RouteInput::new()), None);

    let res = router.clone().oneshot(with_plan("free")).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(ResponseFacts::get(&res).is_none(), "no target answered");
    let v: Value = serde_json::from_str(&text(res).await).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "no_route_matched");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no routing condition matched"),
        "{message}"
    );
    assert!(message.contains("no default"), "{message}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);

    let res = router.oneshot(with_plan("paid")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn facts_and_request_paths_record_the_choice_through_nesting() {
    // An inner router as target 1 of an outer one: paths read outermost first.
    let inner = ConditionalRouter::builder()
        .target("x", named("x"))
        .target("y", named("y"))
        .conditions(&json!([{"query": {"params.model": "gpt-4o"}, "then": "y"}]))
        .unwrap()
        .default("x")
        .build()
        .unwrap();
    let outer = ConditionalRouter::builder()
        .target("plain", named("plain"))
        .target("nested", BoxTarget::new(inner))
        .conditions(&json!([{"query": {"metadata.plan": "paid"}, "then": "nested"}]))
        .unwrap()
        .default("plain")
        .build()
        .unwrap();

    let res = outer.clone().oneshot(with_plan("paid")).await.unwrap();
    let path = ResponseFacts::get(&res).unwrap().target.unwrap();
    assert_eq!(path.to_string(), "targets[1].targets[0]");
    assert_eq!(text(res).await, "x targets[1].targets[0]");

    let res = outer.oneshot(with_plan("free")).await.unwrap();
    assert_eq!(
        ResponseFacts::get(&res).unwrap().target.unwrap().indices(),
        &[0]
    );
    assert_eq!(text(res).await, "plain targets[0]");
}

#[tokio::test]
async fn a_target_path_already_on_the_request_is_extended() {
    let router = three_way(Some("c"));
    let mut req = with_plan("free");
    let mut path = TargetPath::root();
    path.push(4);
    req.extensions_mut().insert(path);
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(text(res).await, "c targets[4].targets[2]");
}

#[tokio::test]
async fn target_errors_pass_through() {
    let failing = BoxTarget::new(service_fn(|_req: Request<BufferedBody>| async {
        Err::<Response<Body>, BoxError>("upstream broke".into())
    }));
    let router = ConditionalRouter::builder()
        .target("f", failing)
        .default("f")
        .build()
        .unwrap();
    let err = router.oneshot(with_plan("x")).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream broke");
}

#[test]
fn compiled_conditions_can_be_added_directly_and_route_without_a_request() {
    let paid = Condition::compile(&json!({"metadata.plan": "paid"})).unwrap();
    let router = ConditionalRouter::builder()
        .target("free", named("free"))
        .target("paid", named("paid"))
        .condition(paid, "paid")
        .default("free")
        .build()
        .unwrap();
    let m = Metadata::new([("plan".to_owned(), "paid".to_owned())].into());
    assert_eq!(router.route(&RouteInput::new().metadata(&m)), Some(1));
    assert_eq!(router.route(&RouteInput::new()), Some(0));
    assert_eq!(router.targets().len(), 2);
}

fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn readies_the_chosen_target_inside_the_future_and_calls_only_that() {
    type Req = Request<BufferedBody>;
    let (paid, mut paid_handle) = mock::pair::<Req, Response<Body>>();
    let (free, mut free_handle) = mock::pair::<Req, Response<Body>>();
    paid_handle.allow(0);
    free_handle.allow(0);
    let mut router = ConditionalRouter::builder()
        .target("paid", paid)
        .target("free", free)
        .conditions(&json!([{"query": {"metadata.plan": "paid"}, "then": "paid"}]))
        .unwrap()
        .default("free")
        .build()
        .unwrap();

    // The router itself is ready while no target is.
    let poll = poll_once(&mut std::future::poll_fn(|cx| router.poll_ready(cx)));
    assert!(matches!(poll, Poll::Ready(Ok(()))));

    // Its future waits for the chosen target's readiness; the mock panics if a clone that was
    // not readied is called.
    let mut future = Box::pin(router.call(with_plan("paid")));
    assert!(poll_once(&mut future).is_pending());
    paid_handle.allow(1);
    let task = tokio::spawn(future);
    let (req, send) = paid_handle.next_request().await.unwrap();
    assert_eq!(
        req.extensions().get::<TargetPath>().unwrap().indices(),
        &[0]
    );
    send.send_response(Response::new(Body::from("ok")));
    let res = task.await.unwrap().unwrap();
    assert_eq!(
        ResponseFacts::get(&res).unwrap().target.unwrap().indices(),
        &[0]
    );

    // The other target was never polled into use, and still has nothing.
    assert!(poll_once(&mut Box::pin(free_handle.next_request())).is_pending());

    // A target's readiness error is the call's error.
    free_handle.send_error("free target is down");
    let err = router.call(with_plan("free")).await.unwrap_err();
    assert_eq!(err.to_string(), "free target is down");
}

#[tokio::test]
async fn each_call_readies_its_own_clone() {
    type Req = Request<BufferedBody>;
    let (svc, mut handle) = mock::pair::<Req, Response<Body>>();
    handle.allow(2);
    let mut router = ConditionalRouter::builder()
        .target("only", svc)
        .default("only")
        .build()
        .unwrap();
    let first = tokio::spawn(router.call(with_plan("a")));
    let second = tokio::spawn(router.call(with_plan("b")));
    for _ in 0..2 {
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(Body::empty()));
    }
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
}

/// The build error for `conditions` (with targets `paid` and `free`, default `default`).
fn build_error(conditions: Value, default: Option<&str>) -> BuildError {
    let builder = ConditionalRouter::builder()
        .target("paid", named("paid"))
        .target("free", named("free"));
    let builder = match builder.conditions(&conditions) {
        Ok(builder) => builder,
        Err(e) => return e,
    };
    let builder = match default {
        Some(name) => builder.default(name),
        None => builder,
    };
    builder.build().expect_err("should not build")
}

fn q(query: Value) -> Value {
    json!([
        {"query": {"metadata.plan": "paid"}, "then": "paid"},
        {"query": query, "then": "free"},
    ])
}

#[test]
fn build_errors_name_their_position() {
    let cases: Vec<(BuildError, &str, &str)> = vec![
        // targets
        (
            build_error(json!([{"query": {}, "then": "gold"}]), None),
            "conditions[0].then",
            "no target is named `gold`",
        ),
        (
            build_error(json!([]), Some("gold")),
            "default",
            "no target is named `gold`",
        ),
        // operators
        (
            build_error(q(json!({"$or": [{"params.model": {"$regex": "("}}]})), None),
            r#"conditions[1].query.$or[0]."params.model".$regex"#,
            "invalid regex: regex parse error:",
        ),
        (
            build_error(
                q(json!({"$and": [{}, {"params.n": {"$between": [1, 2]}}]})),
                None,
            ),
            r#"conditions[1].query.$and[1]."params.n".$between"#,
            "unknown operator `$between`",
        ),
        (
            build_error(q(json!({"params.messages": {"$length": 2}})), None),
            r#"conditions[1].query."params.messages".$length"#,
            "unknown operator `$length`",
        ),
        (
            build_error(q(json!({"$nor": []})), None),
            "conditions[1].query.$nor",
            "unknown operator `$nor`",
        ),
        (
            build_error(q(json!({"$eq": "x"})), None),
            "conditions[1].query.$eq",
            "`$eq` compares a field",
        ),
        (
            build_error(q(json!({"params.a": {"$or": []}})), None),
            r#"conditions[1].query."params.a".$or"#,
            "`$or` combines queries",
        ),
        (
            build_error(q(json!({"params.a": {"type": "x"}})), None),
            r#"conditions[1].query."params.a".type"#,
            "`type` is not an operator",
        ),
        (
            build_error(q(json!({"params.a": {}})), None),
            r#"conditions[1].query."params.a""#,
            "an empty object tests nothing",
        ),
        // fields
        (
            build_error(q(json!({"user.plan": "x"})), None),
            r#"conditions[1].query."user.plan""#,
            "unknown field `user.plan`",
        ),
        (
            build_error(q(json!({"url.host": "x"})), None),
            r#"conditions[1].query."url.host""#,
            "unknown field `url.host`",
        ),
        (
            build_error(q(json!({"metadata.": "x"})), None),
            r#"conditions[1].query."metadata.""#,
            "`metadata.` needs a key",
        ),
        (
            build_error(q(json!({"params.a..b": "x"})), None),
            r#"conditions[1].query."params.a..b""#,
            "`params.a..b` has an empty segment",
        ),
        // operand types
        (
            build_error(q(json!({"params.model": {"$in": "gpt-4o"}})), None),
            r#"conditions[1].query."params.model".$in"#,
            "`$in` takes an array, got a string",
        ),
        (
            build_error(q(json!({"params.model": {"$nin": {"a": 1}}})), None),
            r#"conditions[1].query."params.model".$nin"#,
            "`$nin` takes an array, got an object",
        ),
        (
            build_error(q(json!({"params.n": {"$gt": "many"}})), None),
            r#"conditions[1].query."params.n".$gt"#,
            "`$gt` takes a number (or a string that reads as one), got a string",
        ),
        (
            build_error(q(json!({"params.n": {"$lte": null}})), None),
            r#"conditions[1].query."params.n".$lte"#,
            "`$lte` takes a number (or a string that reads as one), got null",
        ),
        (
            build_error(q(json!({"params.model": {"$regex": 1}})), None),
            r#"conditions[1].query."params.model".$regex"#,
            "`$regex` takes a pattern (a string), got a number",
        ),
        (
            build_error(q(json!({"$or": {"params.a": 1}})), None),
            "conditions[1].query.$or",
            "`$or` takes an array of queries, got an object",
        ),
        (
            build_error(q(json!({"$and": [[]]})), None),
            "conditions[1].query.$and[0]",
            "a query must be an object, got an array",
        ),
        (
            build_error(q(json!({"params.stop": ["a", "b"]})), None),
            r#"conditions[1].query."params.stop""#,
            "a plain array is ambiguous",
        ),
        (
            build_error(q(json!({"metadata.tier": 3})), None),
            r#"conditions[1].query."metadata.tier""#,
            r#"metadata values are strings and never equal a number: write "3""#,
        ),
        (
            build_error(q(json!({"metadata.beta": {"$ne": true}})), None),
            r#"conditions[1].query."metadata.beta".$ne"#,
            r#"write "true""#,
        ),
        (
            build_error(q(json!({"metadata.plan": {"$in": ["paid", 2]}})), None),
            r#"conditions[1].query."metadata.plan".$in[1]"#,
            "metadata values are strings",
        ),
        (
            build_error(q(json!({"url.pathname": null})), None),
            r#"conditions[1].query."url.pathname""#,
            "`url.pathname` is a string and never equals null",
        ),
        // the shape of the list
        (
            build_error(json!({"query": {}}), None),
            "conditions",
            "must be an array",
        ),
        (
            build_error(json!([{"query": {}, "then": "paid"}, "free"]), None),
            "conditions[1]",
            "a condition is an object",
        ),
        (
            build_error(json!([{"then": "paid"}]), None),
            "conditions[0]",
            "missing \"query\"",
        ),
        (
            build_error(json!([{"query": {}}]), None),
            "conditions[0]",
            "missing \"then\"",
        ),
        (
            build_error(json!([{"query": {}, "then": 1}]), None),
            "conditions[0].then",
            "must be a target name",
        ),
        (
            build_error(json!([{"query": {}, "then": "paid", "else": "free"}]), None),
            "conditions[0].else",
            "unknown key",
        ),
        (
            build_error(
                json!([{"query": "metadata.plan == paid", "then": "paid"}]),
                None,
            ),
            "conditions[0].query",
            "a query must be an object, got a string",
        ),
    ];
    for (err, path, message) in cases {
        assert_eq!(err.path(), path, "{err}");
        assert!(err.message().contains(message), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{}: {}", err.path(), err.message())
        );
    }
}

#[test]
fn regex_errors_are_one_line() {
    let err = build_error(q(json!({"params.model": {"$regex": "(?<=a)b"}})), None);
    assert!(!err.message().contains('\n'), "{err}");
    assert!(err.message().contains("look-around"), "{err}");
}

#[test]
fn target_lists_are_checked() {
    let err = ConditionalRouter::<BoxTarget>::builder()
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "targets: a router needs at least one target"
    );

    let err = ConditionalRouter::builder()
        .target("a", named("a"))
        .target("b", named("b"))
        .target("a", named("a"))
        .build()
        .unwrap_err();
    assert_eq!(err.path(), "targets[2].name");
    assert_eq!(err.message(), "`a` names two targets");
}

#[test]
fn conditions_added_in_several_calls_are_numbered_in_one_list() {
    let err = ConditionalRouter::builder()
        .target("a", named("a"))
        .conditions(&json!([{"query": {}, "then": "a"}]))
        .unwrap()
        .conditions(&json!([{"query": {"params.x": {"$in": 1}}, "then": "a"}]))
        .unwrap_err();
    assert_eq!(err.path(), r#"conditions[1].query."params.x".$in"#);
}

#[test]
fn errors_can_be_placed_in_a_larger_document() {
    let err = build_error(json!([{"query": {}, "then": "gold"}]), None).prefixed("strategy");
    assert_eq!(err.path(), "strategy.conditions[0].then");
}

#[test]
fn a_boxed_router_can_be_shared_across_threads() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn send<T: Send + 'static>(_: &T) {}
    let mut router = three_way(Some("a"));
    send_sync_clone(&router);
    send(&router.call(with_plan("paid")));
}
