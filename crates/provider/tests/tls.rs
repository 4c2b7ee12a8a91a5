//! TLS is the `rustls` feature: with it an `https://` base URL builds; without it the client
//! speaks plain HTTP only and an `https://` base URL is a build error that says what to enable.

use portcullis_provider::{HttpClient, OpenAi};

#[test]
fn the_client_says_whether_it_has_tls() {
    assert_eq!(HttpClient::TLS, cfg!(feature = "rustls"));
}

#[test]
fn plain_http_builds_with_or_without_tls() {
    assert!(OpenAi::builder("http://localhost:8000/v1").build().is_ok());
}

#[cfg(feature = "rustls")]
#[test]
fn https_builds_with_rustls() {
    assert!(
        OpenAi::builder("https://api.openai.com/v1")
            .api_key("sk-test")
            .build()
            .is_ok()
    );
}

#[cfg(not(feature = "rustls"))]
#[test]
fn https_without_rustls_is_a_build_error() {
    let err = OpenAi::builder("https://api.openai.com/v1")
        .build()
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "base_url `https://api.openai.com/v1` needs TLS: this build of portcullis-provider has \
         no TLS; enable its `rustls` feature (`portcullis` and the gateway: `rustls`)"
    );
}

/// An `https://` upstream behind a certificate authority of the test's own, over loopback:
/// HTTP/2 where the upstream offers it by ALPN, HTTP/1.1 where it does not, and no call at all
/// to an upstream whose certificate the client does not trust.
#[cfg(feature = "rustls")]
mod support;

#[cfg(feature = "rustls")]
mod over_tls {
    use bytes::Bytes;
    use http::{Request, StatusCode, Version};
    use http_body_util::Full;
    use portcullis_core::observe::Outcome;
    use portcullis_provider::{HttpClient, OpenAi};
    use portcullis_testkit::tls::{Alpn, TestCa};
    use portcullis_testkit::{FakeUpstream, Plan};

    use super::support::{json_body, observation, report, send_to, stream_text};

    const CHAT: &str =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
    const CHAT_STREAM: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;

    fn trusting(ca: &TestCa) -> HttpClient {
        HttpClient::builder()
            .add_root_certificates_pem(ca.pem().as_bytes())
            .unwrap()
            .build()
    }

    fn provider(upstream: &FakeUpstream, client: HttpClient) -> OpenAi {
        OpenAi::builder(upstream.base_url())
            .api_key("sk-upstream-secret")
            .name("tls-openai")
            .client(client)
            .build()
            .unwrap()
    }

    fn chat(body: &'static str) -> Request<Full<Bytes>> {
        Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", "Bearer client-gateway-key")
            .header("x-portkey-metadata", r#"{"_user":"u1"}"#)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    }

    #[tokio::test]
    async fn an_upstream_offering_h2_is_spoken_to_in_http2() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        assert!(upstream.base_url().starts_with("https://127.0.0.1:"));
        let r = send_to(provider(&upstream, trusting(&ca)), chat(CHAT)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-portkey-provider"], "tls-openai");
        let o = observation(&r);
        let v = json_body(r).await;
        assert_eq!(
            v["choices"][0]["message"]["content"],
            portcullis_testkit::DEFAULT_CONTENT
        );
        let rep = report(&o);
        assert_eq!(rep.outcome, Outcome::Complete);
        assert_eq!(rep.usage.unwrap().total_tokens, 19);

        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.version, Version::HTTP_2, "ALPN chose h2");
        assert_eq!(seen.path, "/v1/chat/completions");
        assert_eq!(seen.body, CHAT.as_bytes());
        // HTTP/2 names the upstream in `:authority`; no `host` header is made for it.
        assert_eq!(seen.header("host"), None);
        let length = CHAT.len().to_string();
        assert_eq!(seen.header("content-length"), Some(length.as_str()));
        assert_eq!(
            seen.header("authorization"),
            Some("Bearer sk-upstream-secret")
        );
        for name in seen.headers.keys() {
            assert!(!name.as_str().starts_with("x-portkey-"), "{name} forwarded");
        }
    }

    #[tokio::test]
    async fn a_stream_over_http2_arrives_whole_with_its_usage() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        let r = send_to(provider(&upstream, trusting(&ca)), chat(CHAT_STREAM)).await;
        assert_eq!(r.status(), 200);
        let o = observation(&r);
        let body = stream_text(r).await;
        assert!(body.contains("\"usage\""), "{body}");
        assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
        let rep = report(&o);
        assert!(rep.stream);
        assert_eq!(rep.outcome, Outcome::Complete);
        assert_eq!(rep.text, portcullis_testkit::DEFAULT_CONTENT);
        assert_eq!(upstream.last_request().unwrap().version, Version::HTTP_2);
    }

    #[tokio::test]
    async fn concurrent_requests_over_http2_all_answer() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        let provider = provider(&upstream, trusting(&ca));
        // The first call opens the connection; the rest are sent at once.
        assert_eq!(send_to(provider.clone(), chat(CHAT)).await.status(), 200);
        let calls: Vec<_> = (0..16)
            .map(|_| tokio::spawn(send_to(provider.clone(), chat(CHAT))))
            .collect();
        for call in calls {
            let r = call.await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(
                json_body(r).await["choices"][0]["message"]["content"],
                portcullis_testkit::DEFAULT_CONTENT
            );
        }
        let seen = upstream.requests();
        assert_eq!(seen.len(), 17);
        assert!(seen.iter().all(|r| r.version == Version::HTTP_2));
    }

    #[tokio::test]
    async fn an_upstream_offering_only_http1_gets_http1_with_its_host() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::Http1).await;
        let r = send_to(provider(&upstream, trusting(&ca)), chat(CHAT)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            json_body(r).await["choices"][0]["message"]["content"],
            portcullis_testkit::DEFAULT_CONTENT
        );
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.version, Version::HTTP_11);
        let host = upstream.addr().to_string();
        assert_eq!(seen.header("host"), Some(host.as_str()));
        assert_eq!(seen.headers.get_all("host").iter().count(), 1);
        assert_eq!(seen.body, CHAT.as_bytes());
    }

    #[tokio::test]
    async fn an_upstream_whose_certificate_is_not_trusted_is_never_called() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        // The webpki roots only: the test's authority is not among them.
        let r = send_to(provider(&upstream, HttpClient::new()), chat(CHAT)).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        let v = json_body(r).await;
        assert_eq!(v["error"]["type"], "upstream_error");
        assert_eq!(v["error"]["code"], "upstream_connect_failed");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("certificate"), "{message}");
        assert_eq!(upstream.hits(), 0);

        // Another authority's certificate is no better.
        let other = TestCa::new();
        let r = send_to(provider(&upstream, trusting(&other)), chat(CHAT)).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(upstream.hits(), 0);
    }

    #[tokio::test]
    async fn a_stream_broken_midway_over_http2_reaches_the_client_as_an_error_event() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        upstream.set(Plan::ok().break_after(2));
        let r = send_to(provider(&upstream, trusting(&ca)), chat(CHAT_STREAM)).await;
        assert_eq!(r.status(), 200);
        let o = observation(&r);
        // The body ends cleanly (`stream_text` refuses a broken one), after an error event.
        let body = stream_text(r).await;
        assert!(body.contains("stream_interrupted"), "{body}");
        assert!(!body.contains("[DONE]"), "{body}");
        assert!(matches!(report(&o).outcome, Outcome::Failed(_)));
        assert_eq!(upstream.last_request().unwrap().version, Version::HTTP_2);
    }

    #[tokio::test]
    async fn an_http2_upstream_that_resets_without_answering_is_502() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        upstream.set(Plan::ok().disconnect());
        let r = send_to(provider(&upstream, trusting(&ca)), chat(CHAT)).await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        let v = json_body(r).await;
        assert_eq!(v["error"]["type"], "upstream_error");
        assert_eq!(v["error"]["code"], "upstream_protocol_error", "{v}");
        assert_eq!(upstream.last_request().unwrap().version, Version::HTTP_2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_http2_upstream_is_504_at_the_response_timeout() {
        let ca = TestCa::new();
        let upstream = FakeUpstream::start_tls(&ca, Alpn::H2AndHttp1).await;
        upstream.set(Plan::ok().delay(std::time::Duration::from_secs(60)));
        let provider = OpenAi::builder(upstream.base_url())
            .client(trusting(&ca))
            .response_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap();
        let r = send_to(provider, chat(CHAT)).await;
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(json_body(r).await["error"]["code"], "upstream_timeout");
        assert_eq!(upstream.last_request().unwrap().version, Version::HTTP_2);
    }

    #[test]
    fn root_certificates_must_be_pem_certificates() {
        let none = HttpClient::builder()
            .add_root_certificates_pem(b"not a certificate")
            .unwrap_err();
        assert_eq!(
            none.to_string(),
            "root certificates: no CERTIFICATE section in the PEM"
        );
        let broken = HttpClient::builder()
            .add_root_certificates_pem(
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            )
            .unwrap_err()
            .to_string();
        assert!(
            broken.starts_with("root certificates: PEM section 1: "),
            "{broken}"
        );
        let not_der = HttpClient::builder()
            .add_root_certificates_pem(
                b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            )
            .unwrap_err()
            .to_string();
        assert!(
            not_der.starts_with("root certificates: PEM section 1: "),
            "{not_der}"
        );
        // A key beside the certificates is read, not trusted; two authorities in one file
        // both count.
        let (a, b) = (TestCa::new(), TestCa::new());
        let both = format!(
            "{}-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n{}",
            a.pem(),
            b.pem()
        );
        assert!(
            HttpClient::builder()
                .add_root_certificates_pem(both.as_bytes())
                .is_ok()
        );
        // Sections are counted over all kinds: the broken one here is the third.
        let third = format!(
            "{}-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n\
             -----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            a.pem()
        );
        let err = HttpClient::builder()
            .add_root_certificates_pem(third.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("root certificates: PEM section 3: "),
            "{err}"
        );
    }
}
