//! A real `redis-server` for tests of the shared stores: started on a free loopback port,
//! with no persistence, killed when dropped.
//!
//! [`RedisServer::start`] returns `None` (after printing a loud message) only when the
//! `redis-server` binary is missing *and* `PORTCULLIS_REQUIRE_REDIS` is unset; CI sets it
//! (`.ci/run`), so there a missing binary fails the test instead of skipping it.
//!
//! ```no_run
//! # fn main() {
//! let Some(redis) = portcullis_testkit::redis::RedisServer::start() else { return };
//! assert!(redis.url().starts_with("redis://127.0.0.1:"));
//! # }
//! ```

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// The environment variable that makes a missing `redis-server` a failure, not a skip.
pub const REQUIRE_ENV: &str = "PORTCULLIS_REQUIRE_REDIS";

/// A `redis-server` process owned by a test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free port of 127.0.0.1 and waits until it accepts
    /// connections (by reading its log, not by sleeping).
    ///
    /// # Panics
    /// If the server cannot start, or the binary is missing while [`REQUIRE_ENV`] is set.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("redis-server is not installed but {REQUIRE_ENV} is set");
            }
            eprintln!(
                "\n\n!!!!!!!!\n!!! SKIPPED: redis-server is not installed; \
                 `apt-get install -y redis-server` to run the Redis store tests\n!!!!!!!!\n"
            );
            return None;
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::spawn(port) {
                Ok(child) => {
                    return Some(Self {
                        child: Some(child),
                        port,
                    });
                }
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    fn spawn(port: u16) -> Result<Child, String> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .args(["--loglevel", "notice"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().expect("piped");
        let mut log = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("Ready to accept connections") {
                return Ok(child);
            }
            log.push_str(&line);
            log.push('\n');
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(log)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (a Redis that goes away); [`restart`](Self::restart) brings it back on
    /// the same port, empty.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    ///
    /// # Panics
    /// If it cannot start.
    pub fn restart(&mut self) {
        self.kill();
        let child = Self::spawn(self.port).unwrap_or_else(|e| panic!("redis-server restart: {e}"));
        self.child = Some(child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
