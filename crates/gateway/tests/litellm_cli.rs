//! A LiteLLM `config.yaml` given to the gateway as it is: `Config::load` recognises it, and
//! `portcullis import litellm FILE` prints a Portcullis config that serves the same way.

#[allow(unused_imports)]
mod support;

use portcullis_testkit::FakeUpstream;
use support::{post, start_config};

const YAML: &str = r#"
model_list:
  - model_name: my-model
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: os.environ/LITELLM_CLI_BASE
      api_key: os.environ/LITELLM_CLI_KEY
general_settings:
  master_key: sk-master-123456
"#;

fn env(base: String) -> impl Fn(&str) -> Option<String> {
    move |name| match name {
        "LITELLM_CLI_BASE" => Some(base.clone()),
        "LITELLM_CLI_KEY" => Some("sk-upstream".into()),
        _ => None,
    }
}

#[tokio::test]
async fn a_litellm_yaml_is_served_as_it_is() {
    let upstream = FakeUpstream::start().await;
    let config = portcullis_gateway::Config::parse_any(YAML, &env(upstream.base_url())).unwrap();
    assert_eq!(config.server.listen.port(), 4000, "LiteLLM's port");
    let mut config = config;
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let gw = start_config(config).await;
    let body = r#"{"model":"my-model","messages":[{"role":"user","content":"hi"}]}"#;
    let e = post(gw.addr, "/v1/chat/completions", &[], body).await;
    assert_eq!(e.status, 401, "the master key is a gateway key");
    let auth = [("authorization", "Bearer sk-master-123456")];
    let e = post(gw.addr, "/v1/chat/completions", &auth, body).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let sent = upstream.last_request().unwrap();
    assert_eq!(sent.json()["model"], "gpt-4o-mini");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-upstream"));
}

#[test]
fn the_import_command_prints_a_config() {
    let dir = std::env::temp_dir().join(format!("portcullis-litellm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::write(&file, YAML).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["import", "litellm"])
        .arg(&file)
        .env("LITELLM_CLI_BASE", "http://127.0.0.1:9/v1")
        .env("LITELLM_CLI_KEY", "sk-upstream")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let json = text.split("\n\n").next().unwrap();
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    // Secrets stay references: the printed config holds no key the file did not hold.
    assert!(!text.contains("sk-upstream"), "{text}");
    let env = |name: &str| match name {
        "LITELLM_CLI_BASE" => Some("http://127.0.0.1:9/v1".to_owned()),
        "LITELLM_CLI_KEY" => Some("sk-upstream".to_owned()),
        _ => None,
    };
    portcullis_gateway::Config::from_value(&value, &env).unwrap();
    // A bad file: an error naming the path, exit 1.
    std::fs::write(
        &file,
        "model_list:\n  - model_name: x\n    litellm_params: {model: azure/x}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["import", "litellm"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("model_list[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn endpoints_answer_without_the_v1_prefix_as_litellms_do() {
    let upstream = FakeUpstream::start().await;
    let mut config =
        portcullis_gateway::Config::parse_any(YAML, &env(upstream.base_url())).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let gw = start_config(config).await;
    let auth = [("authorization", "Bearer sk-master-123456")];
    let body = r#"{"model":"my-model","messages":[{"role":"user","content":"hi"}]}"#;
    let e = post(gw.addr, "/chat/completions", &auth, body).await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(
        upstream.last_request().unwrap().path,
        "/v1/chat/completions"
    );
    let stream =
        r#"{"model":"my-model","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let e = post(gw.addr, "/chat/completions", &auth, stream).await;
    assert!(e.text().ends_with("data: [DONE]\n\n"), "{}", e.text());
    let raw = portcullis_testkit::client::request("GET", "/models", &auth, "");
    let e = portcullis_testkit::client::send(gw.addr, &raw).await;
    assert_eq!(e.status, 200, "{}", e.text());
}
