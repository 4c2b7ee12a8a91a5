//! LiteLLM configs from LiteLLM's docs, imported and served: each deployment points at a fake
//! upstream (through `api_base: os.environ/…` in the fixture, or a rewritten `base_url`), and
//! every test runs twice, on the imported config and on the one `render` prints.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use portcullis_gateway::litellm::{self, Import};
use portcullis_gateway::{Config, ConfigError};
use portcullis_testkit::gemini::{FakeGemini, Plan as GeminiPlan};
use portcullis_testkit::{FakeUpstream, Plan};
use serde_json::{Value, json};
use support::{post, request, send, start_config};

/// Both ways of serving an import.
const WAYS: [Way; 2] = [Way::Imported, Way::Printed];

#[derive(Clone, Copy, Debug)]
enum Way {
    /// `Import::config` as it is.
    Imported,
    /// The JSON part of `render`, read back.
    Printed,
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/litellm/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    litellm::parse_yaml(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An environment of `vars` only.
fn env(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn import(value: &Value, env: &dyn Fn(&str) -> Option<String>) -> Import {
    assert!(litellm::is_litellm(value));
    litellm::import(value, env).unwrap_or_else(|e| panic!("{e}"))
}

fn import_err(value: &Value, env: &dyn Fn(&str) -> Option<String>) -> ConfigError {
    litellm::import(value, env).expect_err("refused")
}

/// The config to serve, read with `env`, the way `way` says.
fn config(import: &Import, way: Way, env: &dyn Fn(&str) -> Option<String>) -> Config {
    let value = match way {
        Way::Imported => import.config.clone(),
        Way::Printed => {
            let text = litellm::render(import);
            let json = text.split("\n\n").next().unwrap();
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
        }
    };
    Config::from_value(&value, env).unwrap_or_else(|e| panic!("{e}\n{value:#}"))
}

fn chat(model: &str) -> String {
    json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "Say hello"}]})
        .to_string()
}

fn warned(import: &Import, path: &str) -> bool {
    import.warnings.iter().any(|d| d.path == path)
}

#[tokio::test]
async fn gemini_guide_balances_by_rpm_and_falls_back() {
    for way in WAYS {
        // `gemini/` is Google's native API: the deployments point at fake Gemini upstreams.
        let (a, b, flash) = (
            FakeGemini::start().await,
            FakeGemini::start().await,
            FakeGemini::start().await,
        );
        let env = env(&[
            ("GEMINI_API_KEY", "key-one".into()),
            ("GEMINI_API_KEY_2", "key-two".into()),
            ("GEMINI_BASE_A", a.url()),
            ("GEMINI_BASE_B", b.url()),
            ("GEMINI_BASE_FLASH", flash.url()),
        ]);
        let imported = import(&fixture("gemini.yaml"), &env);
        assert!(warned(&imported, "litellm_settings.set_verbose"), "{way:?}");
        assert!(
            !litellm::render(&imported).contains("key-one"),
            "no secret printed"
        );
        let gw = start_config(config(&imported, way, &env)).await;

        let total = 400;
        for _ in 0..total {
            let res = post(gw.addr, "/v1/chat/completions", &[], &chat("gemini-pro")).await;
            assert_eq!(res.status, 200, "{way:?}: {}", res.text());
        }
        // rpm 300 and 100: 3 to 1. 300 of 400 expected, sd ~8.7: five sd either side.
        assert!((256..=344).contains(&a.hits()), "{way:?}: {}", a.hits());
        assert_eq!(a.hits() + b.hits(), total);
        assert_eq!(flash.hits(), 0);
        let (to_a, to_b) = (a.last_request().unwrap(), b.last_request().unwrap());
        assert!(
            to_a.path.contains("/models/gemini-1.5-pro:"),
            "{}",
            to_a.path
        );
        assert!(
            to_b.path.contains("/models/gemini-1.5-pro-002:"),
            "{}",
            to_b.path
        );
        assert_eq!(to_a.header("x-goog-api-key"), Some("key-one"));
        assert_eq!(to_b.header("x-goog-api-key"), Some("key-two"));

        // Both deployments fail: the fallback group answers, with its own model.
        a.set(GeminiPlan::ok().error(503, "overloaded"));
        b.set(GeminiPlan::ok().error(503, "overloaded"));
        let res = post(gw.addr, "/v1/chat/completions", &[], &chat("gemini-pro")).await;
        assert_eq!(res.status, 200, "{way:?}");
        assert_eq!(flash.hits(), 1);
        let to_flash = flash.last_request().unwrap();
        assert!(
            to_flash.path.contains("/models/gemini-1.5-flash:"),
            "{}",
            to_flash.path
        );

        // The flash group has no fallback of its own; an unknown model is refused.
        let res = post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o")).await;
        assert_eq!(res.status, 400, "{way:?}");
        assert_eq!(flash.hits(), 1);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn openai_and_azure_are_served() {
    let vars = [
        ("OPENAI_API_KEY", "sk-openai".to_owned()),
        ("AZURE_API_BASE", "https://x.openai.azure.com".to_owned()),
        ("AZURE_API_KEY", "az".to_owned()),
    ];
    let env = env(&vars);
    let file = fixture("openai_azure.yaml");
    // The Azure deployment imports as an `azure-openai` provider and serves from the group.
    {
        let azure = FakeUpstream::start().await;
        let vars = [
            ("OPENAI_API_KEY", "sk-openai".to_owned()),
            ("AZURE_API_BASE", azure.url()),
            ("AZURE_API_KEY", "az".to_owned()),
        ];
        let env = self::env(&vars);
        let imported = import(&file, &env);
        let az = imported.config["providers"]
            .as_object()
            .unwrap()
            .values()
            .find(|p| p["provider"] == "azure-openai")
            .expect("an azure-openai provider")
            .clone();
        assert_eq!(az["deployment_id"], "my-gpt4o-deployment");
        assert_eq!(az["api_version"], "2024-10-21");
        let mut only_azure = file.clone();
        only_azure["model_list"].as_array_mut().unwrap().remove(0);
        let imported = import(&only_azure, &env);
        let gw = start_config(config(&imported, Way::Imported, &env)).await;
        let res = post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o")).await;
        assert_eq!(res.status, 200, "{}", res.text());
        let sent = azure.last_request().unwrap();
        assert_eq!(
            sent.path,
            "/openai/deployments/my-gpt4o-deployment/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(sent.header("api-key"), Some("az"));
        gw.shutdown().await;
    }

    // Without the Azure deployment, it imports; its leftovers are reported by path.
    let mut file = file;
    file["model_list"].as_array_mut().unwrap().remove(1);
    let imported = import(&file, &env);
    assert!(warned(&imported, "model_list[1].model_info.colour"));
    assert!(warned(
        &imported,
        "model_list[1].litellm_params.temperature"
    ));
    assert!(!warned(&imported, "model_list[1].model_info.description"));
    assert_eq!(
        imported.config["providers"]["gpt-4o-1"]["api_key"],
        "${OPENAI_API_KEY}"
    );
    assert_eq!(imported.config["providers"]["mini-1"]["provider"], "openai");

    for way in WAYS {
        let upstream = FakeUpstream::start().await;
        let mut imported = imported.clone();
        for p in imported.config["providers"]
            .as_object_mut()
            .unwrap()
            .values_mut()
        {
            if p["provider"] == "openai" {
                p["base_url"] = json!(upstream.base_url());
            }
        }
        let gw = start_config(config(&imported, way, &env)).await;
        for (model, upstream_model) in [("gpt-4o", "gpt-4o"), ("gpt-4o-mini", "gpt-4o-mini")] {
            let res = post(gw.addr, "/v1/chat/completions", &[], &chat(model)).await;
            assert_eq!(res.status, 200);
            let sent = upstream.last_request().unwrap();
            assert_eq!(sent.json()["model"], upstream_model);
            assert_eq!(sent.header("authorization"), Some("Bearer sk-openai"));
        }
        // The deployment's default temperature is sent.
        assert_eq!(upstream.last_request().unwrap().json()["temperature"], 0.2);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn ollama_and_vllm_are_openai_compatible_with_aliases_and_a_wildcard() {
    for way in WAYS {
        let (ollama, vllm) = (FakeUpstream::start().await, FakeUpstream::start().await);
        // LiteLLM takes the servers' roots; the import adds `/v1`.
        let env = env(&[
            ("OLLAMA_BASE", ollama.url()),
            ("VLLM_BASE", vllm.url()),
            // An `openai/` base URL is taken as it is, `/v1` included.
            ("VLLM_OPENAI_BASE", vllm.base_url()),
        ]);
        let imported = import(&fixture("local_servers.yaml"), &env);
        assert_eq!(
            imported.config["providers"]["llama3-1"]["provider"],
            "openai-compatible"
        );
        assert_eq!(
            imported.config["providers"]["llama3-1"]["base_url"],
            "${OLLAMA_BASE}/v1"
        );
        let gw = start_config(config(&imported, way, &env)).await;

        for (model, upstream, sent_model) in [
            ("llama3", &ollama, "llama3"),
            ("llama", &ollama, "llama3"),
            ("qwen", &vllm, "Qwen/Qwen2.5-7B-Instruct"),
            // The wildcard group passes any other model on as it is.
            ("mistral-7b", &vllm, "mistral-7b"),
        ] {
            let res = post(gw.addr, "/v1/chat/completions", &[], &chat(model)).await;
            assert_eq!(res.status, 200, "{way:?} {model}");
            let sent = upstream.last_request().unwrap();
            assert_eq!(sent.path, "/v1/chat/completions");
            assert_eq!(sent.json()["model"], sent_model, "{way:?} {model}");
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn least_busy_spreads_in_flight_requests_and_rpm_is_not_a_limit() {
    for way in WAYS {
        let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
        let env = env(&[
            ("BASE_A", a.base_url()),
            ("BASE_B", b.base_url()),
            ("OPENAI_API_KEY", "sk-x".into()),
            ("REDIS_HOST", "localhost".into()),
        ]);
        let imported = import(&fixture("least_busy.yaml"), &env);
        let group = &imported.config["config"]["targets"][0];
        assert_eq!(group["strategy"]["balancer"], "least_in_flight");
        assert!(
            imported.config["providers"]["gpt-3.5-turbo-1"]
                .get("rate_limits")
                .is_none()
        );
        assert!(warned(&imported, "router_settings.colour"));
        assert!(warned(&imported, "router_settings.redis_host"));
        let gw = start_config(config(&imported, way, &env)).await;

        // Slow answers: while one request is in flight at `a`, the next goes to `b`.
        a.set(Plan::ok().delay(Duration::from_millis(300)));
        b.set(Plan::ok().delay(Duration::from_millis(300)));
        let requests: Vec<_> = (0..8)
            .map(|_| {
                let addr = gw.addr;
                tokio::spawn(async move {
                    post(addr, "/v1/chat/completions", &[], &chat("gpt-3.5-turbo")).await
                })
            })
            .collect();
        for r in requests {
            // rpm 2 is a weight for LiteLLM's shuffle, not a limit: 8 requests pass.
            assert_eq!(r.await.unwrap().status, 200);
        }
        assert_eq!(a.hits() + b.hits(), 8);
        assert!(
            (2..=6).contains(&a.hits()),
            "{way:?}: {} / {}",
            a.hits(),
            b.hits()
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn usage_based_routing_enforces_rpm() {
    let mut file = fixture("least_busy.yaml");
    file["router_settings"] = json!({"routing_strategy": "usage-based-routing-v2"});
    for way in WAYS {
        let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
        let env = env(&[
            ("BASE_A", a.base_url()),
            ("BASE_B", b.base_url()),
            ("OPENAI_API_KEY", "sk-x".into()),
        ]);
        let imported = import(&file, &env);
        assert!(warned(&imported, "router_settings.routing_strategy"));
        let gw = start_config(config(&imported, way, &env)).await;
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(
                post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-3.5-turbo"))
                    .await
                    .status,
            );
        }
        // Two deployments of 2 requests a minute each: at most 4 reach an upstream.
        assert!(a.hits() <= 2 && b.hits() <= 2, "{way:?}: {statuses:?}");
        assert!(statuses.contains(&429), "{statuses:?}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn local_cache_answers_repeats_without_calling() {
    for way in WAYS {
        let a = FakeUpstream::start().await;
        let env = env(&[("BASE_A", a.base_url())]);
        let imported = import(&fixture("cache_local.yaml"), &env);
        assert_eq!(
            imported.config["config"]["cache"],
            json!({"mode": "simple", "max_age": 600.0})
        );
        assert_eq!(imported.config["server"]["cache"]["store"], "memory");
        let gw = start_config(config(&imported, way, &env)).await;
        let first = post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o-mini")).await;
        let second = post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o-mini")).await;
        assert_eq!((first.status, second.status), (200, 200));
        assert_eq!(
            second.header("x-portkey-cache-status"),
            Some("HIT"),
            "{way:?}"
        );
        assert_eq!(a.hits(), 1);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn redis_cache_params_become_a_redis_store() {
    let redis = portcullis_testkit::redis::RedisServer::start();
    let port = redis.as_ref().map_or(6379, |r| r.port());
    for way in WAYS {
        let a = FakeUpstream::start().await;
        let env = env(&[
            ("BASE_A", a.base_url()),
            ("REDIS_HOST", "127.0.0.1".into()),
            ("REDIS_PORT", port.to_string()),
            ("REDIS_PASSWORD", "".into()),
        ]);
        let imported = import(&fixture("cache_redis.yaml"), &env);
        let store = &imported.config["server"]["cache"];
        assert_eq!(store["store"], "redis");
        assert_eq!(
            store["url"],
            "redis://:${REDIS_PASSWORD}@${REDIS_HOST}:${REDIS_PORT}"
        );
        assert_eq!(store["prefix"], "litellm.caching:");
        assert_eq!(imported.config["config"]["cache"]["max_age"], 3600.0);
        assert!(warned(
            &imported,
            "litellm_settings.cache_params.supported_call_types"
        ));
        // The test server has no password.
        let mut file = fixture("cache_redis.yaml");
        file["litellm_settings"]["cache_params"]
            .as_object_mut()
            .unwrap()
            .remove("password");
        let imported = import(&file, &env);
        let config = config(&imported, way, &env);
        if redis.is_none() {
            // No redis-server here: the config is still read and built.
            portcullis_gateway::Gateway::new(config).unwrap();
            continue;
        }
        let gw = start_config(config).await;
        // Redis outlives each way's gateway: each asks its own question.
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("{way:?}")}]}).to_string();
        for _ in 0..2 {
            assert_eq!(
                post(gw.addr, "/v1/chat/completions", &[], &body)
                    .await
                    .status,
                200
            );
        }
        assert_eq!(a.hits(), 1, "{way:?}: the second answer came from Redis");
        gw.shutdown().await;
    }
    let env = env(&[("BASE_A", "http://127.0.0.1:1/v1".into())]);
    let err = import_err(&fixture("cache_redis.yaml"), &env);
    assert_eq!(
        err.to_string(),
        "litellm_settings.cache_params.host: environment variable REDIS_HOST is not set"
    );
}

#[tokio::test]
async fn budget_and_master_key() {
    for way in WAYS {
        let a = FakeUpstream::start().await;
        let env = env(&[
            ("BASE_A", a.base_url()),
            ("LITELLM_MASTER_KEY", "sk-master-1234".into()),
        ]);
        let imported = import(&fixture("budget.yaml"), &env);
        assert_eq!(
            imported.config["server"]["limits"][0]["usage_limits"],
            json!({"type": "cost", "credit_limit": 0.00005, "periodic_reset": "monthly"})
        );
        assert!(warned(&imported, "litellm_settings.success_callback"));
        assert!(warned(&imported, "litellm_settings.budget_duration"));
        let gw = start_config(config(&imported, way, &env)).await;
        let key = [("authorization", "Bearer sk-master-1234")];
        // Without the key, and with another.
        assert_eq!(
            post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o-mini"))
                .await
                .status,
            401
        );
        let wrong = request(
            "POST",
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-someone-else")],
            chat("gpt-4o-mini"),
        );
        assert_eq!(send(gw.addr, &wrong).await.status, 401);
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(
                post(gw.addr, "/v1/chat/completions", &key, &chat("gpt-4o-mini"))
                    .await
                    .status,
            );
        }
        // 19 tokens an answer at $1 per million: $0.00005 lasts two or three requests.
        assert_eq!(statuses[0], 200, "{way:?}: {statuses:?}");
        assert!(statuses.contains(&402), "{way:?}: {statuses:?}");
        assert!(a.hits() < 6);
        gw.shutdown().await;
    }
    // The key must be set, and is never shown.
    let err = import_err(
        &fixture("budget.yaml"),
        &env(&[("BASE_A", "http://x".into())]),
    );
    assert_eq!(
        err.to_string(),
        "general_settings.master_key: environment variable LITELLM_MASTER_KEY is not set"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_then_fallback_then_cooldown() {
    for way in WAYS {
        let (primary, fallback) = (FakeUpstream::start().await, FakeUpstream::start().await);
        let env = env(&[
            ("BASE_PRIMARY", primary.base_url()),
            ("BASE_FALLBACK", fallback.base_url()),
        ]);
        let imported = import(&fixture("fallbacks.yaml"), &env);
        let leaf = &imported.config["config"]["targets"][0]["targets"][0];
        assert_eq!(
            leaf["circuit_breaker"],
            json!({"consecutive_failures": 2, "cooldown_ms": 30000})
        );
        assert_eq!(imported.config["config"]["request_timeout"], 10000);
        assert!(warned(
            &imported,
            "litellm_settings.context_window_fallbacks[0].gpt-4o"
        ));
        let gw = start_config(config(&imported, way, &env)).await;

        primary.set(Plan::ok().status(500));
        // num_retries 2: three calls to the group, then the fallback group.
        let res = post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o")).await;
        assert_eq!(res.status, 200, "{way:?}");
        assert_eq!((primary.hits(), fallback.hits()), (3, 1));
        assert_eq!(
            fallback.last_request().unwrap().json()["model"],
            "gpt-4o-mini"
        );

        // allowed_fails 1: a second failure cools the deployment down for 30 s ...
        post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o")).await;
        assert_eq!((primary.hits(), fallback.hits()), (6, 2));
        let res = post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o")).await;
        assert_eq!(res.status, 200);
        assert_eq!(
            (primary.hits(), fallback.hits()),
            (6, 3),
            "{way:?}: skipped while cooling down"
        );

        // ... after which it is called again.
        primary.set(Plan::ok());
        tokio::time::advance(Duration::from_secs(31)).await;
        let res = post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o")).await;
        assert_eq!(res.status, 200);
        assert_eq!((primary.hits(), fallback.hits()), (7, 3), "{way:?}");
        assert_eq!(primary.last_request().unwrap().json()["model"], "gpt-4o");

        // A 400 (a context window too small) moves on too: the context-window fallback.
        primary.set(Plan::ok().status(400));
        let res = post(gw.addr, "/v1/chat/completions", &[], &chat("gpt-4o")).await;
        assert_eq!(res.status, 200);
        assert_eq!(
            (primary.hits(), fallback.hits()),
            (8, 4),
            "{way:?}: a 400 is not retried"
        );
        gw.shutdown().await;
    }
}

#[test]
fn refusals_and_reports_name_their_path() {
    let env = env(&[("KEY", "k".into())]);
    let err = |yaml: &str| {
        let value = litellm::parse_yaml(yaml).unwrap();
        litellm::import(&value, &env).unwrap_err().to_string()
    };
    assert_eq!(
        err(
            "model_list: [{model_name: a, litellm_params: {model: openai/x, api_key: os.environ/NOPE}}]"
        ),
        "model_list[0].litellm_params.api_key: environment variable NOPE is not set"
    );
    assert!(
        err("model_list: [{model_name: a, litellm_params: {model: openai/x, frobnicate: 1}}]")
            .starts_with("model_list[0].litellm_params.frobnicate: not understood")
    );
    assert!(
        err("model_list: [{model_name: a, litellm_params: {model: gpt-4o}}]")
            .starts_with("model_list[0].litellm_params.model: `gpt-4o` names no provider")
    );
    assert!(
        err("model_list: [{model_name: a, litellm_params: {model: vertex_ai/gemini-pro}}]")
            .starts_with("model_list[0].litellm_params.vertex_project: missing")
    );
    assert!(
        err("model_list: [{model_name: a, litellm_params: {model: vertex_ai/gemini-pro, vertex_project: p, vertex_location: r, vertex_credentials: '{\"type\": \"service_account\"}'}}]")
            .contains("write it to a file")
    );
    assert!(
        err("model_list: [{model_name: a, litellm_params: {model: azure/dep}}]")
            .starts_with("model_list[0].litellm_params.api_base: missing")
    );
    assert!(
        err("model_list: [{model_name: a, litellm_params: {model: bedrock/claude}}]")
            .contains("native API")
    );
    let base = "model_list: [{model_name: a, litellm_params: {model: openai/x}}]\n";
    assert!(
        err(&format!(
            "{base}router_settings: {{routing_strategy: cost-based-routing}}"
        ))
        .starts_with("router_settings.routing_strategy: routing strategy `cost-based-routing`")
    );
    assert!(
        err(&format!(
            "{base}litellm_settings: {{max_budget: 10, budget_duration: 2d}}"
        ))
        .starts_with("litellm_settings.budget_duration: `2d`")
    );
    assert!(
        err(&format!(
            "{base}general_settings: {{database_url: postgres://x}}"
        ))
        .starts_with("general_settings.database_url: changes who may call")
    );
    assert!(
        err(&format!(
            "{base}litellm_settings: {{fallbacks: [{{a: [b]}}]}}"
        ))
        .starts_with("litellm_settings.fallbacks[0].a: falls back to `b`")
    );
    assert!(
        err(&format!(
            "{base}litellm_settings: {{cache: true, cache_params: {{type: s3}}}}"
        ))
        .starts_with("litellm_settings.cache_params.type: cache type `s3`")
    );
    assert!(err(&format!("{base}litellm_settings: {{cache: true, cache_params: {{type: redis-semantic, host: h}}}}")).starts_with("litellm_settings.cache_params.similarity_threshold: missing"));
    assert!(err("model_list: []").starts_with("model_list: missing or empty"));

    // Warnings, not errors: what cannot change an answer, a cost or who may call.
    let value = litellm::parse_yaml(&format!(
        "{base}router_settings: {{retry_after: 5, num_retries: \"3\"}}\nlitellm_settings: {{drop_params: \"true\", callbacks: [x]}}\nmystery: 1\n"
    ))
    .unwrap();
    let imported = litellm::import(&value, &env).unwrap();
    for path in [
        "router_settings.retry_after",
        "litellm_settings.drop_params",
        "litellm_settings.callbacks",
        "mystery",
        "server.listen",
        "general_settings.master_key",
    ] {
        assert!(warned(&imported, path), "{path}: {:#?}", imported.warnings);
    }
    assert_eq!(imported.config["server"]["listen"], "127.0.0.1:4000");
    assert_eq!(imported.config["config"]["retry"]["attempts"], 3);
    let printed = litellm::render(&imported);
    assert!(
        printed.contains("\n\nwarning: router_settings.retry_after: "),
        "{printed}"
    );
    // A Portcullis config is not a LiteLLM one.
    assert!(!litellm::is_litellm(
        &json!({"providers": {}, "model_list": []})
    ));
}

#[test]
fn semantic_cache_and_redis_url_variants() {
    let env = env(&[("REDIS_URL", "redis://cache:6379".into())]);
    let value = litellm::parse_yaml(
        "model_list: [{model_name: a, litellm_params: {model: openai/x}}]\nlitellm_settings:\n  cache: true\n  cache_params: {type: redis-semantic, similarity_threshold: 0.8, redis_semantic_cache_embedding_model: text-embedding-3-small}\n",
    )
    .unwrap();
    let imported = litellm::import(&value, &env).unwrap();
    assert_eq!(imported.config["server"]["cache"]["url"], "${REDIS_URL}");
    assert_eq!(
        imported.config["server"]["cache"]["semantic_threshold"],
        0.8
    );
    assert_eq!(imported.config["config"]["cache"]["mode"], "semantic");
    assert!(warned(
        &imported,
        "litellm_settings.cache_params.similarity_threshold"
    ));
    assert!(warned(
        &imported,
        "litellm_settings.cache_params.redis_semantic_cache_embedding_model"
    ));
    Config::from_value(&imported.config, &env).unwrap();
}

#[tokio::test]
async fn order_tries_the_lowest_level_first() {
    let yaml = "model_list:\n\
        - {model_name: m, litellm_params: {model: openai/first, api_base: os.environ/BASE_A, order: 1}}\n\
        - {model_name: m, litellm_params: {model: openai/second, api_base: os.environ/BASE_B, order: 2}}\n\
        router_settings: {num_retries: 0}\n";
    let file = litellm::parse_yaml(yaml).unwrap();
    for way in WAYS {
        let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
        let env = env(&[("BASE_A", a.base_url()), ("BASE_B", b.base_url())]);
        let imported = import(&file, &env);
        assert!(warned(&imported, "model_list[0].litellm_params.order"));
        let gw = start_config(config(&imported, way, &env)).await;
        for _ in 0..5 {
            let res = post(gw.addr, "/v1/chat/completions", &[], &chat("m")).await;
            assert_eq!(res.status, 200);
        }
        assert_eq!(
            (a.hits(), b.hits()),
            (5, 0),
            "{way:?}: the lowest order only"
        );
        a.set(Plan::ok().status(503));
        let res = post(gw.addr, "/v1/chat/completions", &[], &chat("m")).await;
        assert_eq!(res.status, 200);
        assert_eq!(b.last_request().unwrap().json()["model"], "second");
        gw.shutdown().await;
    }
}
