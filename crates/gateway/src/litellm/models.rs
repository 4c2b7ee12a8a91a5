//! `model_list`: each deployment a provider of its own, grouped by `model_name`.

use serde_json::{Map, Value, json};

use super::read::{Ctx, Result, Section, Unknown, index, join, type_name};
use crate::config::ConfigError;

/// One deployment of a group.
#[derive(Debug)]
pub(super) struct Deployment {
    /// Where it is, `model_list[3]`.
    pub(super) path: String,
    /// The provider made of it.
    pub(super) provider: String,
    /// The model sent upstream in place of the client's; `None`: the client's, unchanged (a
    /// wildcard deployment).
    pub(super) model: Option<String>,
    pub(super) weight: Option<f64>,
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    pub(super) order: Option<u64>,
    /// Per attempt, in milliseconds.
    pub(super) timeout_ms: Option<u64>,
    pub(super) retries: Option<(u64, String)>,
    /// `cooldown_time` in milliseconds; `Some(0)`: no cooldown for this deployment.
    pub(super) cooldown_ms: Option<u64>,
    /// Default request parameters (`temperature`, ...).
    pub(super) params: Map<String, Value>,
}

/// A model group: what a client names in `model`.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) name: String,
    /// Indices into [`ModelList::deployments`], in file order.
    pub(super) members: Vec<usize>,
    /// A wildcard group's pattern (`^claude-.*$`); `*` alone is the default group.
    pub(super) pattern: Option<String>,
}

/// The deployments, their groups in order of first appearance, and the providers.
#[derive(Debug, Default)]
pub(super) struct ModelList {
    pub(super) deployments: Vec<Deployment>,
    pub(super) groups: Vec<Group>,
    pub(super) providers: Map<String, Value>,
}

impl ModelList {
    pub(super) fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// How a `litellm_params.model` prefix becomes a provider.
#[derive(Clone, Copy)]
enum Kind {
    /// A provider kind of ours; `api_base` overrides its base URL.
    Native(&'static str),
    /// `openai-compatible` at this base URL (or `api_base`); `None`: `api_base` is required.
    /// `v1`: the URL gets `/v1` unless it ends so (LiteLLM takes the server's root).
    Compatible {
        base: Option<&'static str>,
        v1: bool,
    },
    /// Azure OpenAI: `azure/<deployment>`, `api_base` (the resource), `api_version`.
    Azure,
    /// Gemini on Vertex AI: `vertex_project`, `vertex_location`, `vertex_credentials` (a path).
    Vertex,
    /// A provider whose native API is not available yet.
    Unavailable,
}

const PREFIXES: [(&str, Kind); 20] = [
    ("openai", Kind::Native("openai")),
    ("text-completion-openai", Kind::Native("openai")),
    ("anthropic", Kind::Native("anthropic")),
    ("gemini", Kind::Native("gemini")),
    ("groq", Kind::Native("groq")),
    ("mistral", Kind::Native("mistral-ai")),
    (
        "ollama",
        Kind::Compatible {
            base: Some("http://localhost:11434"),
            v1: true,
        },
    ),
    (
        "ollama_chat",
        Kind::Compatible {
            base: Some("http://localhost:11434"),
            v1: true,
        },
    ),
    (
        "hosted_vllm",
        Kind::Compatible {
            base: None,
            v1: true,
        },
    ),
    (
        "openrouter",
        Kind::Compatible {
            base: Some("https://openrouter.ai/api/v1"),
            v1: false,
        },
    ),
    (
        "deepseek",
        Kind::Compatible {
            base: Some("https://api.deepseek.com/v1"),
            v1: false,
        },
    ),
    (
        "together_ai",
        Kind::Compatible {
            base: Some("https://api.together.xyz/v1"),
            v1: false,
        },
    ),
    (
        "fireworks_ai",
        Kind::Compatible {
            base: Some("https://api.fireworks.ai/inference/v1"),
            v1: false,
        },
    ),
    ("azure", Kind::Azure),
    ("azure_ai", Kind::Unavailable),
    ("vertex_ai", Kind::Vertex),
    ("vertex_ai_beta", Kind::Vertex),
    ("bedrock", Kind::Unavailable),
    ("bedrock_converse", Kind::Unavailable),
    ("sagemaker", Kind::Unavailable),
];

/// OpenAI request parameters a deployment may set as defaults.
const REQUEST_PARAMS: [&str; 18] = [
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "n",
    "response_format",
    "user",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
    "tool_choice",
    "parallel_tool_calls",
    "service_tier",
];

/// `model_info` keys that describe a model and change nothing here.
const INFO: [&str; 10] = [
    "id",
    "mode",
    "description",
    "max_tokens",
    "max_input_tokens",
    "max_output_tokens",
    "input_cost_per_token",
    "output_cost_per_token",
    "base_model",
    "db_model",
];

/// Reads `model_list`. `enforce_limits`: `rpm` / `tpm` become the providers' rate limits.
pub(super) fn read(
    ctx: &mut Ctx<'_>,
    root: &Map<String, Value>,
    enforce_limits: bool,
) -> Result<ModelList> {
    let items = match root.get("model_list") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err(ConfigError::new(
                "model_list",
                "missing or empty: list at least one deployment",
            ));
        }
        Some(other) => {
            return Err(ConfigError::new(
                "model_list",
                format!("must be a list, got {}", type_name(other)),
            ));
        }
    };
    let mut out = ModelList::default();
    for (i, item) in items.iter().enumerate() {
        let path = index("model_list", i);
        let mut entry = Section::new(Some(item), &path)?;
        let (group, gpath) = entry.str(ctx, "model_name")?.ok_or_else(|| {
            ConfigError::new(join(&path, "model_name"), "missing: the group clients name")
        })?;
        if group.is_empty() {
            return Err(ConfigError::new(gpath, "must not be empty"));
        }
        let mut info = Section::new(
            entry.raw("model_info").map(|(v, _)| v),
            &join(&path, "model_info"),
        )?;
        let mut params = Section::new(
            Some(entry.raw("litellm_params").map(|(v, _)| v).ok_or_else(|| {
                ConfigError::new(join(&path, "litellm_params"), "missing: the deployment")
            })?),
            &join(&path, "litellm_params"),
        )?;
        entry.finish(
            ctx,
            Unknown::Warning,
            "a deployment has model_name, litellm_params and model_info",
        )?;

        let n = out
            .groups
            .iter()
            .find(|g| g.name == group)
            .map_or(0, |g| g.members.len())
            + 1;
        let id = info.str(ctx, "id")?.map(|(id, _)| id);
        let name = unique_name(
            id.as_deref().unwrap_or(&format!("{group}-{n}")),
            &out.providers,
        );
        let (provider, model) = provider(ctx, &mut params, &group, &gpath)?;
        let mut provider = provider;
        if let Value::Object(p) = &mut provider {
            p.insert("models".to_owned(), json!([group]));
        }
        let deployment = deployment(
            ctx,
            &mut params,
            &mut info,
            &path,
            name.clone(),
            model,
            &mut provider,
            enforce_limits,
        )?;
        params.finish(
            ctx,
            Unknown::Error,
            "LiteLLM sends unknown deployment parameters to the provider, so ignoring it could change answers; remove it to import",
        )?;
        for key in INFO {
            info.raw(key);
        }
        info.finish(ctx, Unknown::Warning, "left out of the imported config")?;

        out.providers.insert(name, provider);
        let index = out.deployments.len();
        out.deployments.push(deployment);
        match out.groups.iter_mut().find(|g| g.name == group) {
            Some(g) => g.members.push(index),
            None => out.groups.push(Group {
                pattern: pattern(&group),
                name: group,
                members: vec![index],
            }),
        }
    }
    Ok(out)
}

/// The provider of one deployment and the model it sends upstream.
fn provider(
    ctx: &mut Ctx<'_>,
    params: &mut Section<'_>,
    group: &str,
    gpath: &str,
) -> Result<(Value, Option<String>)> {
    let (model, mpath) = params
        .str(ctx, "model")?
        .ok_or_else(|| ConfigError::new(params.path_of("model"), "missing: `provider/model`"))?;
    let custom = params.str(ctx, "custom_llm_provider")?;
    let (prefix, rest) = match (&custom, model.split_once('/')) {
        (Some((p, _)), _) => (
            p.clone(),
            model
                .strip_prefix(&format!("{p}/"))
                .unwrap_or(&model)
                .to_owned(),
        ),
        (None, Some((p, rest))) => (p.to_owned(), rest.to_owned()),
        (None, None) => {
            return Err(ConfigError::new(
                mpath,
                format!(
                    "`{model}` names no provider: write it as `provider/model` (e.g. `openai/{model}`), \
                     as the importer does not guess from LiteLLM's model table"
                ),
            ));
        }
    };
    let kind = PREFIXES
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            let known: Vec<&str> = PREFIXES.iter().map(|(p, _)| *p).collect();
            ConfigError::new(
                &mpath,
                format!(
                    "provider `{prefix}` has no equivalent here (known: {})",
                    known.join(", ")
                ),
            )
        })?;
    let api_base = match params.raw("api_base") {
        Some((v, path)) => Some((ctx.secret(v, &path)?.0, path)),
        None => None,
    };
    let mut p = Map::new();
    match kind {
        Kind::Unavailable => {
            return Err(ConfigError::new(
                mpath,
                format!(
                    "`{prefix}/` needs {prefix}'s native API, which this gateway does not have yet; \
                     an OpenAI-compatible endpoint of the same models can be imported as `openai/MODEL` with `api_base`"
                ),
            ));
        }
        Kind::Azure => {
            let Some((base, _)) = &api_base else {
                return Err(ConfigError::new(
                    params.path_of("api_base"),
                    "missing: `azure/` needs the resource's address (https://NAME.openai.azure.com)",
                ));
            };
            p.insert("provider".to_owned(), json!("azure-openai"));
            p.insert("base_url".to_owned(), json!(base));
            p.insert("deployment_id".to_owned(), json!(rest));
            if let Some((v, path)) = params.raw("api_version") {
                p.insert("api_version".to_owned(), json!(ctx.secret(v, &path)?.0));
            }
        }
        Kind::Vertex => {
            p.insert("provider".to_owned(), json!("vertex-ai"));
            for (from, to, what) in [
                (
                    "vertex_project",
                    "vertex_project",
                    "the Google Cloud project",
                ),
                (
                    "vertex_location",
                    "vertex_region",
                    "the region, e.g. us-central1",
                ),
                (
                    "vertex_credentials",
                    "vertex_service_account_file",
                    "the path of a service-account JSON key",
                ),
            ] {
                let Some((v, path)) = params.raw(from) else {
                    return Err(ConfigError::new(
                        params.path_of(from),
                        format!("missing: `vertex_ai/` needs {what}"),
                    ));
                };
                let value = ctx.secret(v, &path)?.0;
                if to == "vertex_service_account_file" && value.trim_start().starts_with('{') {
                    return Err(ConfigError::new(
                        path,
                        "the key itself in the config: write it to a file and give the file's path",
                    ));
                }
                p.insert(to.to_owned(), json!(value));
            }
            if let Some((base, _)) = &api_base {
                p.insert("base_url".to_owned(), json!(base));
            }
        }
        Kind::Native(kind) => match (&api_base, kind) {
            (Some((base, _)), "openai") => {
                p.insert("provider".to_owned(), json!("openai-compatible"));
                p.insert("base_url".to_owned(), json!(base));
            }
            (Some((base, _)), _) => {
                p.insert("provider".to_owned(), json!(kind));
                p.insert("base_url".to_owned(), json!(base));
            }
            (None, _) => {
                p.insert("provider".to_owned(), json!(kind));
            }
        },
        Kind::Compatible { base, v1 } => {
            let url = match (&api_base, base) {
                (Some((url, _)), _) => url.clone(),
                (None, Some(base)) => base.to_owned(),
                (None, None) => {
                    return Err(ConfigError::new(
                        params.path_of("api_base"),
                        format!("missing: `{prefix}/` needs the server's address"),
                    ));
                }
            };
            let url = url.trim_end_matches('/').to_owned();
            let url = if v1 && !url.ends_with("/v1") {
                format!("{url}/v1")
            } else {
                url
            };
            p.insert("provider".to_owned(), json!("openai-compatible"));
            p.insert("base_url".to_owned(), json!(url));
        }
    }
    if let Some((v, path)) = params.raw("api_key") {
        p.insert("api_key".to_owned(), json!(ctx.secret(v, &path)?.0));
    }
    let mut headers = Map::new();
    if let Some((v, path)) = params.raw("organization") {
        headers.insert(
            "OpenAI-Organization".to_owned(),
            json!(ctx.secret(v, &path)?.0),
        );
    }
    for key in ["extra_headers", "headers"] {
        if let Some((v, path)) = params.raw(key) {
            let Value::Object(map) = v else {
                return Err(ConfigError::new(
                    path,
                    "must be a mapping of header names to values",
                ));
            };
            for (name, value) in map {
                headers.insert(
                    name.clone(),
                    json!(ctx.secret(value, &join(&path, name))?.0),
                );
            }
        }
    }
    if !headers.is_empty() {
        p.insert("headers".to_owned(), Value::Object(headers));
    }
    // A wildcard deployment passes the client's model on; that only works when the group's
    // pattern and the upstream's are the same text around the `*`.
    let model = match (group.contains('*'), rest.contains('*')) {
        (_, false) => Some(rest),
        (true, true) if group == "*" && rest == "*" => None,
        (true, true) if group == rest => None,
        _ => {
            return Err(ConfigError::new(
                gpath,
                format!(
                    "wildcard `{group}` to `{model}` would have to rewrite the client's model name, \
                     which the imported config cannot do: name the group as the upstream names its models (`{rest}`)"
                ),
            ));
        }
    };
    Ok((Value::Object(p), model))
}

#[allow(clippy::too_many_arguments)]
fn deployment(
    ctx: &mut Ctx<'_>,
    params: &mut Section<'_>,
    info: &mut Section<'_>,
    path: &str,
    provider_name: String,
    model: Option<String>,
    provider: &mut Value,
    enforce_limits: bool,
) -> Result<Deployment> {
    let weight = params.num(ctx, "weight")?.map(|(w, _)| w);
    let rpm = params.whole(ctx, "rpm")?.map(|(n, _)| n);
    let tpm = params.whole(ctx, "tpm")?.map(|(n, _)| n);
    let order = params.whole(ctx, "order")?.map(|(n, _)| n);
    let timeout_ms = params
        .num(ctx, "timeout")?
        .map(|(s, _)| (s * 1000.0).round() as u64)
        .filter(|ms| *ms > 0);
    let retries = match params.whole(ctx, "num_retries")? {
        Some(n) => Some(n),
        None => params.whole(ctx, "max_retries")?,
    };
    // Also read when num_retries was given, so it is not reported as unknown.
    params.raw("max_retries");
    let cooldown_ms = match params.num(ctx, "cooldown_time")? {
        Some(c) => Some(c),
        None => info.num(ctx, "cooldown_time")?,
    }
    .map(|(s, _)| (s * 1000.0).round() as u64);

    let Value::Object(p) = provider else {
        unreachable!("providers are objects")
    };
    if enforce_limits {
        let mut rules = Vec::new();
        if let Some(rpm) = rpm {
            rules.push(json!({"type": "requests", "unit": "rpm", "value": rpm}));
        }
        if let Some(tpm) = tpm {
            rules.push(json!({"type": "tokens", "unit": "rpm", "value": tpm}));
        }
        if !rules.is_empty() {
            p.insert("rate_limits".to_owned(), Value::Array(rules));
        }
    }
    let input = match params.num(ctx, "input_cost_per_token")? {
        Some(c) => Some(c),
        None => info.num(ctx, "input_cost_per_token")?,
    };
    let output = match params.num(ctx, "output_cost_per_token")? {
        Some(c) => Some(c),
        None => info.num(ctx, "output_cost_per_token")?,
    };
    if input.is_some() || output.is_some() {
        let Some(model) = &model else {
            return Err(ConfigError::new(
                input.or(output).map(|(_, p)| p).unwrap_or_default(),
                "a price needs a model name: a wildcard deployment has none",
            ));
        };
        let per_million = |c: Option<(f64, String)>| c.map_or(0.0, |(c, _)| c * 1e6);
        p.insert(
            "prices".to_owned(),
            json!({ model: {"input": per_million(input), "output": per_million(output)} }),
        );
    }

    let mut defaults = Map::new();
    for key in REQUEST_PARAMS {
        if let Some((v, vpath)) = params.value(ctx, key)? {
            ctx.warn(
                vpath,
                "a default request parameter becomes `override_params`: here the deployment's value wins over the client's, where LiteLLM lets the client's win",
            );
            defaults.insert(key.to_owned(), v);
        }
    }
    params.report(
        ctx,
        "stream",
        Unknown::Error,
        "the client decides whether an answer streams",
    )?;
    params.report(
        ctx,
        "stream_timeout",
        Unknown::Warning,
        "no separate timeout for streams: `timeout` applies to the response head of every request",
    )?;
    params.report(
        ctx,
        "max_parallel_requests",
        Unknown::Warning,
        "no per-deployment concurrency limit here: `least-busy` routing spreads load by requests in flight",
    )?;
    params.report(ctx, "tags", Unknown::Warning, "tag routing is not imported")?;
    params.report(
        ctx,
        "api_version",
        Unknown::Warning,
        "an API version is an Azure setting: not used by this provider",
    )?;
    params.report(
        ctx,
        "region_name",
        Unknown::Warning,
        "regions are not used by this provider",
    )?;
    params.report(
        ctx,
        "mock_response",
        Unknown::Error,
        "LiteLLM answers with it without calling the provider: use a `mock` provider in the imported config",
    )?;
    info.report(
        ctx,
        "base_model",
        Unknown::Warning,
        "prices come from the upstream model's name here: set `input_cost_per_token` / `output_cost_per_token` to price another",
    )?;
    Ok(Deployment {
        path: path.to_owned(),
        provider: provider_name,
        model,
        weight,
        rpm,
        tpm,
        order,
        timeout_ms,
        retries,
        cooldown_ms,
        params: defaults,
    })
}

/// A provider name from `base`: letters, digits, `-`, `_`, `.`, at most 64, not taken.
fn unique_name(base: &str, taken: &Map<String, Value>) -> String {
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(56)
        .collect();
    let clean = if clean.is_empty() {
        "deployment".to_owned()
    } else {
        clean
    };
    if !taken.contains_key(&clean) {
        return clean;
    }
    (2..)
        .map(|n| format!("{clean}-{n}"))
        .find(|name| !taken.contains_key(name))
        .expect("a free name")
}

/// A wildcard group's pattern, anchored; `None` for a plain group and for `*`, the default.
fn pattern(group: &str) -> Option<String> {
    if !group.contains('*') || group == "*" {
        return None;
    }
    let parts: Vec<String> = group.split('*').map(escape).collect();
    Some(format!("^{}$", parts.join(".*")))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        let mut taken = Map::new();
        assert_eq!(unique_name("gpt-4o/eu 1", &taken), "gpt-4o-eu-1");
        taken.insert("a".into(), Value::Null);
        assert_eq!(unique_name("a", &taken), "a-2");
        assert_eq!(pattern("claude-*").as_deref(), Some("^claude\\-.*$"));
        assert_eq!(pattern("*"), None);
        assert_eq!(pattern("gpt-4o"), None);
    }
}
