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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server::serve(
        listener,
        gateway,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(30),
    ));
    Running {
        addr,
        stop: Some(stop),
        done,
    }
}

pub(crate) use portcullis_testkit::client::{post, request, send};

pub(crate) const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
pub(crate) const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
