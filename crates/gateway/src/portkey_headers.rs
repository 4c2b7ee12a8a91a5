//! Portkey's `x-portkey-*` request headers: each one the gateway knows is acted on, accepted
//! as informational, or refused with a 400 that names it. None is silently ignored; a name
//! the gateway does not know is accepted and logged once.
//!
//! The list is Portkey's (open-source gateway 1.15.2 and its hosted docs; see
//! `shared/reference/portkey-compat.md`).

use std::collections::HashSet;
use std::sync::Mutex;

use http::HeaderMap;

/// What the gateway does with a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Read and acted on.
    Acted,
    /// Sent by the SDKs for information; nothing to act on.
    Informational,
    /// Refused with a 400 saying why.
    Refused(&'static str),
}

const PROVIDER_OPTIONS: &str = "provider options in headers are not supported by this gateway: configure the provider in the server's file";

/// Every header by its full name.
pub(crate) const HEADERS: &[(&str, Rule)] = &[
    ("x-portkey-api-key", Rule::Acted),
    ("x-portkey-config", Rule::Acted),
    ("x-portkey-provider", Rule::Acted),
    ("x-portkey-virtual-key", Rule::Acted),
    ("x-portkey-metadata", Rule::Acted),
    ("x-portkey-trace-id", Rule::Acted),
    ("x-portkey-request-timeout", Rule::Acted),
    ("x-portkey-retry", Rule::Acted),
    ("x-portkey-cache", Rule::Acted),
    ("x-portkey-cache-force-refresh", Rule::Acted),
    ("x-portkey-cache-namespace", Rule::Acted),
    ("x-portkey-cache-ttl", Rule::Acted),
    // Refused as a 400 unless a config is sent instead (see `Shared::select`).
    ("x-portkey-custom-host", Rule::Acted),
    ("x-portkey-package-version", Rule::Informational),
    ("x-portkey-runtime", Rule::Informational),
    ("x-portkey-runtime-version", Rule::Informational),
    // The gateway always answers in OpenAI's shape.
    ("x-portkey-strict-open-ai-compliance", Rule::Informational),
    // Bodies are never logged, so there is nothing for `debug: false` to turn off.
    ("x-portkey-debug", Rule::Informational),
    ("x-portkey-retry-count", Rule::Informational),
    ("x-portkey-mode", Rule::Informational),
    ("x-portkey-span-id", Rule::Informational),
    ("x-portkey-parent-span-id", Rule::Informational),
    ("x-portkey-span-name", Rule::Informational),
    // Headers are never logged.
    ("x-portkey-sensitive-headers", Rule::Informational),
    ("x-portkey-config-version", Rule::Informational),
    ("x-portkey-nitro-mode", Rule::Informational),
    ("x-portkey-fetch-integrated-models", Rule::Informational),
    (
        "x-portkey-forward-headers",
        Rule::Refused(
            "forwarding client headers upstream is not supported by this gateway (refused rather than ignored)",
        ),
    ),
    (
        "x-portkey-default-input-guardrails",
        Rule::Refused("guardrails are set by the operator, not by a request header"),
    ),
    (
        "x-portkey-default-output-guardrails",
        Rule::Refused("guardrails are set by the operator, not by a request header"),
    ),
    (
        "x-portkey-prompt-id",
        Rule::Refused("prompt templates are not supported by this gateway yet"),
    ),
    ("x-portkey-model-type", Rule::Refused(PROVIDER_OPTIONS)),
    (
        "x-portkey-mistral-fim-completion",
        Rule::Refused(PROVIDER_OPTIONS),
    ),
    (
        "x-portkey-huggingface-base-url",
        Rule::Refused("hosts come from the server's providers"),
    ),
];

/// Provider option groups, by prefix: credentials, hosts and provider settings a client
/// would choose. Refused (they would be merged into a provider the client names with BYOK,
/// which this gateway does not offer).
pub(crate) const PROVIDER_PREFIXES: &[&str] = &[
    "x-portkey-openai-",
    "x-portkey-anthropic-",
    "x-portkey-azure-",
    "x-portkey-vertex-",
    "x-portkey-aws-",
    "x-portkey-amz-",
    "x-portkey-amzn-",
    "x-portkey-oracle-",
    "x-portkey-fireworks-",
    "x-portkey-workers-ai-",
    "x-portkey-snowflake-",
    "x-portkey-stability-",
    "x-portkey-provider-",
    "x-portkey-file-",
];

/// The rule for header `name` (lowercase, as `http` keeps names); `None` for a name the
/// gateway does not know.
pub(crate) fn rule(name: &str) -> Option<Rule> {
    if let Some((_, rule)) = HEADERS.iter().find(|(n, _)| *n == name) {
        return Some(*rule);
    }
    PROVIDER_PREFIXES
        .iter()
        .any(|p| name.starts_with(p))
        .then_some(Rule::Refused(PROVIDER_OPTIONS))
}

/// Unknown names already logged (at most [`MAX_LOGGED`]: a client cannot grow it).
static LOGGED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
const MAX_LOGGED: usize = 256;

/// The headers that choose a request's route, provider or time limit: the only ones the
/// gateway's selection (`Shared::byok`, `Shared::select`, `request_timeout`) looks up, named
/// here once for both. The selection reads others (the client's key in `authorization` or
/// `x-api-key`, the gateway key in `x-portkey-api-key`) only once `x-portkey-provider` is
/// found.
pub(crate) mod routing {
    use http::HeaderName;

    pub(crate) const PROVIDER: HeaderName = HeaderName::from_static("x-portkey-provider");
    pub(crate) const VIRTUAL_KEY: HeaderName = HeaderName::from_static("x-portkey-virtual-key");
    pub(crate) const CONFIG: HeaderName = HeaderName::from_static("x-portkey-config");
    pub(crate) const RETRY: HeaderName = HeaderName::from_static("x-portkey-retry");
    pub(crate) const CUSTOM_HOST: HeaderName = HeaderName::from_static("x-portkey-custom-host");
    pub(crate) const REQUEST_TIMEOUT: HeaderName =
        HeaderName::from_static("x-portkey-request-timeout");

    /// Every one of them.
    pub(crate) static ALL: [HeaderName; 6] = [
        PROVIDER,
        VIRTUAL_KEY,
        CONFIG,
        RETRY,
        CUSTOM_HOST,
        REQUEST_TIMEOUT,
    ];
}

/// Checks every `x-portkey-*` header: `Err((name, why))` for the first refused one, else
/// whether one of the [`routing`] headers is there (without one, the selection has nothing to find, and
/// its lookups, each hashing a name, are skipped).
pub(crate) fn check(headers: &HeaderMap) -> Result<bool, (String, &'static str)> {
    let mut routing = false;
    for name in headers.keys() {
        let name = name.as_str();
        let Some(rest) = name.strip_prefix("x-portkey-") else {
            continue;
        };
        match rule(name) {
            Some(Rule::Acted) => {
                routing = routing || routing::ALL.iter().any(|h| h.as_str() == name);
            }
            Some(Rule::Informational) => {}
            Some(Rule::Refused(why)) => return Err((name.to_owned(), why)),
            None => log_unknown(name, rest),
        }
    }
    Ok(routing)
}

fn log_unknown(name: &str, _rest: &str) {
    let mut logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    let logged = logged.get_or_insert_with(HashSet::new);
    if logged.len() < MAX_LOGGED && logged.insert(name.to_owned()) {
        tracing::warn!(
            header = name,
            "unknown x-portkey header: accepted, not acted on (logged once per name)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_portkey_documents_has_a_rule() {
        // From portkey-compat.md: what the SDK sends, what OSS acts on, the informational
        // and hosted-only ones, and the provider groups.
        let documented = [
            "x-portkey-api-key",
            "x-portkey-package-version",
            "x-portkey-runtime",
            "x-portkey-runtime-version",
            "x-portkey-strict-open-ai-compliance",
            "x-portkey-config",
            "x-portkey-provider",
            "x-portkey-custom-host",
            "x-portkey-virtual-key",
            "x-portkey-trace-id",
            "x-portkey-metadata",
            "x-portkey-forward-headers",
            "x-portkey-request-timeout",
            "x-portkey-cache-force-refresh",
            "x-portkey-cache-namespace",
            "x-portkey-debug",
            "x-portkey-default-input-guardrails",
            "x-portkey-default-output-guardrails",
            "x-portkey-retry-count",
            "x-portkey-mode",
            "x-portkey-cache",
            "x-portkey-cache-ttl",
            "x-portkey-config-version",
            "x-portkey-span-id",
            "x-portkey-parent-span-id",
            "x-portkey-span-name",
            "x-portkey-sensitive-headers",
            "x-portkey-nitro-mode",
            "x-portkey-prompt-id",
            "x-portkey-fetch-integrated-models",
            "x-portkey-openai-project",
            "x-portkey-openai-organization",
            "x-portkey-openai-beta",
            "x-portkey-anthropic-beta",
            "x-portkey-anthropic-version",
            "x-portkey-azure-resource-name",
            "x-portkey-azure-deployment-id",
            "x-portkey-azure-api-version",
            "x-portkey-vertex-project-id",
            "x-portkey-vertex-region",
            "x-portkey-vertex-service-account-json",
            "x-portkey-aws-access-key-id",
            "x-portkey-aws-secret-access-key",
            "x-portkey-amz-server-side-encryption",
            "x-portkey-amzn-sagemaker-custom-attributes",
            "x-portkey-oracle-region",
            "x-portkey-fireworks-account-id",
            "x-portkey-workers-ai-account-id",
            "x-portkey-snowflake-account",
            "x-portkey-stability-client-id",
            "x-portkey-huggingface-base-url",
            "x-portkey-mistral-fim-completion",
            "x-portkey-provider-model",
            "x-portkey-file-purpose",
            "x-portkey-model-type",
            "x-portkey-retry",
        ];
        for name in documented {
            assert!(rule(name).is_some(), "{name} has no rule");
        }
        // Credentials and hosts are never taken from a client.
        for name in [
            "x-portkey-aws-secret-access-key",
            "x-portkey-vertex-service-account-json",
            "x-portkey-azure-resource-name",
            "x-portkey-huggingface-base-url",
        ] {
            assert!(matches!(rule(name), Some(Rule::Refused(_))), "{name}");
        }
        assert_eq!(rule("x-portkey-something-new"), None);
    }

    #[test]
    fn only_the_routing_headers_send_a_request_through_the_selection() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, http::HeaderValue::from_static(value));
            }
            check(&headers)
        };
        assert_eq!(with(&[]), Ok(false));
        // Read by later layers (tag, cache), or informational.
        assert_eq!(
            with(&[
                ("x-portkey-metadata", "{}"),
                ("x-portkey-trace-id", "t"),
                ("x-portkey-cache", "simple"),
                ("x-portkey-cache-namespace", "n"),
                ("x-portkey-runtime", "node"),
                ("x-portkey-api-key", "k"),
                ("authorization", "Bearer k"),
            ]),
            Ok(false)
        );
        for name in &routing::ALL {
            assert_eq!(rule(name.as_str()), Some(Rule::Acted), "{name}");
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), http::HeaderValue::from_static("x"));
            headers.insert("x-portkey-metadata", http::HeaderValue::from_static("{}"));
            assert_eq!(check(&headers), Ok(true), "{name}");
        }
    }
}
