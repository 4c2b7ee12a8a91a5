//! Fallback order, triggers, paths and streams, with in-process targets.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use portcullis_core::context::TargetPath;
use portcullis_core::error::{
    BudgetExceeded, GuardDenied, RequestTimeout, TimeoutPhase, Unavailable, UpstreamError,
    UpstreamErrorKind, UpstreamTimeout, to_http_error,
};
use portcullis_core::{Body, BoxError};
use portcullis_fallback::{BoxTarget, Fallback, Triggers};
use tower::ServiceExt;

use common::{Log, event_stream, ok, path, request, status, stream_request, target, text};

const CONTEXT_CODE: &str = r#"{"error":{"message":"Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
const CONTEXT_MESSAGE: &str = r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.","type":"BadRequestError","code":400}}"#;
const OTHER_400: &str = r#"{"error":{"message":"temperature must be <= 2","type":"invalid_request_error","code":null}}"#;

fn bad_request(body: &'static str) -> Result<Response<Body>, BoxError> {
    Ok(Response::builder()
        .status(400)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap())
}

/// Two targets: the first answers `first`, the second answers 200 "second".
fn pair<A>(log: &Log, first: A) -> [BoxTarget; 2]
where
    A: Fn() -> Result<Response<Body>, BoxError> + Clone + Send + Sync + 'static,
{
    [
        target("first", log, first),
        target("second", log, || ok("second")),
    ]
}

#[tokio::test]
async fn the_first_target_that_answers_wins_and_later_ones_are_not_called() {
    let log = Log::default();
    let fallback = Fallback::new([target("a", &log, || ok("a")), target("b", &log, || ok("b"))]);
    let r = fallback.oneshot(request()).await.unwrap();
    assert_eq!(path(&r), "targets[0]");
    assert_eq!(text(r).await, "a");
    assert_eq!(log.names(), ["a"]);
}

#[tokio::test]
async fn targets_are_tried_in_order() {
    let log = Log::default();
    let fallback = Fallback::new([
        target("a", &log, || status(500, "a")),
        target("b", &log, || status(503, "b")),
        target("c", &log, || ok("c")),
        target("d", &log, || ok("d")),
    ]);
    let r = fallback.oneshot(request()).await.unwrap();
    assert_eq!(path(&r), "targets[2]");
    assert_eq!(text(r).await, "c");
    assert_eq!(log.names(), ["a", "b", "c"]);
}

#[tokio::test]
async fn default_statuses_move_on() {
    for code in [408, 409, 429, 500, 502, 503, 504, 599] {
        let log = Log::default();
        let r = Fallback::new(pair(&log, move || status(code, "first")))
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{code}");
        assert_eq!(path(&r), "targets[1]", "{code}");
        assert_eq!(log.names(), ["first", "second"], "{code}");
    }
}

#[tokio::test]
async fn other_statuses_are_answered_at_once() {
    // 402 (budget) and 446 (guardrail deny) are final refusals; the 4xx would fail anywhere.
    for code in [400, 401, 402, 403, 404, 413, 422, 446] {
        let log = Log::default();
        let r = Fallback::new(pair(&log, move || status(code, "first said no")))
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code);
        assert_eq!(path(&r), "targets[0]", "{code}");
        assert!(text(r).await.contains("first said no"), "{code}");
        assert_eq!(log.names(), ["first"], "{code}");
    }
}

#[tokio::test]
async fn a_status_list_replaces_the_default() {
    let fallback = |log: &Log, code: u16| {
        Fallback::builder()
            .targets(pair(log, move || status(code, "first")))
            .on_status_codes([429, 446])
            .build()
            .unwrap()
    };
    for (code, moves_on) in [
        (429, true),
        (446, true),
        (500, false),
        (503, false),
        (402, false),
    ] {
        let log = Log::default();
        let r = fallback(&log, code).oneshot(request()).await.unwrap();
        let expected = if moves_on { 200 } else { code };
        assert_eq!(r.status().as_u16(), expected, "{code}");
        assert_eq!(log.names().len(), if moves_on { 2 } else { 1 }, "{code}");
    }
    // Errors still move on with a list: they have no status to compare.
    let log = Log::default();
    let r = Fallback::builder()
        .targets(pair(&log, || {
            Err(UpstreamError::new(UpstreamErrorKind::Connect, "refused").into())
        }))
        .on_status_codes([429])
        .build()
        .unwrap()
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(path(&r), "targets[1]");
}

#[tokio::test]
async fn transport_errors_and_timeouts_move_on() {
    let errors: Vec<fn() -> BoxError> = vec![
        || UpstreamError::new(UpstreamErrorKind::Protocol, "reset").into(),
        || UpstreamTimeout::new(TimeoutPhase::Response, Duration::from_secs(30)).into(),
        || {
            RequestTimeout {
                after: Duration::from_secs(10),
            }
            .into()
        },
        || {
            Unavailable {
                message: "circuit open".into(),
                retry_after: None,
            }
            .into()
        },
        || "an error nobody typed".into(),
    ];
    for make in errors {
        let log = Log::default();
        let r = Fallback::new(pair(&log, move || Err(make())))
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(path(&r), "targets[1]", "{}", make());
        assert_eq!(log.names(), ["first", "second"]);
    }
}

#[tokio::test]
async fn refusals_raised_as_errors_are_final_unless_listed() {
    let deny = || -> Result<Response<Body>, BoxError> {
        Err(GuardDenied {
            message: "pii".into(),
        }
        .into())
    };
    let spent = || -> Result<Response<Body>, BoxError> {
        Err(BudgetExceeded {
            message: "spent".into(),
        }
        .into())
    };
    let log = Log::default();
    let err = Fallback::new(pair(&log, deny))
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(to_http_error(&err).status().as_u16(), 446);
    let err = Fallback::new(pair(&log, spent))
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(to_http_error(&err).status().as_u16(), 402);
    assert_eq!(log.names(), ["first", "first"]);

    let log = Log::default();
    let r = Fallback::builder()
        .targets(pair(&log, deny))
        .triggers(Triggers::on_status_codes(
            portcullis_core::StatusSet::new([446]).unwrap(),
        ))
        .build()
        .unwrap()
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(path(&r), "targets[1]");
}

#[tokio::test]
async fn context_window_errors_move_on_only_when_enabled() {
    for body in [CONTEXT_CODE, CONTEXT_MESSAGE] {
        // Off (the default): the 400 is the answer, its body untouched.
        let log = Log::default();
        let r = Fallback::new(pair(&log, move || bad_request(body)))
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(text(r).await, body);
        assert_eq!(log.names(), ["first"]);

        // On: the next target answers.
        let log = Log::default();
        let r = Fallback::builder()
            .targets(pair(&log, move || bad_request(body)))
            .context_window_fallback(true)
            .build()
            .unwrap()
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(path(&r), "targets[1]");
        assert_eq!(log.names(), ["first", "second"]);
    }
}

#[tokio::test]
async fn another_400_is_read_and_answered_unchanged() {
    let log = Log::default();
    let r = Fallback::builder()
        .targets(pair(&log, || bad_request(OTHER_400)))
        .context_window_fallback(true)
        .build()
        .unwrap()
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(path(&r), "targets[0]");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["content-length"], OTHER_400.len().to_string());
    assert_eq!(text(r).await, OTHER_400);
    assert_eq!(log.names(), ["first"]);
}

#[tokio::test]
async fn a_large_400_body_is_passed_through_whole() {
    let log = Log::default();
    let big = || -> Result<Response<Body>, BoxError> {
        // 200 KiB in 10 frames: more than the fallback looks at.
        let frames = (0..10)
            .map(|i| Ok(Bytes::from(vec![b'a' + i as u8; 20 * 1024])))
            .collect();
        let mut r = Response::new(Body::new(common::Frames(frames)));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        Ok(r)
    };
    let r = Fallback::builder()
        .targets(pair(&log, big))
        .context_window_fallback(true)
        .build()
        .unwrap()
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = text(r).await;
    assert_eq!(body.len(), 200 * 1024);
    for i in 0..10u8 {
        let chunk = &body.as_bytes()[usize::from(i) * 20 * 1024..][..20 * 1024];
        assert!(chunk.iter().all(|&b| b == b'a' + i), "frame {i} intact");
    }
    assert_eq!(log.names(), ["first"]);
}

#[tokio::test]
async fn a_400_body_that_breaks_while_read_moves_on() {
    let log = Log::default();
    let broken = || -> Result<Response<Body>, BoxError> {
        let frames = [Ok(Bytes::from_static(b"{\"error\":")), Err("reset".into())];
        let mut r = Response::new(Body::new(common::Frames(frames.into())));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        Ok(r)
    };
    let r = Fallback::builder()
        .targets(pair(&log, broken))
        .context_window_fallback(true)
        .build()
        .unwrap()
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(path(&r), "targets[1]");
}

#[tokio::test]
async fn when_all_fail_the_last_response_is_answered_with_its_path() {
    let log = Log::default();
    let fallback = Fallback::new([
        target("a", &log, || status(500, "from a")),
        target("b", &log, || status(429, "from b")),
        target("c", &log, || status(503, "from c")),
    ]);
    let r = fallback.oneshot(request()).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(path(&r), "targets[2]");
    assert!(text(r).await.contains("from c"));
    assert_eq!(log.names(), ["a", "b", "c"]);
}

#[tokio::test]
async fn when_all_fail_with_errors_the_last_error_is_answered() {
    let log = Log::default();
    let fallback = Fallback::new([
        target("a", &log, || Err("from a".into())),
        target("b", &log, || {
            Err(UpstreamError::new(UpstreamErrorKind::Connect, "from b").into())
        }),
    ]);
    let err = fallback.oneshot(request()).await.unwrap_err();
    assert!(err.to_string().contains("from b"), "{err}");
    assert!(err.is::<UpstreamError>());
}

#[tokio::test]
async fn when_all_are_unavailable_retry_after_is_the_soonest() {
    let unavailable = |secs: u64| {
        move || -> Result<Response<Body>, BoxError> {
            Err(Unavailable {
                message: format!("open for {secs} s"),
                retry_after: Some(Duration::from_secs(secs)),
            }
            .into())
        }
    };
    let log = Log::default();
    let fallback = Fallback::new([
        target("a", &log, unavailable(30)),
        target("b", &log, unavailable(5)),
        target("c", &log, unavailable(10)),
    ]);
    let err = fallback.oneshot(request()).await.unwrap_err();
    let unavailable = err.downcast_ref::<Unavailable>().unwrap();
    assert_eq!(
        unavailable.message, "open for 10 s",
        "the last target's error"
    );
    assert_eq!(unavailable.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(to_http_error(&err).status(), 503);
}

#[tokio::test]
async fn nested_fallbacks_record_the_whole_path() {
    let log = Log::default();
    let inner = Fallback::new([target("b", &log, || ok("b")), target("c", &log, || ok("c"))]);
    let outer = Fallback::<BoxTarget>::builder()
        .target(target("a", &log, || status(502, "a")))
        .boxed(inner)
        .build()
        .unwrap();
    let r = outer.oneshot(request()).await.unwrap();
    assert_eq!(path(&r), "targets[1].targets[0]");
    assert_eq!(text(r).await, "b");
    // Each target saw where it sits in the tree.
    assert_eq!(log.calls(), [("a", vec![0]), ("b", vec![1, 0])]);
}

#[tokio::test]
async fn the_request_path_extends_the_one_set_outside() {
    let log = Log::default();
    let fallback = Fallback::new(pair(&log, || status(500, "first")));
    let mut req = request();
    let mut outer = TargetPath::root();
    outer.push(3);
    req.extensions_mut().insert(outer);
    let r = fallback.oneshot(req).await.unwrap();
    assert_eq!(log.calls(), [("first", vec![3, 0]), ("second", vec![3, 1])]);
    // The response path is relative: the outer layer prepends its own index.
    assert_eq!(path(&r), "targets[1]");
}

#[tokio::test]
async fn each_target_gets_the_whole_request() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = |answer: u16| {
        let seen = seen.clone();
        portcullis_fallback::box_target(tower::service_fn(
            move |req: http::Request<portcullis_core::BufferedBody>| {
                seen.lock().unwrap().push((
                    req.method().clone(),
                    req.uri().clone(),
                    req.headers()["content-type"].clone(),
                    req.body().bytes().clone(),
                ));
                let out = status(answer, "x");
                async move { out }
            },
        ))
    };
    let fallback = Fallback::new([recorder(500), recorder(500), recorder(200)]);
    fallback.oneshot(request()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for (method, uri, content_type, body) in seen.iter() {
        assert_eq!(method, "POST");
        assert_eq!(uri, "/v1/chat/completions");
        assert_eq!(content_type, "application/json");
        assert_eq!(body, r#"{"model":"m","messages":[]}"#);
    }
}

const ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const HI: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

#[tokio::test]
async fn a_stream_that_breaks_before_its_first_event_moves_on() {
    let log = Log::default();
    let fallback = Fallback::new([
        target("broken", &log, || Ok(event_stream(vec![Err("reset")]))),
        target("healthy", &log, || {
            Ok(event_stream(vec![Ok(ROLE), Ok(HI), Ok(DONE)]))
        }),
    ]);
    let r = fallback.oneshot(stream_request()).await.unwrap();
    assert_eq!(path(&r), "targets[1]");
    assert_eq!(text(r).await, [ROLE, HI, DONE].concat());
    assert_eq!(log.names(), ["broken", "healthy"]);
}

#[tokio::test]
async fn a_stream_that_breaks_after_an_empty_opening_event_moves_on() {
    // The role event carries no content: it was held back, so the client has seen nothing.
    let log = Log::default();
    let fallback = Fallback::new([
        target("broken", &log, || {
            Ok(event_stream(vec![Ok(ROLE), Err("reset")]))
        }),
        target("healthy", &log, || {
            Ok(event_stream(vec![Ok(ROLE), Ok(HI), Ok(DONE)]))
        }),
    ]);
    let r = fallback.oneshot(stream_request()).await.unwrap();
    assert_eq!(path(&r), "targets[1]");
    assert_eq!(text(r).await, [ROLE, HI, DONE].concat());
    assert_eq!(log.names(), ["broken", "healthy"]);
}

#[tokio::test]
async fn an_event_stream_is_recognised_without_the_parsed_view() {
    let log = Log::default();
    let fallback = Fallback::new([
        target("broken", &log, || Ok(event_stream(vec![Err("reset")]))),
        target("healthy", &log, || Ok(event_stream(vec![Ok(HI), Ok(DONE)]))),
    ]);
    // No `Arc<RequestView>` in the extensions: the content type tells.
    let r = fallback.oneshot(request()).await.unwrap();
    assert_eq!(path(&r), "targets[1]");
}

#[tokio::test]
async fn a_stream_that_breaks_after_its_first_event_ends_with_an_error_event() {
    let log = Log::default();
    let fallback = Fallback::new([
        target("breaks", &log, || {
            Ok(event_stream(vec![Ok(ROLE), Ok(HI), Err("reset")]))
        }),
        target("healthy", &log, || Ok(event_stream(vec![Ok(HI), Ok(DONE)]))),
    ]);
    let r = fallback.oneshot(stream_request()).await.unwrap();
    assert_eq!(path(&r), "targets[0]");
    let body = text(r).await;
    assert!(body.starts_with(&[ROLE, HI].concat()), "{body}");
    assert!(body.contains("\"code\":\"stream_interrupted\""), "{body}");
    assert!(!body.contains("[DONE]"));
    assert_eq!(log.names(), ["breaks"]);
}

#[tokio::test]
async fn a_healthy_stream_keeps_its_first_event() {
    let log = Log::default();
    let fallback = Fallback::new(pair(&log, || {
        Ok(event_stream(vec![Ok(ROLE), Ok(HI), Ok(DONE)]))
    }));
    let r = fallback.oneshot(stream_request()).await.unwrap();
    assert_eq!(text(r).await, [ROLE, HI, DONE].concat());
    assert_eq!(log.names(), ["first"]);
}

#[tokio::test]
async fn the_last_target_stream_is_answered_as_it_is() {
    // No next target: nothing to wait for, the observer ends a broken stream itself.
    let log = Log::default();
    let fallback = Fallback::new([target("only", &log, || {
        Ok(event_stream(vec![Err("reset")]))
    })]);
    let r = fallback.oneshot(stream_request()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(path(&r), "targets[0]");
    assert!(text(r).await.contains("stream_interrupted"));
}

#[tokio::test]
async fn a_fallback_without_targets_is_unavailable() {
    let err = Fallback::<BoxTarget>::new([])
        .oneshot(request())
        .await
        .unwrap_err();
    assert!(err.is::<Unavailable>());
    assert_eq!(to_http_error(&err).status(), 503);
}

#[test]
fn builder_settings_combine_in_any_order() {
    let a = Fallback::<BoxTarget>::builder()
        .context_window_fallback(true)
        .on_status_codes([500])
        .build()
        .unwrap();
    let b = Fallback::<BoxTarget>::builder()
        .on_status_codes([500])
        .context_window_fallback(true)
        .build()
        .unwrap();
    assert_eq!(a.triggers(), b.triggers());
    assert!(a.triggers().context_window_enabled());
    assert_eq!(
        a.triggers().status_codes().iter().collect::<Vec<_>>(),
        [500]
    );
    assert_eq!(
        *Fallback::<BoxTarget>::new([]).triggers(),
        Triggers::default()
    );
}

#[test]
fn invalid_status_codes_fail_the_build() {
    for bad in [0, 99, 600, 999] {
        let err = Fallback::<BoxTarget>::builder()
            .on_status_codes([429, bad])
            .build()
            .unwrap_err();
        assert_eq!(err.path(), "on_status_codes");
        assert_eq!(
            err.message(),
            format!("must be HTTP status codes from 100 to 599, got {bad}")
        );
    }
}
