//! `litellm_settings.cache` and `cache_params`: the root node's `cache` and `server.cache`.

use serde_json::{Map, Value, json};

use super::read::{Ctx, Result, Section, Unknown};
use crate::config::ConfigError;

/// LiteLLM's in-memory cache keeps entries this long unless told otherwise (seconds).
const LOCAL_TTL: f64 = 600.0;

/// Reads the cache settings; returns the root node's `cache` and fills `server.cache`.
pub(super) fn read(
    ctx: &mut Ctx<'_>,
    module: &mut Section<'_>,
    server: &mut Map<String, Value>,
) -> Result<Option<Value>> {
    let on = module.bool(ctx, "cache")?;
    let params_value = module.raw("cache_params");
    let Some((true, _)) = on else {
        if let Some((_, path)) = params_value {
            ctx.warn(path, "`cache` is not on: ignored");
        }
        return Ok(None);
    };
    let mut params = Section::new(
        params_value.map(|(v, _)| v),
        "litellm_settings.cache_params",
    )?;
    let kind = params
        .str(ctx, "type")?
        .unwrap_or_else(|| ("redis".to_owned(), params.path_of("type")));
    let ttl = params.num(ctx, "ttl")?;
    let memory_ttl = params.num(ctx, "default_in_memory_ttl")?;
    let redis_ttl = params.num(ctx, "default_in_redis_ttl")?;
    let (semantic, store) = match kind.0.as_str() {
        "local" => (false, Store::Memory),
        "redis" => (false, Store::Redis),
        "redis-semantic" => (true, Store::Redis),
        "qdrant-semantic" | "valkey-semantic" => {
            ctx.warn(
                &kind.1,
                format!(
                    "`{}` is kept in this process's memory here (or Redis: `server.cache.store`)",
                    kind.0
                ),
            );
            (true, Store::Memory)
        }
        other => {
            return Err(ConfigError::new(
                &kind.1,
                format!(
                    "cache type `{other}` has no equivalent (local, redis and the semantic types do)"
                ),
            ));
        }
    };
    let mut cache_server = Map::new();
    match store {
        Store::Memory => {
            cache_server.insert("store".to_owned(), json!("memory"));
            for key in ["host", "port", "password", "url", "username", "namespace"] {
                params.report(ctx, key, Unknown::Warning, "not used by an in-memory cache")?;
            }
        }
        Store::Redis => {
            cache_server.insert("store".to_owned(), json!("redis"));
            cache_server.insert(
                "url".to_owned(),
                Value::String(redis_url(ctx, &mut params)?),
            );
            if let Some((ns, _)) = params.str(ctx, "namespace")? {
                cache_server.insert("prefix".to_owned(), Value::String(format!("{ns}:")));
            }
        }
    }
    let mode = if semantic {
        let (threshold, tpath) = params.num(ctx, "similarity_threshold")?.ok_or_else(|| {
            ConfigError::new(
                params.path_of("similarity_threshold"),
                "missing: LiteLLM requires it for a semantic cache",
            )
        })?;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(ConfigError::new(tpath, "must be in (0, 1]"));
        }
        cache_server.insert("semantic_threshold".to_owned(), json!(threshold));
        ctx.warn(
            tpath,
            "the semantic cache here compares requests with its own local text similarity, not an embedding model: \
             scores are not comparable to LiteLLM's, so check the threshold against your traffic",
        );
        params.report(
            ctx,
            "redis_semantic_cache_embedding_model",
            Unknown::Warning,
            "no embedding model is called: the semantic cache uses its own local similarity",
        )?;
        params.report(
            ctx,
            "qdrant_semantic_cache_embedding_model",
            Unknown::Warning,
            "no embedding model is called: the semantic cache uses its own local similarity",
        )?;
        "semantic"
    } else {
        "simple"
    };
    let max_age = match (ttl, store) {
        (Some((s, _)), _) => s,
        (None, Store::Memory) => memory_ttl.map_or(LOCAL_TTL, |(s, _)| s),
        (None, Store::Redis) => match redis_ttl {
            Some((s, _)) => s,
            None => {
                ctx.warn(
                    params.path_of("ttl"),
                    "LiteLLM's Redis entries never expire without a `ttl`; here they expire after 7 days (at most 90)",
                );
                7.0 * 86400.0
            }
        },
    };
    if max_age <= 0.0 {
        return Err(ConfigError::new(
            params.path_of("ttl"),
            "must be > 0 seconds",
        ));
    }
    let opt_in = match params.str(ctx, "mode")? {
        None => false,
        Some((m, _)) if m == "default_on" => false,
        Some((m, path)) if m == "default_off" => {
            ctx.warn(
                path,
                "opt-in caching: a request turns it on with the `x-portkey-cache: simple` header here, not LiteLLM's `cache` body parameter",
            );
            true
        }
        Some((m, path)) => {
            return Err(ConfigError::new(
                path,
                format!("unknown mode `{m}` (default_on or default_off)"),
            ));
        }
    };
    params.report(
        ctx,
        "supported_call_types",
        Unknown::Warning,
        "every cacheable call (chat, completions, embeddings) is cached here",
    )?;
    params.report(
        ctx,
        "ssl",
        Unknown::Error,
        "TLS to Redis is not supported by the cache store yet",
    )?;
    params.finish(ctx, Unknown::Warning, "left out of the imported config")?;
    server.insert("cache".to_owned(), Value::Object(cache_server));
    Ok((!opt_in).then(|| json!({"mode": mode, "max_age": max_age})))
}

#[derive(Clone, Copy)]
enum Store {
    Memory,
    Redis,
}

/// `url`, else `host` / `port` / `password` / `username`, else LiteLLM's environment
/// variables (`REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`).
fn redis_url(ctx: &mut Ctx<'_>, params: &mut Section<'_>) -> Result<String> {
    if let Some((v, path)) = params.raw("url") {
        return check_url(ctx.secret(v, &path)?, &path);
    }
    let field = |ctx: &Ctx<'_>,
                 params: &mut Section<'_>,
                 key: &str,
                 var: &str|
     -> Result<Option<(String, String, String)>> {
        match params.raw(key) {
            Some((v, path)) => {
                let v = match v {
                    Value::Number(n) => Value::String(n.to_string()),
                    other => other.clone(),
                };
                let (text, value) = ctx.secret(&v, &path)?;
                Ok(Some((text, value, path)))
            }
            None => Ok(ctx.var(var).map(|value| {
                (
                    format!("${{{var}}}"),
                    value,
                    format!("environment variable {var}"),
                )
            })),
        }
    };
    let Some((host, _, _)) = field(ctx, params, "host", "REDIS_HOST")? else {
        if ctx.var("REDIS_URL").is_some() {
            return Ok("${REDIS_URL}".to_owned());
        }
        return Err(ConfigError::new(
            params.path_of("host"),
            "missing: a Redis cache needs `host` (or `url`, or REDIS_HOST / REDIS_URL in the environment)",
        ));
    };
    let port = field(ctx, params, "port", "REDIS_PORT")?;
    let password = field(ctx, params, "password", "REDIS_PASSWORD")?;
    let username = field(ctx, params, "username", "REDIS_USERNAME")?;
    let mut userinfo = String::new();
    for (part, sep) in [(&username, ""), (&password, ":")] {
        if let Some((text, value, path)) = part {
            userinfo.push_str(sep);
            userinfo.push_str(&url_part(text, value, path)?);
        }
    }
    let auth = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    let port = port.map_or_else(|| "6379".to_owned(), |(text, _, _)| text);
    Ok(format!("redis://{auth}{host}:{port}"))
}

fn check_url((text, value): (String, String), path: &str) -> Result<String> {
    if !(value.starts_with("redis://") || value.starts_with("redis+unix://")) {
        return Err(ConfigError::new(
            path,
            "must start with redis:// (rediss://, TLS, is not supported by the cache store yet)",
        ));
    }
    Ok(text)
}

/// A user name or password inside a URL: percent-encoded when literal; a variable's value
/// must need no encoding, as it is substituted as it is.
fn url_part(text: &str, value: &str, path: &str) -> Result<String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if value.chars().all(plain) {
        return Ok(text.to_owned());
    }
    if text.starts_with("${") {
        return Err(ConfigError::new(
            path,
            "the variable's value has characters a URL must encode: give `cache_params.url` with it encoded",
        ));
    }
    Ok(value
        .bytes()
        .map(|b| {
            if plain(b as char) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect())
}
