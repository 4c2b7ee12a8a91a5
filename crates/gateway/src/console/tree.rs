//! The routing trees of the running config as the console draws them, with each leaf's
//! circuit-breaker state.

use std::collections::BTreeMap;

use portcullis_breaker::State;
use serde_json::{Value, json};

use crate::config::{Balancer, Config, Mode, Node, NodeKind, ProviderKind};

fn kind(kind: &ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi(spec) if spec.azure_api_version.is_some() => "azure-openai",
        ProviderKind::OpenAi(_) => "openai-compatible",
        ProviderKind::Anthropic(_) => "anthropic",
        ProviderKind::Gemini(_) => "google",
        ProviderKind::Mock(_) => "mock",
    }
}

/// `{"routing": NODE, "configs": {ID: NODE}, "providers": [...]}`; `breakers` maps a leaf's
/// path to its provider's breaker state.
pub(crate) fn tree_document(
    config: &Config,
    breakers: &BTreeMap<(String, String), State>,
) -> Value {
    let providers: Vec<Value> = config
        .providers
        .iter()
        .map(|(name, p)| json!({"name": name, "kind": kind(&p.kind), "models": p.models}))
        .collect();
    let configs: serde_json::Map<String, Value> = config
        .configs
        .iter()
        .map(|(id, node)| (id.clone(), node_json(node, breakers)))
        .collect();
    json!({
        "routing": config.routing.as_ref().map(|n| node_json(n, breakers)),
        "configs": configs,
        "providers": providers,
    })
}

fn node_json(node: &Node, breakers: &BTreeMap<(String, String), State>) -> Value {
    let mut doc = json!({
        "path": node.path,
        "name": node.name,
        "weight": node.weight,
        "retry": node.retry.as_ref().map(|r| r.attempts),
        "cache": node.cache.as_ref().map(|c| format!("{:?}", c.mode).to_lowercase()),
        "breaker": node.breaker.is_some(),
        "guards": node.hooks.is_some(),
    });
    match &node.kind {
        NodeKind::Leaf { provider } => {
            doc["provider"] = Value::from(provider.as_str());
            let state = breakers.get(&(node.path.clone(), provider.clone()));
            doc["breaker_state"] = match state {
                Some(State::Closed) => "closed".into(),
                Some(State::Open) => "open".into(),
                Some(State::HalfOpen) => "half_open".into(),
                None => Value::Null,
            };
        }
        NodeKind::Group {
            mode,
            balancer,
            targets,
            ..
        } => {
            doc["mode"] = Value::from(mode.as_str());
            if *mode == Mode::LoadBalance {
                doc["balancer"] = Value::from(match balancer {
                    Balancer::Weighted => "weighted",
                    Balancer::Sticky(_) => "sticky",
                    Balancer::LeastInFlight => "least_in_flight",
                    Balancer::PeakEwma => "peak_ewma",
                });
            }
            doc["targets"] = targets.iter().map(|t| node_json(t, breakers)).collect();
        }
    }
    doc
}
