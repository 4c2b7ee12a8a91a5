//! The `rustls` feature (default) lets providers reach `https://` upstreams; a gateway built
//! without it refuses an `https://` base URL when it starts, and says what to enable.

#[cfg(feature = "rustls")]
mod support;

use portcullis_gateway::Gateway;
use portcullis_gateway::config::{Config, ConfigError};

/// The config read and the gateway built from it, as start-up does.
fn start_with_an_https_provider() -> Result<Gateway, ConfigError> {
    let config = Config::parse(
        r#"{"providers": {"openai": {"provider": "openai-compatible",
            "base_url": "https://api.openai.com/v1", "api_key": "sk-test"}}}"#,
        &|_| None,
    )?;
    Gateway::new(config)
}

#[cfg(feature = "rustls")]
#[test]
fn an_https_provider_starts_with_rustls() {
    start_with_an_https_provider().unwrap_or_else(|e| panic!("{e}"));
}

#[cfg(not(feature = "rustls"))]
#[test]
fn an_https_provider_without_rustls_stops_start_up() {
    let err = start_with_an_https_provider().unwrap_err().to_string();
    assert!(err.contains("needs TLS"), "{err}");
    assert!(err.contains("`rustls`"), "{err}");
}

/// `server.upstream_ca_file`: `https://` upstreams behind a certificate authority of the
/// operator's own, over loopback TLS (HTTP/2 where the upstream offers it).
#[cfg(feature = "rustls")]
mod upstream_ca {
    use std::path::PathBuf;

    use portcullis_gateway::config::Config;
    use portcullis_testkit::FakeUpstream;
    use portcullis_testkit::tls::{Alpn, TestCa};

    use super::support::{CHAT, post, start};

    /// A file of the test's own, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, content: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("portcullis-ca-{}-{name}.pem", std::process::id()));
            std::fs::write(&path, content).unwrap();
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn config(upstream: &FakeUpstream, ca_file: Option<&str>) -> String {
        let server = ca_file.map_or_else(String::new, |f| {
            format!(r#""server": {{"upstream_ca_file": "{f}"}},"#)
        });
        format!(
            r#"{{{server} "providers": {{"private": {{"provider": "openai-compatible",
                "base_url": "{}", "api_key": "sk-private"}}}},
                "config": {{"virtual_key": "private"}}}}"#,
            upstream.base_url()
        )
    }

    #[tokio::test]
    async fn an_upstream_behind_the_configured_ca_answers_over_http2() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        let file = TempFile::new("good", ca.pem());
        let gw = start(&config(&upstream, Some(file.path()))).await;
        let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(
            res.json()["choices"][0]["message"]["content"],
            portcullis_testkit::DEFAULT_CONTENT
        );
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.version, http::Version::HTTP_2);
        assert_eq!(seen.header("authorization"), Some("Bearer sk-private"));
    }

    #[tokio::test]
    async fn without_the_ca_the_upstream_is_never_called() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        let gw = start(&config(&upstream, None)).await;
        let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
        assert_eq!(res.status, 502, "{}", res.text());
        assert_eq!(res.json()["error"]["code"], "upstream_connect_failed");
        assert_eq!(upstream.hits(), 0);
    }

    #[tokio::test]
    async fn a_provider_with_its_own_connect_timeout_trusts_the_ca_too() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::Http1).await;
        let file = TempFile::new("timeout", ca.pem());
        let json = config(&upstream, Some(file.path())).replace(
            r#""api_key": "sk-private""#,
            r#""api_key": "sk-private", "connect_timeout_ms": 2000"#,
        );
        assert!(json.contains("connect_timeout_ms"), "{json}");
        let gw = start(&json).await;
        let res = post(gw.addr, "/v1/chat/completions", &[], CHAT).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(
            upstream.last_request().unwrap().version,
            http::Version::HTTP_11
        );
    }

    #[test]
    fn a_ca_file_that_is_missing_or_not_pem_stops_start_up_with_its_path() {
        let parse = |file: &str| {
            Config::parse(
                &format!(r#"{{"server": {{"upstream_ca_file": "{file}"}}}}"#),
                &|_| None,
            )
            .unwrap_err()
            .to_string()
        };
        let missing = parse("/nonexistent/portcullis-ca.pem");
        assert!(
            missing.starts_with(
                "server.upstream_ca_file: cannot read `/nonexistent/portcullis-ca.pem`: "
            ),
            "{missing}"
        );
        let junk = TempFile::new("junk", "not a certificate\n");
        let err = parse(junk.path());
        assert_eq!(
            err,
            format!(
                "server.upstream_ca_file: `{}`: root certificates: no CERTIFICATE section in the PEM",
                junk.path()
            )
        );
        let err = Config::parse(r#"{"server": {"upstream_ca_file": 7}}"#, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("server.upstream_ca_file: "), "{err}");
    }

    #[test]
    fn a_ca_set_in_code_is_checked_when_the_gateway_is_built() {
        let mut config = Config::parse(
            r#"{"providers": {"m": {"provider": "mock", "models": ["mock-1"]}}}"#,
            &|_| None,
        )
        .unwrap();
        config.server.upstream_ca = Some(portcullis_gateway::config::UpstreamCa {
            file: "in-code.pem".to_owned(),
            pem: std::sync::Arc::from(&b"not a certificate"[..]),
        });
        let err = portcullis_gateway::Gateway::new(config)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "server.upstream_ca_file: `in-code.pem`: root certificates: no CERTIFICATE section in the PEM"
        );
    }

    #[test]
    fn the_ca_file_may_name_an_environment_variable() {
        let ca = TestCa::new();
        let file = TempFile::new("env", ca.pem());
        let path = file.path().to_owned();
        let config = Config::parse(
            r#"{"server": {"upstream_ca_file": "${CA_FILE}"},
                "providers": {"m": {"provider": "mock", "models": ["mock-1"]}}}"#,
            &|name| (name == "CA_FILE").then(|| path.clone()),
        )
        .unwrap();
        let ca_read = config.server.upstream_ca.unwrap();
        assert_eq!(ca_read.file, file.path());
        assert_eq!(&*ca_read.pem, ca.pem().as_bytes());
    }
}

#[cfg(not(feature = "rustls"))]
#[test]
fn a_ca_file_without_rustls_stops_start_up() {
    let err = Config::parse(
        r#"{"server": {"upstream_ca_file": "/etc/ssl/private-ca.pem"}}"#,
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "server.upstream_ca_file: needs TLS: this build of the gateway has none (its `rustls` feature)"
    );
}
