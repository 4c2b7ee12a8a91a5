//! The `rustls` feature (default) lets providers reach `https://` upstreams; a gateway built
//! without it refuses an `https://` base URL when it starts, and says what to enable.

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
