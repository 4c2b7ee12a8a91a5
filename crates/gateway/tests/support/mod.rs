//! Starting the gateway in-process on 127.0.0.1:0, and a raw HTTP/1.1 client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_gateway::{Config, Gateway, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Exchange {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

pub(crate) fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

pub(crate) async fn send(addr: SocketAddr, raw: &[u8]) -> Exchange {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw).await.unwrap();
    let mut all = Vec::new();
    tcp.read_to_end(&mut all).await.unwrap();
    parse(&all)
}

pub(crate) async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Exchange {
    send(addr, &request("POST", path, headers, body)).await
}

pub(crate) fn parse(all: &[u8]) -> Exchange {
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(all)));
    let head = String::from_utf8(all[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    let mut rest = &all[split + 4..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut body = Vec::new();
        loop {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size line");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
                .unwrap();
            rest = &rest[end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    Exchange { status, head, body }
}

pub(crate) const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
pub(crate) const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
