//! What a request asks of the cache: the config's `cache` object and Portkey's headers.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use portcullis_core::headers::first_values;
use serde_json::Value;

/// How entries are matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Exact match of everything that can change the answer.
    Simple,
    /// Exact first; then the last user turn compared by meaning within an exact partition.
    Semantic,
}

/// Portkey's `cache: {"mode": .., "max_age": SECONDS}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheSettings {
    /// The mode.
    pub mode: Mode,
    /// How long an answer is kept and served.
    pub max_age: Duration,
}

impl CacheSettings {
    /// The `max_age` when a config gives none: 7 days, as Portkey's hosted cache.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
    /// The longest `max_age`: 90 days (Portkey's hosted maximum).
    pub const MAX_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

    /// `mode` for the default `max_age`.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }

    /// With `max_age`.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Reads Portkey's config value: `{"mode": "simple" | "semantic", "max_age": SECONDS}`
    /// or a bare mode string. `max_age` is any positive number of seconds up to 90 days (a
    /// fraction is allowed). The error says what is wrong, for a caller to prefix with the
    /// path.
    pub fn from_json(value: &Value) -> Result<Self, (String, String)> {
        let mode = |v: &Value, at: &str| match v.as_str() {
            Some("simple") => Ok(Mode::Simple),
            Some("semantic") => Ok(Mode::Semantic),
            _ => Err((
                at.to_owned(),
                format!("expected \"simple\" or \"semantic\", got {v}"),
            )),
        };
        match value {
            Value::String(_) => Ok(Self::new(mode(value, "")?)),
            Value::Object(map) => {
                if let Some(k) = map
                    .keys()
                    .find(|k| !matches!(k.as_str(), "mode" | "max_age"))
                {
                    return Err((k.clone(), "unknown field (expected mode, max_age)".into()));
                }
                let m = match map.get("mode") {
                    Some(v) => mode(v, "mode")?,
                    None => return Err(("mode".into(), "missing (simple or semantic)".into())),
                };
                let mut settings = Self::new(m);
                if let Some(v) = map.get("max_age") {
                    let secs = v
                        .as_f64()
                        .filter(|s| s.is_finite() && *s > 0.0)
                        .ok_or_else(|| {
                            (
                                "max_age".to_owned(),
                                format!("must be a positive number of seconds, got {v}"),
                            )
                        })?;
                    let max_age = Duration::from_secs_f64(secs.min(1e12));
                    if max_age > Self::MAX_MAX_AGE {
                        return Err((
                            "max_age".into(),
                            format!("at most {} seconds (90 days)", Self::MAX_MAX_AGE.as_secs()),
                        ));
                    }
                    settings.max_age = max_age;
                }
                Ok(settings)
            }
            other => Err((
                String::new(),
                format!(
                    "expected an object {{\"mode\", \"max_age\"}} or a mode string, got {other}"
                ),
            )),
        }
    }
}

/// The longest `x-portkey-cache-namespace` accepted.
pub const MAX_NAMESPACE_LEN: usize = 256;

/// What the request's headers ask of the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// `x-portkey-cache` (the older header, still sent by several clients): turns the cache
    /// on for this request with these settings, over the layer's own.
    pub settings: Option<CacheSettings>,
    /// `x-portkey-cache: false`: off for this request.
    pub off: bool,
    /// `x-portkey-cache-force-refresh` (present, and not `false`/`0`), or
    /// `Cache-Control: no-cache`: skip the lookup, call the upstream, store the answer.
    pub refresh: bool,
    /// `Cache-Control: no-store`: neither read nor write the cache.
    pub no_store: bool,
    /// `Cache-Control: max-age=N`: serve nothing older than this.
    pub max_age: Option<Duration>,
    /// `x-portkey-cache-ttl: SECONDS`: keep and serve this request's answer this long.
    pub ttl: Option<Duration>,
    /// `x-portkey-cache-namespace`.
    pub namespace: Option<String>,
}

/// The headers the cache reads, named once (a lookup by `&str` parses the name each time).
pub(crate) mod names {
    use http::HeaderName;

    pub(crate) const CACHE: HeaderName = HeaderName::from_static("x-portkey-cache");
    pub(crate) const FORCE_REFRESH: HeaderName =
        HeaderName::from_static("x-portkey-cache-force-refresh");
    pub(crate) const CACHE_CONTROL: HeaderName = http::header::CACHE_CONTROL;
    pub(crate) const TTL: HeaderName = HeaderName::from_static("x-portkey-cache-ttl");
    pub(crate) const NAMESPACE: HeaderName = HeaderName::from_static("x-portkey-cache-namespace");
}

fn header<'a>(
    value: Option<&'a HeaderValue>,
    name: &http::HeaderName,
) -> Result<Option<&'a str>, String> {
    match value {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| format!("{name}: not visible ASCII")),
    }
}

fn seconds(name: &str, v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 && n <= CacheSettings::MAX_MAX_AGE.as_secs() => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "{name}: must be a whole number of seconds from 1 to {}, got {v:?}",
            CacheSettings::MAX_MAX_AGE.as_secs()
        )),
    }
}

impl Directives {
    /// Reads the cache headers of a request. A header we read but cannot understand is an
    /// error (a 400 for the client), never ignored.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let mut d = Self::default();
        let [cache, force_refresh, cache_control, ttl, namespace] = first_values(
            headers,
            [
                &names::CACHE,
                &names::FORCE_REFRESH,
                &names::CACHE_CONTROL,
                &names::TTL,
                &names::NAMESPACE,
            ],
        );
        if let Some(v) = header(cache, &names::CACHE)? {
            match v.to_ascii_lowercase().as_str() {
                "simple" | "true" => d.settings = Some(CacheSettings::new(Mode::Simple)),
                "semantic" => d.settings = Some(CacheSettings::new(Mode::Semantic)),
                "false" | "off" | "none" => d.off = true,
                _ if v.starts_with('{') => {
                    let value: Value = serde_json::from_str(v)
                        .map_err(|e| format!("x-portkey-cache: not valid JSON: {e}"))?;
                    let s = CacheSettings::from_json(&value).map_err(|(at, why)| {
                        if at.is_empty() {
                            format!("x-portkey-cache: {why}")
                        } else {
                            format!("x-portkey-cache.{at}: {why}")
                        }
                    })?;
                    d.settings = Some(s);
                }
                _ => {
                    return Err(format!(
                        "x-portkey-cache: expected simple, semantic, true, false or {{\"mode\", \"max_age\"}}, got {v:?}"
                    ));
                }
            }
        }
        if let Some(v) = header(force_refresh, &names::FORCE_REFRESH)? {
            d.refresh = !(v.eq_ignore_ascii_case("false") || v == "0");
        }
        if let Some(v) = header(cache_control, &names::CACHE_CONTROL)? {
            for directive in v.split(',').map(str::trim) {
                let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
                match name.trim().to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "no-cache" => d.refresh = true,
                    "max-age" => {
                        let value = value.trim().trim_matches('"');
                        d.max_age = Some(match value.parse::<u64>() {
                            Ok(n) => Duration::from_secs(n),
                            Err(_) => {
                                return Err(format!(
                                    "cache-control: max-age must be a whole number of seconds, got {value:?}"
                                ));
                            }
                        });
                    }
                    // Other request directives (max-stale, only-if-cached, ...) do not apply
                    // to an answer that was computed, not fetched; HTTP lets a cache skip them.
                    _ => {}
                }
            }
        }
        if let Some(v) = header(ttl, &names::TTL)? {
            d.ttl = Some(seconds("x-portkey-cache-ttl", v)?);
        }
        if let Some(v) = header(namespace, &names::NAMESPACE)? {
            if v.is_empty() || v.len() > MAX_NAMESPACE_LEN {
                return Err(format!(
                    "x-portkey-cache-namespace: 1 to {MAX_NAMESPACE_LEN} characters"
                ));
            }
            d.namespace = Some(v.to_owned());
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(pairs: &[(&str, &str)]) -> Result<Directives, String> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Directives::from_headers(&h)
    }

    #[test]
    fn config_values() {
        let s = CacheSettings::from_json(&serde_json::json!({"mode": "semantic", "max_age": 60}))
            .unwrap();
        assert_eq!(s.mode, Mode::Semantic);
        assert_eq!(s.max_age, Duration::from_secs(60));
        let s = CacheSettings::from_json(&serde_json::json!("simple")).unwrap();
        assert_eq!(s.max_age, CacheSettings::DEFAULT_MAX_AGE);
        // Under Portkey's hosted minimum of 60 s is fine here.
        let s = CacheSettings::from_json(&serde_json::json!({"mode": "simple", "max_age": 0.5}))
            .unwrap();
        assert_eq!(s.max_age, Duration::from_millis(500));
        for (bad, at) in [
            (serde_json::json!({"mode": "fuzzy"}), "mode"),
            (serde_json::json!({"max_age": 5}), "mode"),
            (
                serde_json::json!({"mode": "simple", "max_age": 0}),
                "max_age",
            ),
            (
                serde_json::json!({"mode": "simple", "max_age": -1}),
                "max_age",
            ),
            (
                serde_json::json!({"mode": "simple", "max_age": "60"}),
                "max_age",
            ),
            (
                serde_json::json!({"mode": "simple", "max_age": 1e9}),
                "max_age",
            ),
            (serde_json::json!({"mode": "simple", "ttl": 5}), "ttl"),
            (serde_json::json!(true), ""),
        ] {
            assert_eq!(CacheSettings::from_json(&bad).unwrap_err().0, at, "{bad}");
        }
    }

    #[test]
    fn headers() {
        assert_eq!(directives(&[]).unwrap(), Directives::default());
        let d = directives(&[("x-portkey-cache", "semantic")]).unwrap();
        assert_eq!(d.settings.unwrap().mode, Mode::Semantic);
        // langroid sends the config object in the old header.
        let d =
            directives(&[("x-portkey-cache", r#"{"mode": "simple", "max_age": 120}"#)]).unwrap();
        assert_eq!(d.settings.unwrap().max_age, Duration::from_secs(120));
        assert!(directives(&[("x-portkey-cache", "false")]).unwrap().off);
        for v in ["true", "1", "yes", "TRUE"] {
            assert!(
                directives(&[("x-portkey-cache-force-refresh", v)])
                    .unwrap()
                    .refresh,
                "{v}"
            );
        }
        for v in ["false", "0", "False"] {
            assert!(
                !directives(&[("x-portkey-cache-force-refresh", v)])
                    .unwrap()
                    .refresh,
                "{v}"
            );
        }
        let d = directives(&[("cache-control", "no-store, max-age=30")]).unwrap();
        assert!(d.no_store);
        assert_eq!(d.max_age, Some(Duration::from_secs(30)));
        assert!(
            directives(&[("cache-control", "no-cache")])
                .unwrap()
                .refresh
        );
        assert_eq!(
            directives(&[("x-portkey-cache-ttl", "90")]).unwrap().ttl,
            Some(Duration::from_secs(90))
        );
        for bad in [
            ("x-portkey-cache", "fuzzy"),
            ("x-portkey-cache", "{\"mode\":\"x\"}"),
            ("x-portkey-cache", "{nope"),
            ("cache-control", "max-age=soon"),
            ("x-portkey-cache-ttl", "0"),
            ("x-portkey-cache-ttl", "-5"),
        ] {
            let e = directives(&[bad]).unwrap_err();
            assert!(e.starts_with(bad.0), "{e}");
        }
        let long = "n".repeat(MAX_NAMESPACE_LEN + 1);
        assert!(directives(&[("x-portkey-cache-namespace", &long)]).is_err());
    }

    /// Each header the cache reads is found under the name it is defined by, the first of
    /// repeated values taken (as a lookup would), other headers not taken for them.
    #[test]
    fn every_header_is_read_and_the_first_value() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-portkey-cache-x", HeaderValue::from_static("ignored"));
        h.insert("x-portkey-metadata", HeaderValue::from_static("{}"));
        let sent = [
            (names::CACHE, "simple"),
            (names::FORCE_REFRESH, "true"),
            (names::CACHE_CONTROL, "max-age=5"),
            (names::TTL, "60"),
            (names::NAMESPACE, "first"),
        ];
        for (name, value) in &sent {
            h.append(name.clone(), HeaderValue::from_static(value));
            h.append(name.clone(), HeaderValue::from_static("second"));
        }
        let d = Directives::from_headers(&h).unwrap();
        assert_eq!(d.settings.unwrap().mode, Mode::Simple);
        assert!(d.refresh);
        assert_eq!(d.max_age, Some(Duration::from_secs(5)));
        assert_eq!(d.ttl, Some(Duration::from_secs(60)));
        assert_eq!(d.namespace.as_deref(), Some("first"));
        assert_eq!(
            Directives::from_headers(&HeaderMap::new()).unwrap(),
            Directives::default()
        );
    }
}
