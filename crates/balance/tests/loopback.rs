//! Over real loopback HTTP: two fake upstreams behind OpenAI providers.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use portcullis_balance::{Balance, Strategy, Target};
use portcullis_core::{EdgeLayer, FactHeadersLayer};
use portcullis_provider::OpenAi;
use portcullis_testkit::{FakeUpstream, Plan};
use tower::{Layer, ServiceExt};

use support::{CHI2_P001_DF1, chi_square};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;

fn provider(upstream: &FakeUpstream, name: &str) -> OpenAi {
    OpenAi::builder(upstream.base_url())
        .api_key("sk-test")
        .name(name)
        .build()
        .unwrap()
}

fn chat(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn weights_of_70_and_30_split_real_requests() {
    let (east, west) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let balance = Balance::builder()
        .target(Target::new("east", provider(&east, "east")).weight(0.7))
        .target(Target::new("west", provider(&west, "west")).weight(0.3))
        .seed(42)
        .build()
        .unwrap();
    let stack = FactHeadersLayer::new().layer(EdgeLayer::new().layer(balance));

    const N: usize = 400;
    let mut answered = [0usize; 2];
    for _ in 0..N {
        let response = stack.clone().oneshot(chat(CHAT)).await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        let (index, name) = match headers["x-portkey-last-used-option-index"]
            .to_str()
            .unwrap()
        {
            "config.targets[0]" => (0, "east"),
            "config.targets[1]" => (1, "west"),
            other => panic!("unexpected target path {other}"),
        };
        assert_eq!(headers["x-portkey-provider"], name);
        answered[index] += 1;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["choices"][0]["message"]["content"],
            portcullis_testkit::DEFAULT_CONTENT
        );
    }
    let hits = [east.hits(), west.hits()];
    assert_eq!(
        hits, answered,
        "the headers name the upstream that answered"
    );
    let chi2 = chi_square(&hits, &[0.7, 0.3]);
    assert!(chi2 < CHI2_P001_DF1, "{hits:?}: chi2 {chi2}");
    assert_eq!(east.last_request().unwrap().body, CHAT.as_bytes());
}

#[tokio::test]
async fn least_in_flight_sends_around_an_open_stream_until_it_ends() {
    let (east, west) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let slow_stream = Plan::ok().chunk_delay(Duration::from_millis(20));
    east.set(slow_stream.clone());
    west.set(slow_stream);
    let balance = Balance::builder()
        .target(Target::new("east", provider(&east, "east")))
        .target(Target::new("west", provider(&west, "west")))
        .strategy(Strategy::LeastInFlight)
        .seed(1)
        .build()
        .unwrap();
    let counters = balance.clone();
    let stack = FactHeadersLayer::new().layer(EdgeLayer::new().layer(balance));

    let stream = stack.clone().oneshot(chat(CHAT_STREAM)).await.unwrap();
    assert_eq!(stream.status(), 200);
    let busy = match stream.headers()["x-portkey-last-used-option-index"]
        .to_str()
        .unwrap()
    {
        "config.targets[0]" => 0,
        _ => 1,
    };
    assert_eq!(counters.in_flight(busy), Some(1));

    for _ in 0..10 {
        let response = stack.clone().oneshot(chat(CHAT)).await.unwrap();
        let path = response.headers()["x-portkey-last-used-option-index"].clone();
        assert_eq!(path, format!("config.targets[{}]", 1 - busy).as_str());
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(counters.in_flight(1 - busy), Some(0));
    assert_eq!(
        counters.in_flight(busy),
        Some(1),
        "the stream is still open"
    );

    let text = stream.into_body().collect().await.unwrap().to_bytes();
    assert!(text.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(counters.in_flight(busy), Some(0), "the stream has ended");
    assert_eq!([east.hits(), west.hits()][busy], 1);
}
