//! Azure OpenAI: the deployment and `api-version` in the URL, the key in `api-key`, over
//! real loopback HTTP.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::FakeUpstream;
use support::{CHAT, CHAT_STREAM, post, start};

#[tokio::test]
async fn azure_openai_puts_the_deployment_and_version_in_the_url_and_the_key_in_api_key() {
    let upstream = FakeUpstream::start().await;
    let gw = start(&format!(
        r#"{{"providers": {{"az": {{"provider": "azure-openai", "base_url": "{}", "deployment_id": "gpt4o-eu", "api_version": "2024-10-21", "api_key": "az-key-1"}}}},
            "config": {{"virtual_key": "az"}}}}"#,
        upstream.url()
    ))
    .await;
    for body in [CHAT, CHAT_STREAM] {
        let e = post(
            gw.addr,
            "/v1/chat/completions",
            &[("authorization", "Bearer client")],
            body,
        )
        .await;
        assert_eq!(e.status, 200, "{}", e.text());
    }
    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.path,
        "/openai/deployments/gpt4o-eu/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(sent.header("api-key"), Some("az-key-1"));
    assert_eq!(
        sent.header("authorization"),
        None,
        "never the client's, never a bearer"
    );
}

#[test]
fn azure_needs_its_resource_and_deployment() {
    for (provider, path) in [
        (
            r#"{"provider": "azure-openai", "deployment_id": "d"}"#,
            "providers.az.base_url",
        ),
        (
            r#"{"provider": "azure-openai", "base_url": "https://x.openai.azure.com"}"#,
            "providers.az.deployment_id",
        ),
        (
            r#"{"provider": "azure-openai", "base_url": "https://x.openai.azure.com", "deployment_id": "a/b"}"#,
            "providers.az.deployment_id",
        ),
    ] {
        let text = format!(r#"{{"providers": {{"az": {provider}}}}}"#);
        let err = portcullis_gateway::Config::parse(&text, &|_| None).unwrap_err();
        assert_eq!(err.path(), path, "{provider}: {err}");
    }
}
