//! The router over real loopback HTTP: Portkey's documented conditional config, each target an
//! OpenAI provider with its own `override_params`, checked at the fake upstreams.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::context::Metadata;
use portcullis_core::{Body, BufferedBody, EdgeLayer, FactHeadersLayer, OverrideParamsLayer};
use portcullis_provider::OpenAi;
use portcullis_route::{BoxTarget, ConditionalRouter};
use portcullis_testkit::FakeUpstream;
use serde_json::{Value, json};
use tower::util::MapRequestLayer;
use tower::{Layer, ServiceBuilder, ServiceExt};

/// Portkey's conditional-routing example: paid users to one model, free users to another.
fn portkey_config() -> Value {
    json!({
        "strategy": {
            "mode": "conditional",
            "conditions": [
                {"query": {"metadata.user_plan": {"$eq": "paid"}}, "then": "paid-model"},
                {"query": {"metadata.user_plan": {"$eq": "free"}}, "then": "free-model"}
            ],
            "default": "free-model"
        },
        "targets": [
            {"name": "paid-model", "override_params": {"model": "gpt-4o"}},
            {"name": "free-model", "override_params": {"model": "gpt-4o-mini"}}
        ]
    })
}

/// A router from a Portkey conditional config, target `i` calling `upstreams[i]`: what the
/// gateway will do, in small.
fn router_from(config: &Value, upstreams: &[&FakeUpstream]) -> ConditionalRouter {
    let mut builder = ConditionalRouter::builder();
    for (target, upstream) in config["targets"].as_array().unwrap().iter().zip(upstreams) {
        let provider = OpenAi::builder(upstream.base_url()).build().unwrap();
        let params = target["override_params"].as_object().unwrap().clone();
        builder = builder.target(
            target["name"].as_str().unwrap(),
            BoxTarget::new(OverrideParamsLayer::new(params).layer(provider)),
        );
    }
    let strategy = &config["strategy"];
    builder = builder.conditions(&strategy["conditions"]).unwrap();
    if let Some(default) = strategy["default"].as_str() {
        builder = builder.default(default);
    }
    builder.build().unwrap()
}

/// Reads `x-portkey-metadata` into the `Metadata` extension (the tag layer's job, later).
fn metadata_from_header(mut req: Request<BufferedBody>) -> Request<BufferedBody> {
    let parsed = req
        .headers()
        .get("x-portkey-metadata")
        .and_then(|v| serde_json::from_slice::<BTreeMap<String, String>>(v.as_bytes()).ok());
    if let Some(map) = parsed {
        req.extensions_mut().insert(Metadata::new(map));
    }
    req
}

async fn send(
    router: ConditionalRouter,
    metadata: Option<&str>,
    body: &'static str,
) -> Response<Body> {
    let stack = ServiceBuilder::new()
        .layer(FactHeadersLayer::new())
        .layer(EdgeLayer::new())
        .layer(MapRequestLayer::new(metadata_from_header))
        .service(router);
    let mut req = Request::post("/v1/chat/completions").header("content-type", "application/json");
    if let Some(metadata) = metadata {
        req = req.header("x-portkey-metadata", metadata);
    }
    let req = req
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    stack.oneshot(req).await.unwrap()
}

async fn json_body(res: Response<Body>) -> Value {
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Explain entanglement"}]}"#;

#[tokio::test]
async fn portkeys_example_routes_each_plan_to_its_model() {
    let paid = FakeUpstream::start().await;
    let free = FakeUpstream::start().await;
    let router = router_from(&portkey_config(), &[&paid, &free]);

    let res = send(router.clone(), Some(r#"{"user_plan": "paid"}"#), CHAT).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-portkey-last-used-option-index"],
        "config.targets[0]"
    );
    let v = json_body(res).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        portcullis_testkit::DEFAULT_CONTENT
    );
    assert_eq!(paid.hits(), 1);
    assert_eq!(free.hits(), 0);
    let seen = paid.last_request().unwrap().json();
    assert_eq!(seen["model"], "gpt-4o", "the paid target's override_params");
    assert_eq!(seen["messages"][0]["content"], "Explain entanglement");

    let res = send(router.clone(), Some(r#"{"user_plan": "free"}"#), CHAT).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-portkey-last-used-option-index"],
        "config.targets[1]"
    );
    assert_eq!(free.hits(), 1);
    assert_eq!(free.last_request().unwrap().json()["model"], "gpt-4o-mini");

    // Another plan, and no metadata at all: the default.
    let res = send(router.clone(), Some(r#"{"user_plan": "trial"}"#), CHAT).await;
    assert_eq!(
        res.headers()["x-portkey-last-used-option-index"],
        "config.targets[1]"
    );
    let res = send(router, None, CHAT).await;
    assert_eq!(res.status(), 200);
    assert_eq!(free.hits(), 3);
    assert_eq!(paid.hits(), 1);
    for seen in free.requests() {
        assert_eq!(seen.json()["model"], "gpt-4o-mini");
    }
}

#[tokio::test]
async fn no_match_without_default_is_400_and_reaches_no_upstream() {
    let paid = FakeUpstream::start().await;
    let free = FakeUpstream::start().await;
    let mut config = portkey_config();
    config["strategy"]
        .as_object_mut()
        .unwrap()
        .remove("default");
    let router = router_from(&config, &[&paid, &free]);
    assert!(!router.has_default());

    let res = send(router, Some(r#"{"user_plan": "trial"}"#), CHAT).await;
    assert_eq!(res.status(), 400);
    assert!(
        !res.headers()
            .contains_key("x-portkey-last-used-option-index")
    );
    let v = json_body(res).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "no_route_matched");
    assert_eq!(paid.hits() + free.hits(), 0);
}

#[tokio::test]
async fn params_and_path_route_and_streams_pass_through() {
    let structured = FakeUpstream::start().await;
    let streaming = FakeUpstream::start().await;
    let other = FakeUpstream::start().await;
    let config = json!({
        "strategy": {
            "mode": "conditional",
            "conditions": [
                {"query": {"params.response_format.type": {"$in": ["json_object", "json_schema"]}},
                 "then": "structured"},
                {"query": {"params.stream": true, "url.pathname": {"$regex": "/chat/completions$"}},
                 "then": "streaming"}
            ],
            "default": "other"
        },
        "targets": [
            {"name": "structured", "override_params": {"model": "gpt-4o"}},
            {"name": "streaming", "override_params": {"temperature": 0}},
            {"name": "other", "override_params": {}}
        ]
    });
    let router = router_from(&config, &[&structured, &streaming, &other]);

    let res = send(
        router.clone(),
        None,
        r#"{"model":"m","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(structured.hits(), 1);
    assert_eq!(structured.last_request().unwrap().json()["model"], "gpt-4o");

    let res = send(
        router.clone(),
        None,
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-portkey-last-used-option-index"],
        "config.targets[1]"
    );
    let text = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(text.starts_with("data: "), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(streaming.hits(), 1);
    assert_eq!(streaming.last_request().unwrap().json()["temperature"], 0);

    let res = send(
        router,
        None,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(other.hits(), 1);
    assert_eq!(other.last_request().unwrap().json()["model"], "m");
    assert_eq!(structured.hits() + streaming.hits(), 2);
}
