//! Bounded work per request: `server.max_attempts` and `server.header_config`, what a client's
//! `x-portkey-config` may ask of the gateway.
//!
//! A header config is read under [`HeaderConfigLimits`] before anything of it is compiled, so
//! a hostile one (a regex bomb, 330 fallback targets, deep nesting) is refused with a 400 that
//! names its path, at the cost of reading at most 16 KiB of JSON. Operators can turn header
//! configs off (`enabled: false`, answered 403) or allow them only to named gateway keys
//! (`allowed_keys`, other keys answered 403).
//!
//! ```json
//! "server": {
//!   "api_keys": { "team-a": "${TEAM_A_KEY}", "ci": "${CI_KEY}" },
//!   "max_attempts": 10,
//!   "header_config": {
//!     "enabled": true,
//!     "allowed_keys": ["team-a"],
//!     "max_nodes": 64, "max_depth": 4, "max_targets": 32, "max_conditions": 64,
//!     "max_regex_len": 256, "regex_size_limit": 262144, "regex_dfa_size_limit": 262144,
//!     "max_retry_attempts": 5, "cache_bytes": 33554432
//!   }
//! }
//! ```

use std::ops::RangeInclusive;
use std::time::Duration;

use portcullis_route::RegexLimits;
use serde_json::Value;

use super::reader::{ConfigError, Obj, Result, items};

/// The default of [`Server::max_attempts`](super::Server::max_attempts).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// The default of [`Server::request_timeout`](super::Server::request_timeout): the time a
/// request may take to its response head, across every retry and fallback (600 s, the
/// OpenAI SDK's own default and one attempt's default response timeout).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The longest `x-portkey-config` accepted, in bytes.
pub const MAX_HEADER_CONFIG_BYTES: usize = 16 * 1024;

/// What a client's `x-portkey-config` may ask for (`server.header_config`). Every limit is
/// checked while the header is read, before anything of it is compiled.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderConfigLimits {
    /// Whether clients may send header configs at all (default true; refused with 403 when
    /// off).
    pub enabled: bool,
    /// The gateway keys (by name) whose callers may send header configs; `None` (the
    /// default): every caller.
    pub allowed_keys: Option<Vec<String>>,
    /// The most targets in the whole tree, the root included (default 64).
    pub max_nodes: usize,
    /// The deepest nesting of targets below the root (default 4).
    pub max_depth: usize,
    /// The most targets of one strategy (default 32).
    pub max_targets: usize,
    /// The most conditions and condition tests in all queries of the tree: each condition,
    /// and each field, operator and `$and` / `$or` in its query, counts one (default 64).
    pub max_conditions: usize,
    /// The longest `$regex` source, in bytes (default 256).
    pub max_regex_len: usize,
    /// The largest compiled `$regex` program, in bytes (default 256 KiB).
    pub regex_size_limit: usize,
    /// The largest lazy-DFA cache of one `$regex`, in bytes (default 256 KiB).
    pub regex_dfa_size_limit: usize,
    /// The highest `retry.attempts` (default 5, Portkey's own cap).
    pub max_retry_attempts: u32,
    /// The memory the compiled header configs kept for reuse may take, estimated, in bytes
    /// (default 32 MiB; 0 keeps none, so each request compiles its own).
    pub cache_bytes: usize,
}

impl Default for HeaderConfigLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_keys: None,
            max_nodes: 64,
            max_depth: 4,
            max_targets: 32,
            max_conditions: 64,
            max_regex_len: 256,
            regex_size_limit: RegexLimits::DEFAULT_SIZE_LIMIT,
            regex_dfa_size_limit: RegexLimits::DEFAULT_DFA_SIZE_LIMIT,
            max_retry_attempts: 5,
            cache_bytes: 32 * 1024 * 1024,
        }
    }
}

impl HeaderConfigLimits {
    /// The limits its regexes are compiled within.
    pub fn regex_limits(&self) -> RegexLimits {
        RegexLimits::default()
            .size_limit(self.regex_size_limit)
            .dfa_size_limit(self.regex_dfa_size_limit)
            .max_len(self.max_regex_len)
    }

    /// Whether the caller holding the gateway key named `key` (`None`: no key, when the server
    /// requires none) may send a header config.
    pub fn allows(&self, key: Option<&str>) -> bool {
        self.enabled
            && match &self.allowed_keys {
                None => true,
                Some(names) => key.is_some_and(|k| names.iter().any(|n| n == k)),
            }
    }
}

/// `server.max_attempts`: upstream calls one request may make across all its retries and
/// fallbacks.
pub(super) fn parse_max_attempts(obj: &mut Obj<'_>, key: &str) -> Result<Option<u32>> {
    Ok(obj.range(key, 1..=10_000)?.map(|n| n as u32))
}

/// `server.header_config`; `api_keys` are the names of the server's gateway keys.
pub(super) fn parse_header_config(
    v: Option<(&Value, String)>,
    api_keys: &[(String, String)],
) -> Result<HeaderConfigLimits> {
    let mut limits = HeaderConfigLimits::default();
    let Some((v, path)) = v else {
        return Ok(limits);
    };
    let mut obj = Obj::new(v, &path)?;
    if let Some((on, _)) = obj.bool("enabled")? {
        limits.enabled = on;
    }
    limits.allowed_keys = allowed_keys(&mut obj, api_keys)?;
    // Each limit in its range, in this order (the first one out of range is reported).
    let counts: [(&str, RangeInclusive<u64>, &mut usize); 8] = [
        ("max_nodes", 1..=100_000, &mut limits.max_nodes),
        ("max_depth", 0..=12, &mut limits.max_depth),
        ("max_targets", 1..=65_536, &mut limits.max_targets),
        ("max_conditions", 0..=100_000, &mut limits.max_conditions),
        ("max_regex_len", 1..=1 << 20, &mut limits.max_regex_len),
        (
            "regex_size_limit",
            1024..=1 << 30,
            &mut limits.regex_size_limit,
        ),
        (
            "regex_dfa_size_limit",
            1024..=1 << 30,
            &mut limits.regex_dfa_size_limit,
        ),
        ("cache_bytes", 0..=1 << 40, &mut limits.cache_bytes),
    ];
    for (key, allowed, into) in counts {
        if let Some(n) = obj.range(key, allowed)? {
            *into = usize::try_from(n).unwrap_or(usize::MAX);
        }
    }
    if let Some(n) = obj.range("max_retry_attempts", 0..=10)? {
        limits.max_retry_attempts = n as u32;
    }
    obj.finish(
        " (expected enabled, allowed_keys, max_nodes, max_depth, max_targets, max_conditions, \
         max_regex_len, regex_size_limit, regex_dfa_size_limit, max_retry_attempts, cache_bytes)",
    )?;
    Ok(limits)
}

/// `header_config.allowed_keys`: names of the server's gateway keys.
fn allowed_keys(obj: &mut Obj<'_>, api_keys: &[(String, String)]) -> Result<Option<Vec<String>>> {
    let Some((values, path)) = obj.array("allowed_keys")? else {
        return Ok(None);
    };
    if api_keys.is_empty() {
        return Err(ConfigError::new(
            path,
            "names gateway keys, but `server.api_keys` defines none",
        ));
    }
    let names = items(values, &path, |item| {
        let name = item.as_str().ok_or("must be the name of a gateway key")?;
        if !api_keys.iter().any(|(n, _)| n == name) {
            return Err(format!("`{name}` is not a key of `server.api_keys`"));
        }
        Ok(name.to_owned())
    })?;
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys() -> Vec<(String, String)> {
        vec![("team-a".into(), "key-aaaa-1111".into())]
    }

    fn parse(v: Value) -> Result<HeaderConfigLimits> {
        parse_header_config(Some((&v, "server.header_config".into())), &keys())
    }

    #[test]
    fn defaults_are_safe() {
        let d = parse_header_config(None, &[]).unwrap();
        assert_eq!(d, HeaderConfigLimits::default());
        assert!(d.enabled && d.allowed_keys.is_none());
        assert_eq!(d.max_retry_attempts, 5);
        assert!(d.allows(None) && d.allows(Some("anyone")));
    }

    #[test]
    fn reads_every_limit() {
        let l = parse(json!({
            "enabled": true, "allowed_keys": ["team-a"], "max_nodes": 400, "max_depth": 2,
            "max_targets": 400, "max_conditions": 0, "max_regex_len": 10,
            "regex_size_limit": 4096, "regex_dfa_size_limit": 8192, "max_retry_attempts": 10,
            "cache_bytes": 0
        }))
        .unwrap();
        assert_eq!((l.max_nodes, l.max_depth, l.max_targets), (400, 2, 400));
        assert_eq!(
            (l.max_conditions, l.max_regex_len, l.cache_bytes),
            (0, 10, 0)
        );
        assert_eq!(l.max_retry_attempts, 10);
        assert_eq!(
            l.regex_limits(),
            RegexLimits::default()
                .size_limit(4096)
                .dfa_size_limit(8192)
                .max_len(10)
        );
        assert!(l.allows(Some("team-a")));
        assert!(!l.allows(Some("ci")) && !l.allows(None));
        let off = parse(json!({"enabled": false})).unwrap();
        assert!(!off.allows(Some("team-a")));
    }

    #[test]
    fn errors_name_their_path() {
        let err = |v: Value| parse(v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"max_retry_attempts": 11})),
            "server.header_config.max_retry_attempts: must be 0 to 10, got 11"
        );
        assert_eq!(
            err(json!({"allowed_keys": ["nobody"]})),
            "server.header_config.allowed_keys[0]: `nobody` is not a key of `server.api_keys`"
        );
        assert!(err(json!({"colour": 1})).starts_with("server.header_config.colour: unknown key"));
        let v = json!({"allowed_keys": ["team-a"]});
        assert!(
            parse_header_config(Some((&v, "server.header_config".into())), &[])
                .unwrap_err()
                .to_string()
                .contains("defines none")
        );
    }
}
