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
