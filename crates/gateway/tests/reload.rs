//! Hot reload: a new config swapped in while requests flow (none fails across 20 reloads),
//! the cache, the limits' counters and the circuit breakers carried over, an invalid file
//! keeping the old config, and `kill -HUP` on the real binary.

#[allow(unused_imports)]
mod support;

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use portcullis_gateway::{Config, Gateway};
use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, post, start_gateway};

const PATH: &str = "/v1/chat/completions";

fn config(to: &FakeUpstream, extra: &str) -> Config {
    support::config(&format!(
        r#"{{"providers": {{"up": {{"provider": "openai", "base_url": "{}", "api_key": "k"{extra}}}}},
            "config": {{"virtual_key": "up", "cache": {{"mode": "simple"}},
                        "circuit_breaker": {{"consecutive_failures": 1, "cooldown_ms": 60000}}}}}}"#,
        to.base_url()
    ))
}

#[tokio::test]
async fn no_request_fails_across_twenty_reloads() {
    let a = FakeUpstream::start().await;
    let b = FakeUpstream::start().await;
    let gateway = Gateway::new(config(&a, "")).unwrap();
    let gw = start_gateway(gateway.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (stop, done, addr) = (stop.clone(), done.clone(), gw.addr);
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // Distinct questions: misses, so every request reaches an upstream.
                let body = format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":"q {i} {n}"}}]}}"#
                );
                let e = post(addr, PATH, &[], &body).await;
                assert_eq!(e.status, 200, "{}", e.text());
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for i in 0..20 {
        let to = if i % 2 == 0 { &b } else { &a };
        gateway.reload(config(to, "")).unwrap();
        // Let some requests through on each config.
        let seen = done.load(Ordering::Relaxed);
        while done.load(Ordering::Relaxed) < seen + 4 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(a.hits() > 0 && b.hits() > 0, "both configs served");
}

#[tokio::test]
async fn the_cache_limits_and_breakers_survive_a_reload() {
    let up = FakeUpstream::start().await;
    let limits = r#", "rate_limits": [{"type": "requests", "unit": "rpm", "value": 3}]"#;
    let gateway = Gateway::new(config(&up, limits)).unwrap();
    let gw = start_gateway(gateway.clone()).await;
    assert_eq!(
        post(gw.addr, PATH, &[], CHAT)
            .await
            .header("x-portkey-cache-status"),
        Some("MISS")
    );
    gateway.reload(config(&up, limits)).unwrap();
    // The cache: still there.
    let e = post(gw.addr, PATH, &[], CHAT).await;
    assert_eq!(e.header("x-portkey-cache-status"), Some("HIT"));
    // The limits: the counter carried over (1 used before, 2 more allowed, then 429).
    for i in 0..2 {
        let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{i}"}}]}}"#);
        assert_eq!(post(gw.addr, PATH, &[], &body).await.status, 200);
    }
    let body = r#"{"model":"m","messages":[{"role":"user","content":"one more"}]}"#;
    assert_eq!(post(gw.addr, PATH, &[], body).await.status, 429);
    // The breaker: opened before a reload, still open after it.
    let gateway = Gateway::new(config(&up, "")).unwrap();
    let gw = start_gateway(gateway.clone()).await;
    up.set(Plan::ok().status(500));
    let body = r#"{"model":"m","messages":[{"role":"user","content":"fail"}]}"#;
    assert_eq!(post(gw.addr, PATH, &[], body).await.status, 500);
    let hits = up.hits();
    gateway.reload(config(&up, "")).unwrap();
    up.set(Plan::ok());
    let e = post(gw.addr, PATH, &[], body).await;
    assert_eq!(e.status, 503, "the open circuit carried over: {}", e.text());
    assert_eq!(up.hits(), hits, "no call while open");
}

#[tokio::test]
async fn a_reload_that_fails_keeps_the_running_config() {
    let up = FakeUpstream::start().await;
    let gateway = Gateway::new(config(&up, "")).unwrap();
    let gw = start_gateway(gateway.clone()).await;
    // Reads, but does not build: a limits store whose URL the Redis client refuses.
    let bad = Config::parse(
        r#"{"server": {"limits_store": {"store": "redis", "url": "redis://no such host:x"}, "limits": [{"name": "l", "rate_limits": [{"unit": "rpm", "value": 1}]}]},
            "providers": {"m": {"provider": "mock"}}, "config": {"virtual_key": "m"}}"#,
        &|_| None,
    )
    .unwrap();
    let err = gateway.reload(bad).unwrap_err();
    assert_eq!(err.path(), "server.limits_store.url");
    assert_eq!(post(gw.addr, PATH, &[], CHAT).await.status, 200);
    assert_eq!(up.hits(), 1, "the old config still serves");
}

#[test]
fn sighup_reloads_the_file_and_a_bad_file_keeps_the_old_config() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = rt.block_on(async { (FakeUpstream::start().await, FakeUpstream::start().await) });
    let dir = std::env::temp_dir().join(format!("portcullis-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.json");
    let write = |to: &FakeUpstream| {
        std::fs::write(
            &file,
            format!(
                r#"{{"providers": {{"up": {{"provider": "openai", "base_url": "{}", "api_key": "k"}}}}, "config": {{"virtual_key": "up"}}}}"#,
                to.base_url()
            ),
        )
        .unwrap();
    };
    write(&a);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--config"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The gateway's lines, read on a thread of their own so that a wait for one is bounded.
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr: std::net::SocketAddr = loop {
        let line = lines.recv().expect("the gateway logs where it listens");
        if let Some(at) = line.find("listening on http://") {
            break line[at + "listening on http://".len()..]
                .trim()
                .parse()
                .unwrap();
        }
    };
    let hup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        // The reload is logged once done; a wait bounded so that a lost line fails the test
        // instead of hanging it (it hung once: a log line dropped by tracing-subscriber's
        // per-layer filter state after an `enabled!` probe, tokio-rs/tracing#2519, fixed).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("reloaded") => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no reload line within 20 s of a SIGHUP");
    };
    rt.block_on(async {
        assert_eq!(post(addr, PATH, &[], CHAT).await.status, 200);
    });
    assert_eq!((a.hits(), b.hits()), (1, 0));
    write(&b);
    assert!(hup().contains("config reloaded"));
    rt.block_on(async {
        assert_eq!(post(addr, PATH, &[], CHAT).await.status, 200);
    });
    assert_eq!((a.hits(), b.hits()), (1, 1));
    std::fs::write(&file, "{ not json").unwrap();
    assert!(hup().contains("not reloaded"));
    rt.block_on(async {
        assert_eq!(post(addr, PATH, &[], CHAT).await.status, 200);
    });
    assert_eq!(b.hits(), 2, "the old config still serves");
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Waits (in paused time) for the watcher's next read.
async fn next_read() {
    tokio::time::advance(portcullis_gateway::reload::WATCH_INTERVAL).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_watched_file_is_reloaded_when_its_content_changes() {
    let dir = std::env::temp_dir().join(format!("portcullis-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("portcullis.json");
    let file = |provider: &str| {
        format!(
            r#"{{"server": {{"watch_config": true}},
                "providers": {{"{provider}": {{"provider": "mock"}}}},
                "config": {{"virtual_key": "{provider}"}}}}"#
        )
    };
    std::fs::write(&path, file("first")).unwrap();
    let gateway = Gateway::new(Config::load(&path).unwrap()).unwrap();
    assert!(gateway.config().server.watch_config);
    let watcher = tokio::spawn(portcullis_gateway::reload::watch(
        gateway.clone(),
        path.clone(),
        portcullis_gateway::reload::WATCH_INTERVAL,
    ));
    next_read().await;
    assert!(gateway.config().providers.contains_key("first"));

    // A change is picked up at the next read.
    std::fs::write(&path, file("second")).unwrap();
    next_read().await;
    assert!(gateway.config().providers.contains_key("second"));

    // An invalid file keeps the running config; a gone file too.
    std::fs::write(&path, r#"{"providers": {"x": {"provider": "nope"}}}"#).unwrap();
    next_read().await;
    assert!(gateway.config().providers.contains_key("second"));
    std::fs::remove_file(&path).unwrap();
    next_read().await;
    assert!(gateway.config().providers.contains_key("second"));

    // Fixed, it is read again.
    std::fs::write(&path, file("third")).unwrap();
    next_read().await;
    assert!(gateway.config().providers.contains_key("third"));
    watcher.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_config_is_a_boolean() {
    let err = Config::parse(r#"{"server": {"watch_config": "yes"}}"#, &|_| None).unwrap_err();
    assert_eq!(err.path(), "server.watch_config", "{err}");
}
