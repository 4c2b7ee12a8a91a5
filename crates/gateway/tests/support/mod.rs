//! Starting the gateway in-process on 127.0.0.1:0, and a raw HTTP/1.1 client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_gateway::{Config, Gateway, server};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Sends the shutdown signal and waits for the server to finish.
    pub(crate) async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap().unwrap();
    }
}

pub(crate) fn config(json: &str) -> Config {
    Config::parse(json, &|name| std::env::var(name).ok()).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) async fn start(json: &str) -> Running {
    start_config(config(json)).await
}

pub(crate) async fn start_config(config: Config) -> Running {
    start_gateway(Gateway::new(config).unwrap_or_else(|e| panic!("{e}"))).await
}

pub(crate) async fn start_gateway(gateway: Gateway) -> Running {
    start_gateway_with_grace(gateway, Duration::from_secs(30)).await
}

/// Starts the gateway of `json` with `grace` for open requests after the shutdown signal.
pub(crate) async fn start_with_grace(json: &str, grace: Duration) -> Running {
    start_gateway_with_grace(
        Gateway::new(config(json)).unwrap_or_else(|e| panic!("{e}")),
        grace,
    )
    .await
}

pub(crate) async fn start_gateway_with_grace(gateway: Gateway, grace: Duration) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server::serve(
        listener,
        gateway,
        async {
            let _ = stopped.await;
        },
        grace,
    ));
    Running {
        addr,
        stop: Some(stop),
        done,
    }
}

// Each test file uses some of these.
#[allow(unused_imports)]
pub(crate) use portcullis_testkit::client::{post, read_response, request, send};

pub(crate) const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
pub(crate) const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;

/// Reads until the peer closes the connection (or resets it): what arrived before.
pub(crate) async fn read_until_closed(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Aborts its task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A timer due every millisecond, for tests with paused time and real sockets.
///
/// Whenever the runtime parks, a paused clock moves to the next timer, even when the park
/// only collected bytes that had just crossed loopback: a request on its way to the server
/// could let a server deadline fire first. With a timer always a millisecond away, a park
/// moves the clock by one millisecond at most.
pub(crate) fn tick_every_millisecond() -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }))
}

/// Moves the paused clock forward by `by`, a millisecond at a time, letting the server and
/// the sockets run between steps (as a paused `sleep` with [`tick_every_millisecond`] would,
/// but stated: no real time passes).
pub(crate) async fn advance_in_steps(by: Duration) {
    let steps = by.as_millis();
    for _ in 0..steps {
        tokio::time::advance(Duration::from_millis(1)).await;
    }
}
