//! The stream observer: pass-through, usage, assembled text, one report at the end, breaks
//! and cancellation.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::Frame;
use http_body_util::BodyExt;
use portcullis_core::observe::{Observation, Outcome, Report, observe_response};
use portcullis_core::{Body, BoxError};

/// A body that yields scripted frames, then ends.
struct Script(VecDeque<Result<&'static str, &'static str>>);

impl http_body::Body for Script {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|item| match item {
            Ok(data) => Ok(Frame::data(Bytes::from_static(data.as_bytes()))),
            Err(e) => Err(e.into()),
        }))
    }
}

fn sse(frames: Vec<Result<&'static str, &'static str>>) -> Response<Body> {
    let upstream = Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Script(frames.into()))
        .unwrap();
    observe_response(upstream)
}

fn json(frames: Vec<Result<&'static str, &'static str>>) -> Response<Body> {
    let upstream = Response::builder()
        .header("content-type", "application/json")
        .header("content-length", "999")
        .body(Script(frames.into()))
        .unwrap();
    observe_response(upstream)
}

fn observation(r: &Response<Body>) -> Observation {
    r.extensions().get::<Observation>().unwrap().clone()
}

/// Reads the body to its end, returning what the client got and whether it ended in error.
async fn drain(r: Response<Body>) -> (String, Option<String>) {
    let mut body = r.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => out.extend_from_slice(&f.into_data().unwrap()),
            Err(e) => return (String::from_utf8(out).unwrap(), Some(e.to_string())),
        }
    }
    (String::from_utf8(out).unwrap(), None)
}

const ROLE: &str = "data: {\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
const HEL: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n";
const LO: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\\"x\\\"\"},\"finish_reason\":null}]}\n\n";
const STOP: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

fn report(o: &Observation) -> Arc<Report> {
    o.report().expect("reported")
}

#[tokio::test]
async fn stream_with_usage_passes_through_and_reports() {
    let r = sse(vec![
        Ok(ROLE),
        Ok(HEL),
        Ok(LO),
        Ok(STOP),
        Ok(USAGE),
        Ok(DONE),
    ]);
    assert!(r.headers().get("content-length").is_none());
    let o = observation(&r);
    assert!(o.report().is_none());
    let (client, err) = drain(r).await;
    assert_eq!(err, None);
    assert_eq!(client, [ROLE, HEL, LO, STOP, USAGE, DONE].concat());
    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert!(rep.stream);
    assert_eq!(rep.text, "Hello \"x\"");
    assert_eq!(rep.finish_reason.as_deref(), Some("stop"));
    assert_eq!(rep.model.as_deref(), Some("m-1"));
    assert_eq!(rep.usage.unwrap().total_tokens, 7);
    assert_eq!(rep.events, 6);
    assert_eq!(rep.bytes, client.len() as u64);
}

#[tokio::test]
async fn stream_without_usage_chunk_reports_no_usage() {
    let r = sse(vec![Ok(ROLE), Ok(HEL), Ok(STOP), Ok(DONE)]);
    let o = observation(&r);
    drain(r).await;
    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert_eq!(rep.usage, None);
    assert_eq!(rep.text, "Hel");
}

#[tokio::test]
async fn events_split_across_chunks_are_whole_on_the_way_out() {
    let r = sse(vec![
        Ok("data: {\"choices\":[{\"index\":0,\"del"),
        Ok("ta\":{\"content\":\"ab\"}}]}\n"),
        Ok("\ndata: [DO"),
        Ok("NE]\n\n"),
    ]);
    let o = observation(&r);
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        &first[..],
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ab\"}}]}\n\n"
    );
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&second[..], b"data: [DONE]\n\n");
    assert!(body.frame().await.is_none());
    assert_eq!(report(&o).text, "ab");
}

#[tokio::test]
async fn transport_error_mid_stream_ends_with_an_error_event() {
    let r = sse(vec![
        Ok(ROLE),
        Ok(HEL),
        Ok("data: {\"choices\":[{\"index\":0,\"del"),
        Err("connection reset"),
    ]);
    let o = observation(&r);
    let (client, err) = drain(r).await;
    assert_eq!(err, None, "the client gets an event, not a broken body");
    let (before, event) = client.split_at(ROLE.len() + HEL.len());
    assert_eq!(before, [ROLE, HEL].concat(), "the half event is never sent");
    let data = event
        .strip_prefix("data: ")
        .and_then(|e| e.strip_suffix("\n\n"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");
    assert_eq!(v["error"]["code"], "stream_interrupted");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection reset")
    );
    let rep = report(&o);
    assert!(matches!(&rep.outcome, Outcome::Failed(m) if m.contains("connection reset")));
    assert_eq!(rep.text, "Hel");
    assert_eq!(rep.bytes, client.len() as u64, "the error event is counted");
}

#[tokio::test]
async fn clean_end_without_done_is_a_failure() {
    let r = sse(vec![Ok(ROLE), Ok(HEL)]);
    let o = observation(&r);
    let (client, err) = drain(r).await;
    assert_eq!(err, None);
    assert!(client.starts_with(&[ROLE, HEL].concat()));
    assert!(client.ends_with("\n\n"));
    assert!(client.contains("\"code\":\"stream_interrupted\""));
    let rep = report(&o);
    assert!(matches!(rep.outcome, Outcome::Failed(_)));
    assert_eq!(rep.bytes, client.len() as u64, "the error event is counted");
}

#[tokio::test]
async fn end_without_done_after_an_unterminated_event_counts_every_byte() {
    // The last event has no blank line: it goes out as the tail, then the error event.
    let last = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"}}]}";
    let r = sse(vec![Ok(ROLE), Ok(HEL), Ok(last)]);
    let o = observation(&r);
    let (client, err) = drain(r).await;
    assert_eq!(err, None);
    assert!(client.contains("\"code\":\"stream_interrupted\""));
    let rep = report(&o);
    assert!(matches!(rep.outcome, Outcome::Failed(_)));
    assert_eq!(rep.bytes, client.len() as u64);
}

#[tokio::test]
async fn finish_reason_without_done_is_complete() {
    let r = sse(vec![Ok(HEL), Ok(STOP)]);
    let o = observation(&r);
    let (client, _) = drain(r).await;
    assert_eq!(client, [HEL, STOP].concat());
    assert_eq!(report(&o).outcome, Outcome::Complete);
}

#[tokio::test]
async fn last_done_without_blank_line_is_accepted() {
    let r = sse(vec![Ok(HEL), Ok("data: [DONE]")]);
    let o = observation(&r);
    let (client, _) = drain(r).await;
    assert_eq!(client, [HEL, DONE].concat());
    assert_eq!(report(&o).outcome, Outcome::Complete);
}

#[tokio::test]
async fn upstream_error_event_is_passed_on_and_reported() {
    let error = "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
    let r = sse(vec![Ok(HEL), Ok(error)]);
    let o = observation(&r);
    let (client, _) = drain(r).await;
    assert_eq!(client, [HEL, error].concat());
    assert_eq!(report(&o).outcome, Outcome::Failed("overloaded".into()));
}

#[tokio::test]
async fn dropping_mid_stream_reports_cancelled_with_partial_text() {
    let r = sse(vec![Ok(ROLE), Ok(HEL), Ok(LO), Ok(DONE)]);
    let o = observation(&r);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    o.on_report(move |rep| sink.lock().unwrap().push(rep.clone()));
    let mut body = r.into_body();
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    assert!(seen.lock().unwrap().is_empty());
    drop(body);
    let reports = seen.lock().unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, Outcome::Cancelled);
    assert_eq!(reports[0].text, "Hel");
}

#[tokio::test]
async fn injected_usage_event_is_stripped_but_reported() {
    let upstream = Response::builder()
        .header("content-type", "text/event-stream")
        .body(Script(vec![Ok(HEL), Ok(STOP), Ok(USAGE), Ok(DONE)].into()))
        .unwrap();
    let (parts, body) = upstream.into_parts();
    let observed = portcullis_core::observe::ObservedBody::new(body, parts.status, &parts.headers)
        .strip_usage_event(true);
    let o = observed.observation();
    let client = Body::new(observed).collect().await.unwrap().to_bytes();
    assert_eq!(client, [HEL, STOP, DONE].concat());
    assert_eq!(report(&o).usage.unwrap().prompt_tokens, 5);
}

#[tokio::test]
async fn json_body_reports_usage_text_and_body() {
    let r = json(vec![
        Ok(
            "{\"model\":\"m-2\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi",
        ),
        Ok(
            " there\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}",
        ),
    ]);
    assert_eq!(
        r.headers()["content-length"],
        "999",
        "JSON bodies keep their length"
    );
    let o = observation(&r);
    let (client, err) = drain(r).await;
    assert_eq!(err, None);
    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert!(!rep.stream);
    assert_eq!(rep.usage.unwrap().total_tokens, 11);
    assert_eq!(rep.text, "Hi there");
    assert_eq!(rep.model.as_deref(), Some("m-2"));
    assert_eq!(rep.body.as_deref(), Some(client.as_bytes()));
}

#[tokio::test]
async fn json_body_error_is_passed_on_and_reported() {
    let r = json(vec![Ok("{\"usage\":"), Err("reset")]);
    let o = observation(&r);
    let (_, err) = drain(r).await;
    assert_eq!(err.as_deref(), Some("reset"));
    assert!(matches!(report(&o).outcome, Outcome::Failed(_)));
}

#[tokio::test]
async fn json_body_dropped_after_its_last_frame_is_complete() {
    let upstream = Response::new(Body::from(
        "{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}",
    ));
    let r = observe_response(upstream);
    let o = observation(&r);
    let mut body = r.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    let rep = report(&o);
    assert_eq!(rep.outcome, Outcome::Complete);
    assert_eq!(rep.usage.unwrap().total_tokens, 2);
}

#[tokio::test]
async fn callbacks_run_once_even_when_registered_late() {
    let r = sse(vec![Ok(HEL), Ok(DONE)]);
    let o = observation(&r);
    drain(r).await;
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    o.on_report(move |_| *c.lock().unwrap() += 1);
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn observing_twice_keeps_the_first_observer() {
    let r = sse(vec![Ok(HEL), Ok(DONE)]);
    let first = observation(&r);
    let r = observe_response(r);
    let second = observation(&r);
    drain(r).await;
    assert!(first.report().is_some());
    assert_eq!(first.report(), second.report());
}

#[tokio::test]
async fn started_keeps_the_first_frame() {
    let r = sse(vec![Ok(HEL), Ok(DONE)]);
    let o = observation(&r);
    let r = portcullis_core::observe::started(r).await.unwrap();
    let (client, _) = drain(r).await;
    assert_eq!(client, [HEL, DONE].concat());
    assert_eq!(report(&o).outcome, Outcome::Complete);
}

#[tokio::test]
async fn started_sees_a_stream_that_broke_before_its_first_event() {
    let r = sse(vec![Err("reset before anything")]);
    let not = portcullis_core::observe::started(r).await.unwrap_err();
    assert!(
        not.reason.contains("reset before anything"),
        "{}",
        not.reason
    );
    let (client, _) = drain(not.response).await;
    assert!(
        client.contains("stream_interrupted"),
        "the client-facing answer is kept"
    );

    let r = sse(vec![Ok("data: {\"choi"), Err("reset mid event")]);
    assert!(portcullis_core::observe::started(r).await.is_err());
}

#[tokio::test]
async fn started_passes_a_stream_that_breaks_later() {
    let r = sse(vec![Ok(HEL), Err("later")]);
    let r = portcullis_core::observe::started(r).await.unwrap();
    let (client, _) = drain(r).await;
    assert!(client.starts_with(HEL));
    assert!(client.contains("stream_interrupted"));
}

#[tokio::test]
async fn started_sees_a_json_body_error() {
    let r = json(vec![Err("gone")]);
    let not = portcullis_core::observe::started(r).await.unwrap_err();
    assert_eq!(not.reason, "gone");
}

#[tokio::test]
async fn started_holds_an_empty_opening_event_until_content() {
    // Broke after the role-only event: nothing useful reached the client, so not started.
    let r = sse(vec![Ok(ROLE), Err("reset after role")]);
    let not = portcullis_core::observe::started(r).await.unwrap_err();
    assert!(not.reason.contains("reset after role"));

    // Role then content: started, and the role event is sent first.
    let r = sse(vec![Ok(ROLE), Ok(HEL), Ok(DONE)]);
    let r = portcullis_core::observe::started(r).await.unwrap();
    let (client, _) = drain(r).await;
    assert_eq!(client, [ROLE, HEL, DONE].concat());
}

#[tokio::test]
async fn observe_layer_keeps_readiness_and_observes() {
    use tower::Layer;
    let (mut svc, mut handle) =
        tower_test::mock::spawn_with::<http::Request<()>, Response<Body>, _, _>(|m| {
            portcullis_core::observe::ObserveLayer::new().layer(m)
        });
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let fut = tokio::spawn(svc.call(http::Request::new(())));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from([HEL, DONE].concat()))
            .unwrap(),
    );
    let r = fut.await.unwrap().unwrap();
    let o = observation(&r);
    drain(r).await;
    assert_eq!(report(&o).text, "Hel");
}
