//! A real headless Chromium for browser tests, driven over the W3C WebDriver protocol by
//! Debian's `chromedriver` on a free loopback port.
//!
//! [`Browser::start`] returns `None` (after printing a loud message) only when `chromedriver`
//! or `chromium` is missing *and* `PORTCULLIS_REQUIRE_BROWSER` is unset; CI sets it
//! (`.ci/run` installs `chromium` and `chromium-driver`), so there a missing browser fails
//! the test instead of skipping it.
//!
//! Waiting is the browser's: elements are found with WebDriver's implicit wait, and
//! [`Browser::wait_for`] polls a condition inside the page. The test itself never sleeps.
//!
//! ```no_run
//! # async fn demo() {
//! let Some(browser) = portcullis_testkit::webdriver::Browser::start().await else { return };
//! browser.goto("http://127.0.0.1:8787/console/").await;
//! browser.click("#login-button").await;
//! browser.quit().await;
//! # }
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use tokio::io::AsyncWriteExt;

use crate::client::read_response;

/// The variable that turns a missing browser into a failure.
pub const REQUIRE_ENV: &str = "PORTCULLIS_REQUIRE_BROWSER";

/// How long the browser looks for an element, or waits for a condition, before the step
/// fails (the browser's timer, not the test's).
const WAIT_MS: u64 = 15_000;

/// The binaries, as Debian installs them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// A headless Chromium session; the browser and its driver end when it is dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session; `None` when they are not
    /// installed and [`REQUIRE_ENV`] is unset.
    ///
    /// # Panics
    /// If the browser is missing and [`REQUIRE_ENV`] is set, or it does not start.
    pub async fn start() -> Option<Self> {
        let installed = Path::new(CHROMIUM).exists()
            && Command::new(CHROMEDRIVER)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok();
        if !installed {
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("chromium or chromedriver is not installed but {REQUIRE_ENV} is set");
            }
            eprintln!(
                "\n\n!!!!!!!!\n!!! SKIPPED: chromium is not installed; \
                 `apt-get install -y chromium chromium-driver` to run the browser tests\n!!!!!!!!\n"
            );
            return None;
        }
        let port = crate::redis::free_port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = driver.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut log = String::new();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("started successfully") => break,
                Some(Ok(line)) => log.push_str(&line),
                _ => panic!("chromedriver did not start: {log}"),
            }
        }
        // Keep reading what it prints, so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let profile = std::env::temp_dir().join(format!("portcullis-chromium-{port}"));
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        let created = browser.command("POST", "/session", caps).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        browser
            .session_command(
                "POST",
                "/timeouts",
                json!({"implicit": WAIT_MS, "script": WAIT_MS}),
            )
            .await;
        Some(browser)
    }

    /// One WebDriver call: its status and its JSON answer. chromedriver keeps connections
    /// open and wants a loopback `host`, so this reads exactly `content-length` bytes.
    async fn call(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let body = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let mut tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to chromedriver");
        tcp.write_all(raw.as_bytes())
            .await
            .expect("write to chromedriver");
        let answer = read_response(&mut tcp).await;
        let doc = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        (answer.status, doc)
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, doc) = self.call(method, path, &body).await;
        assert!(status == 200, "WebDriver {method} {path}: {status} {doc}");
        doc["value"].clone()
    }

    async fn session_command(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.command(method, &path, body).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.session_command("POST", "/url", json!({ "url": url }))
            .await;
    }

    /// The first element matching `css`, once there is one.
    async fn find(&self, css: &str) -> String {
        let found = self
            .session_command(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.session_command("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// Types `text` into the first element matching `css`, after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.session_command("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.session_command(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        let text = self
            .session_command("GET", &format!("/element/{id}/text"), Value::Null)
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page, for its value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.session_command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits, in the page, until the JavaScript expression `condition` is true.
    ///
    /// # Panics
    /// If it is not true within 15 s.
    pub async fn wait_for(&self, condition: &str) {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             (function poll() {{
               let ok = false;
               try {{ ok = Boolean({condition}); }} catch (e) {{}}
               if (ok) {{ done(true); }} else {{ setTimeout(poll, 25); }}
             }})();"
        );
        let path = format!("/session/{}/execute/async", self.session);
        let (status, _) = self
            .call("POST", &path, &json!({"script": script, "args": []}))
            .await;
        if status != 200 {
            let page = self.run("return document.body.innerText;", json!([])).await;
            panic!("waited in vain for `{condition}`; the page shows:\n{page}");
        }
    }

    /// Saves a PNG of the page.
    pub async fn screenshot(&self, to: &Path) {
        let png = self
            .session_command("GET", "/screenshot", Value::Null)
            .await;
        let bytes = base64_decode(png.as_str().expect("base64 PNG"));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(to, bytes).expect("screenshot written");
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        self.call("DELETE", &path, &Value::Null).await;
        self.session.clear();
    }
}

/// Standard base64 (the screenshot's encoding), padding and line breaks ignored.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium outlives a killed chromedriver: its processes are found by the profile
        // directory this browser alone was started with, and ended too.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(&self.profile)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
