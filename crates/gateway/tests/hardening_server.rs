//! The server's limits over real loopback TCP (issue 15, finding 2): idle and slow clients
//! are closed at their timeouts, the connection limit holds while `/health` still answers,
//! and a shutdown deadline ends an open stream with an SSE error event. Time is tokio's
//! paused clock, kept from leaping over a server deadline while bytes cross loopback by a
//! timer due every millisecond (see `support::tick_every_millisecond`).

mod support;

use std::time::Duration;

use portcullis_testkit::client::parse;
use support::{
    CHAT, CHAT_STREAM, advance_in_steps, post, read_response, read_until_closed, request, send,
    start, start_with_grace, tick_every_millisecond,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// A mock provider behind a config with `server` settings `server`.
fn config(server: &str) -> String {
    format!(
        r#"{{"server": {{{server}}},
            "providers": {{"m": {{"provider": "mock", "content": "one two three",
                                  "chunk_delay_ms": 60000}}}},
            "config": {{"virtual_key": "m"}}}}"#
    )
}

/// How far past a deadline a close may be seen. The paused clock leaps to the next timer
/// whenever the runtime finds nothing ready, and on a loaded machine the kernel can hold
/// loopback bytes back for a few real milliseconds, each worth up to a thousand 1 ms leaps:
/// lower bounds stay exact (never closed early), upper bounds allow this drift.
const SLACK: Duration = Duration::from_secs(3);

const HEALTH_KEEP_ALIVE: &[u8] = b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n";

/// Writes `bytes` one at a time, `every` apart, until the peer is gone.
fn trickle(mut tcp: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, every: Duration) {
    tokio::spawn(async move {
        for chunk in bytes.chunks(1).cycle() {
            if tcp.write_all(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let _clock = tick_every_millisecond();
    let gw = start(&config(
        r#""idle_timeout_ms": 5000, "header_read_timeout_ms": 60000"#,
    ))
    .await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(HEALTH_KEEP_ALIVE).await.unwrap();
    assert_eq!(read_response(&mut tcp).await.status, 200);
    let idle_from = Instant::now();
    // Still open well inside the timeout: a second request on it is served.
    advance_in_steps(Duration::from_secs(2)).await;
    tcp.write_all(HEALTH_KEEP_ALIVE).await.unwrap();
    assert_eq!(read_response(&mut tcp).await.status, 200);
    let idle_from_again = Instant::now();
    let rest = timeout(Duration::from_secs(30), read_until_closed(&mut tcp))
        .await
        .expect("the idle connection was closed");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(idle_from.elapsed() >= Duration::from_secs(7));
    let idle = idle_from_again.elapsed();
    assert!(
        idle >= Duration::from_millis(4990) && idle <= Duration::from_millis(5000) + SLACK,
        "closed after {idle:?} idle"
    );
}

#[tokio::test(start_paused = true)]
async fn an_http2_connection_that_sends_no_request_is_closed_at_the_header_timeout() {
    let _clock = tick_every_millisecond();
    let gw = start(&config(
        r#""idle_timeout_ms": 5000, "header_read_timeout_ms": 60000"#,
    ))
    .await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let start = Instant::now();
    timeout(Duration::from_secs(120), read_until_closed(&mut tcp))
        .await
        .expect("the connection was closed");
    // No request ever came: the header timeout (60 s) applies to the first request, not
    // the idle timeout (5 s) of a connection between requests.
    assert!(
        start.elapsed() >= Duration::from_secs(59)
            && start.elapsed() <= Duration::from_secs(60) + SLACK,
        "closed after {:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout() {
    let _clock = tick_every_millisecond();
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let gw = start(&config(
        r#""idle_timeout_ms": 5000, "header_read_timeout_ms": 60000"#,
    ))
    .await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut client, connection) =
        hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        )
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let health = || {
        http::Request::get(format!("http://{}/health", gw.addr))
            .body(Empty::new())
            .unwrap()
    };
    // One request only: on tokio's paused clock a second HTTP/2 request on this connection
    // is not read by the server (it is in real time), so that a request resets the idle time
    // is pinned by the HTTP/1.1 test above and by `server::idle`'s unit tests.
    let res = client.send_request(health()).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
    let idle_from = Instant::now();
    timeout(Duration::from_secs(30), connection)
        .await
        .expect("the idle HTTP/2 connection was closed")
        .unwrap()
        .ok();
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(4990) && idle <= Duration::from_millis(5000) + SLACK,
        "closed after {idle:?} idle"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slowloris_head_is_closed_at_the_header_timeout() {
    let _clock = tick_every_millisecond();
    let gw = start(&config(
        r#""header_read_timeout_ms": 3000, "idle_timeout_ms": 60000"#,
    ))
    .await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut read, write) = tcp.into_split();
    let start = Instant::now();
    // A head that never ends: one byte every 500 ms.
    let mut head = b"GET /health HTTP/1.1\r\nhost: test\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'x', 1000));
    trickle(write, head, Duration::from_millis(500));
    let answer = timeout(Duration::from_secs(60), async {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        let _ = read.read_to_end(&mut all).await;
        all
    })
    .await
    .expect("the slow client was disconnected");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took <= Duration::from_millis(3000) + SLACK,
        "closed after {took:?}"
    );
    // hyper answers 408 when it can; a bare close is as good.
    if !answer.is_empty() {
        assert_eq!(parse(&answer).status, 408);
    }
}

#[tokio::test(start_paused = true)]
async fn a_never_ending_body_is_answered_408_at_the_body_timeout() {
    let _clock = tick_every_millisecond();
    let gw = start(&config(r#""body_read_timeout_ms": 4000"#)).await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    write
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\n\
              content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
              1\r\n{\r\n",
        )
        .await
        .unwrap();
    let start = Instant::now();
    // One more byte of JSON every 100 ms, forever.
    trickle(write, b"1\r\n \r\n".to_vec(), Duration::from_millis(100));
    let answer = timeout(Duration::from_secs(60), async {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        let _ = read.read_to_end(&mut all).await;
        all
    })
    .await
    .expect("the connection was closed after the answer");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(3900) && took <= Duration::from_millis(4000) + SLACK,
        "answered after {took:?}"
    );
    let res = parse(&answer);
    assert_eq!(res.status, 408, "{}", res.text());
    assert_eq!(res.json()["error"]["type"], "timeout_error");
    assert_eq!(res.json()["error"]["code"], "body_read_timeout");
    assert_eq!(res.header("connection"), Some("close"));
}

#[tokio::test(start_paused = true)]
async fn past_max_connections_new_ones_wait_and_health_still_answers() {
    let _clock = tick_every_millisecond();
    let gw = start(&config(
        r#""max_connections": 2, "idle_timeout_ms": 600000, "header_read_timeout_ms": 600000"#,
    ))
    .await;
    // Two connections take the two slots (each proven accepted by an answer) and stay.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(HEALTH_KEEP_ALIVE).await.unwrap();
        assert_eq!(read_response(&mut tcp).await.status, 200);
        held.push(tcp);
    }
    // Past the limit: a health check still answers; anything else is told to come back.
    let health = send(gw.addr, &request("GET", "/health", &[], "")).await;
    assert_eq!(health.status, 200);
    let chat = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_eq!(chat.status, 503, "{}", chat.text());
    assert_eq!(chat.json()["error"]["code"], "too_many_connections");
    assert_eq!(chat.header("retry-after"), Some("1"));
    // The spare slots (the server keeps 4) taken by connections that say nothing...
    advance_in_steps(Duration::from_millis(100)).await;
    let mut spares = Vec::new();
    for _ in 0..4 {
        spares.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    advance_in_steps(Duration::from_millis(100)).await;
    // ...the next connection waits in the backlog, neither served nor refused.
    let mut waiting = TcpStream::connect(gw.addr).await.unwrap();
    waiting.write_all(HEALTH_KEEP_ALIVE).await.unwrap();
    assert!(
        timeout(Duration::from_millis(500), read_response(&mut waiting))
            .await
            .is_err(),
        "not served while every slot is taken"
    );
    // A slot frees up: the waiting connection is served.
    drop(held.pop());
    let res = timeout(Duration::from_secs(5), read_response(&mut waiting))
        .await
        .expect("served once a slot is free");
    assert_eq!(res.status, 200);
    // The spare connections were short-lived: all closed by now or soon.
    for mut spare in spares {
        timeout(Duration::from_secs(3), read_until_closed(&mut spare))
            .await
            .expect("a spare connection is closed within seconds");
    }
    // And a full one serves chat again.
    drop(held);
    advance_in_steps(Duration::from_millis(100)).await;
    let chat = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
    assert_ne!(chat.status, 503);
}

#[tokio::test(start_paused = true)]
async fn shutdown_past_the_grace_ends_an_open_stream_with_an_error_event() {
    let _clock = tick_every_millisecond();
    let mut gw = start_with_grace(&config(""), Duration::from_secs(5)).await;
    let addr = gw.addr;
    let stream =
        tokio::spawn(async move { post(addr, "/v1/chat/completions", &[], CHAT_STREAM).await });
    // The stream has started (its first event is out, the next is a minute away).
    advance_in_steps(Duration::from_secs(1)).await;
    let _ = gw.stop.take().unwrap().send(());
    let shutdown_at = Instant::now();
    let res = timeout(Duration::from_secs(30), stream)
        .await
        .expect("the stream ended at the shutdown deadline")
        .unwrap();
    let ended = shutdown_at.elapsed();
    assert!(
        ended >= Duration::from_secs(5) && ended <= Duration::from_secs(5) + SLACK,
        "ended {ended:?} after the signal"
    );
    assert_eq!(res.status, 200);
    // A whole chunked body (parse panics on a cut one) whose last event is the error.
    let text = res.text();
    let last = text
        .trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap()
        .strip_prefix("data: ")
        .unwrap_or_else(|| panic!("an SSE event last: {text}"));
    let event: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(event["error"]["code"], "server_shutting_down", "{text}");
    assert!(!text.contains("[DONE]"));
    timeout(Duration::from_secs(5), gw.done)
        .await
        .expect("the server finished")
        .unwrap()
        .unwrap();
}
