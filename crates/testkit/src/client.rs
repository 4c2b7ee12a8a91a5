//! A raw HTTP/1.1 client for tests: one request per connection, the exact bytes on the wire.
//!
//! Tests of a proxy want to see what a client really receives: the header block as sent and
//! the body with chunked framing removed (a body cut before its last chunk panics, so a test
//! can tell a clean end from a broken one).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 exchange: the status, the raw header block, and the body.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The status code.
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    /// The body, chunked framing removed.
    pub body: Vec<u8>,
}

impl Exchange {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// If the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    ///
    /// # Panics
    /// If the body is not UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// The bytes of a request with `connection: close` and a `content-length`.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> Vec<u8> {
    let body = body.as_ref();
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends `raw` on a new connection and reads the whole answer.
///
/// # Panics
/// If the connection fails or the answer is not a whole HTTP/1.1 response.
pub async fn send(addr: SocketAddr, raw: &[u8]) -> Exchange {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(raw).await.expect("write the request");
    let mut all = Vec::new();
    tcp.read_to_end(&mut all).await.expect("read the answer");
    parse(&all)
}

/// `POST` `body` to `path`.
pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Exchange {
    send(addr, &request("POST", path, headers, body)).await
}

/// Reads one response with a `content-length` body from a connection that stays open.
///
/// # Panics
/// If the connection ends before the whole response.
pub async fn read_response(tcp: &mut TcpStream) -> Exchange {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.expect("read the response");
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..n]);
        let Some(split) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().expect("a content-length"));
        if all.len() >= split + 4 + length {
            return parse(&all);
        }
    }
}

/// Parses a whole HTTP/1.1 response.
///
/// # Panics
/// If there is no header block, or a chunked body ends before its last chunk.
pub fn parse(all: &[u8]) -> Exchange {
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(all)));
    let head = String::from_utf8(all[..split].to_vec()).expect("a UTF-8 header block");
    let status = head[9..12].parse().expect("a status code");
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
                .expect("a chunk size line: the body was cut");
            let size = std::str::from_utf8(&rest[..end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .expect("a chunk size");
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
