//! The metrics the tag layer records through the [`metrics`] facade, and their labels.
//!
//! Every metric carries the labels `provider`, `model` and `target`, then one label per
//! allow-listed metadata key (`metadata_KEY`); the request count and the request duration
//! also carry `status`. Label values are bounded: each label keeps at most a fixed number
//! of distinct values (64 by default), then records `other`.
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `portcullis_requests_total` | counter | requests answered, by status (recorded at the response head) |
//! | `portcullis_request_duration_seconds` | histogram | request start to the end of the response body (to the head when the body is not observed) |
//! | `portcullis_time_to_first_token_seconds` | histogram | request start to the first frame of a streamed (`text/event-stream`) body |
//! | `portcullis_input_tokens_total` | counter | `usage.prompt_tokens` |
//! | `portcullis_output_tokens_total` | counter | `usage.completion_tokens` |
//! | `portcullis_retries_total` | counter | retries made (`ResponseFacts::retries`) |
//! | `portcullis_retries_exhausted_total` | counter | answers after every allowed retry failed |
//! | `portcullis_fallbacks_total` | counter | answers from a target other than the first (any index of the target path non-zero) |
//!
//! `status` is the HTTP status of the answer: the response's, the one an inner error will be
//! answered with (its provider is then `unknown`), or 499 for a request dropped before its
//! answer. A missing provider or model is `unknown`; `target` is `none` without a multi-target
//! layer, else Portkey's `config.targets[1].targets[0]` form; an absent metadata key is empty.
//!
//! Later layers register theirs the same way: a `portcullis_` prefix, a unit suffix
//! (`_seconds`, `_tokens_total`), a `describe_*!` call in their own `describe()`, and the
//! same bounded `provider`/`model`/`target` labels.
//!
//! ```
//! use metrics_util::debugging::DebuggingRecorder;
//! use portcullis_tag::meter;
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     meter::describe();
//!     metrics::counter!(meter::REQUESTS_TOTAL, "status" => "200").increment(1);
//! });
//! assert_eq!(snapshotter.snapshot().into_vec().len(), 1);
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock, RwLock};

use http::StatusCode;
use metrics::{Counter, Histogram, Label, SharedString, Unit};
use portcullis_core::context::{Metadata, TargetPath};
use portcullis_core::facts::CacheStatus;

/// Requests answered, by status.
pub const REQUESTS_TOTAL: &str = "portcullis_requests_total";
/// Request duration in seconds, to the end of the response body.
pub const REQUEST_DURATION: &str = "portcullis_request_duration_seconds";
/// Time to the first frame of a streamed body, in seconds.
pub const TIME_TO_FIRST_TOKEN: &str = "portcullis_time_to_first_token_seconds";
/// Prompt tokens.
pub const INPUT_TOKENS: &str = "portcullis_input_tokens_total";
/// Completion tokens.
pub const OUTPUT_TOKENS: &str = "portcullis_output_tokens_total";
/// Retries made.
pub const RETRIES: &str = "portcullis_retries_total";
/// Answers given after every allowed retry failed.
pub const RETRIES_EXHAUSTED: &str = "portcullis_retries_exhausted_total";
/// Answers from a target other than the first.
pub const FALLBACKS: &str = "portcullis_fallbacks_total";
/// Cache lookups, by `cache_status` (`HIT`, `SEMANTIC HIT`, `MISS`, `SEMANTIC MISS`,
/// `REFRESH`; requests with the cache off are not counted).
pub const CACHE_LOOKUPS: &str = "portcullis_cache_lookups_total";

/// Histogram buckets for the request duration, in seconds (LLM calls take up to minutes).
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Histogram buckets for the time to first token, in seconds.
pub const TTFT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// The default number of distinct values a label keeps before recording `other`.
pub const DEFAULT_LABEL_CAP: usize = 64;

/// The value recorded once a label has reached its cap.
pub const OTHER: &str = "other";

/// Describes the tag layer's metrics (help text and units) to the current recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(REQUESTS_TOTAL, "LLM requests answered, by status.");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from the request to the end of its response body."
    );
    describe_histogram!(
        TIME_TO_FIRST_TOKEN,
        Unit::Seconds,
        "Time from the request to the first frame of a streamed response."
    );
    describe_counter!(INPUT_TOKENS, Unit::Count, "Prompt tokens, from the usage.");
    describe_counter!(
        OUTPUT_TOKENS,
        Unit::Count,
        "Completion tokens, from the usage."
    );
    describe_counter!(RETRIES, "Retries made before the answer.");
    describe_counter!(
        RETRIES_EXHAUSTED,
        "Answers given after every allowed retry failed."
    );
    describe_counter!(FALLBACKS, "Answers from a target other than the first.");
    describe_counter!(CACHE_LOOKUPS, "Cache lookups, by cache status.");
}

/// The most metadata keys that may become labels.
pub const MAX_METADATA_LABELS: usize = 8;

/// Label value ids that stand for no recorded value.
const OTHER_ID: u32 = u32::MAX;
const UNKNOWN_ID: u32 = u32::MAX - 1;
const NONE_ID: u32 = u32::MAX - 2;
const ROOT_ID: u32 = u32::MAX - 3;
const EMPTY_ID: u32 = u32::MAX - 4;

/// FNV-1a: a fast hash for the small maps of label values and label sets (bounded by the
/// caps, so a client choosing colliding model names gains nothing).
#[derive(Clone, Copy, Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x0000_0100_0000_01b3);
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// The distinct values one label has recorded, up to a cap, each with a small id.
#[derive(Debug)]
struct Cap {
    limit: usize,
    seen: RwLock<CapValues>,
}

#[derive(Debug, Default)]
struct CapValues {
    ids: FnvMap<Arc<str>, u32>,
    values: Vec<Arc<str>>,
}

impl Cap {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: RwLock::new(CapValues::default()),
        }
    }

    /// The id of `value`: its own while the cap allows, else the id of [`OTHER`].
    fn id(&self, value: &str) -> u32 {
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = seen.ids.get(value) {
            return id;
        }
        if seen.values.len() >= self.limit {
            return OTHER_ID;
        }
        drop(seen);
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = seen.ids.get(value) {
            return id;
        }
        if seen.values.len() >= self.limit {
            return OTHER_ID;
        }
        let id = seen.values.len() as u32;
        let value: Arc<str> = Arc::from(value);
        seen.ids.insert(value.clone(), id);
        seen.values.push(value);
        id
    }

    /// The label value of an id.
    fn value(&self, id: u32) -> SharedString {
        match id {
            OTHER_ID => SharedString::const_str(OTHER),
            UNKNOWN_ID => SharedString::const_str("unknown"),
            NONE_ID => SharedString::const_str("none"),
            ROOT_ID => SharedString::const_str("config"),
            EMPTY_ID => SharedString::const_str(""),
            id => {
                let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
                SharedString::from(seen.values[id as usize].clone())
            }
        }
    }
}

/// An allow-listed metadata key and its label.
#[derive(Debug)]
struct MetadataLabel {
    key: Box<str>,
    label: SharedString,
    values: Cap,
}

/// `metadata_` and the key with every character outside `[a-zA-Z0-9_]` replaced by `_`.
pub(crate) fn metadata_label_name(key: &str) -> String {
    let mut name = String::with_capacity(9 + key.len());
    name.push_str("metadata_");
    name.extend(
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    name
}

/// The label values of a request known when it arrives, as ids.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestLabels {
    model: u32,
    metadata: [u32; MAX_METADATA_LABELS],
}

/// The handles of one label set: every metric of a response with those labels, each
/// registered the first time it is recorded (a metric never recorded is never exported).
#[derive(Debug)]
pub(crate) struct Series {
    /// provider, model, target, the metadata labels.
    base: Vec<Label>,
    status: Label,
    requests: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
    time_to_first_token: OnceLock<Histogram>,
    input_tokens: OnceLock<Counter>,
    output_tokens: OnceLock<Counter>,
    retries: OnceLock<Counter>,
    retries_exhausted: OnceLock<Counter>,
    fallbacks: OnceLock<Counter>,
    /// By [`CacheStatus`] (its order), `Disabled` never recorded.
    cache: [OnceLock<Counter>; 5],
}

impl Series {
    fn with_status(&self) -> Vec<Label> {
        let mut labels = self.base.clone();
        labels.push(self.status.clone());
        labels
    }

    pub(crate) fn requests(&self) -> &Counter {
        self.requests
            .get_or_init(|| metrics::counter!(REQUESTS_TOTAL, self.with_status()))
    }

    pub(crate) fn duration(&self) -> &Histogram {
        self.duration
            .get_or_init(|| metrics::histogram!(REQUEST_DURATION, self.with_status()))
    }

    pub(crate) fn time_to_first_token(&self) -> &Histogram {
        self.time_to_first_token
            .get_or_init(|| metrics::histogram!(TIME_TO_FIRST_TOKEN, self.base.clone()))
    }

    pub(crate) fn input_tokens(&self) -> &Counter {
        self.input_tokens
            .get_or_init(|| metrics::counter!(INPUT_TOKENS, self.base.clone()))
    }

    pub(crate) fn output_tokens(&self) -> &Counter {
        self.output_tokens
            .get_or_init(|| metrics::counter!(OUTPUT_TOKENS, self.base.clone()))
    }

    pub(crate) fn retries(&self) -> &Counter {
        self.retries
            .get_or_init(|| metrics::counter!(RETRIES, self.base.clone()))
    }

    pub(crate) fn retries_exhausted(&self) -> &Counter {
        self.retries_exhausted
            .get_or_init(|| metrics::counter!(RETRIES_EXHAUSTED, self.base.clone()))
    }

    pub(crate) fn fallbacks(&self) -> &Counter {
        self.fallbacks
            .get_or_init(|| metrics::counter!(FALLBACKS, self.base.clone()))
    }

    /// The lookup counter of `status`; `None` for [`CacheStatus::Disabled`].
    pub(crate) fn cache(&self, status: CacheStatus) -> Option<&Counter> {
        let i = match status {
            CacheStatus::Hit => 0,
            CacheStatus::SemanticHit => 1,
            CacheStatus::Miss => 2,
            CacheStatus::SemanticMiss => 3,
            CacheStatus::Refresh => 4,
            CacheStatus::Disabled => return None,
        };
        Some(self.cache[i].get_or_init(|| {
            let mut labels = self.base.clone();
            labels.push(Label::new("cache_status", status.as_str()));
            metrics::counter!(CACHE_LOOKUPS, labels)
        }))
    }
}

/// The metrics of one tag layer: label caps, the metadata allow-list, and the handles of each
/// label set seen so far.
///
/// Each handle is registered with the recorder current when it is first recorded, then
/// reused: label values are looked up once per request and the metrics are recorded through
/// the handles, with no key built per request. Install the recorder before the first request
/// (with a local recorder, use a tag layer built for it).
#[derive(Debug)]
pub(crate) struct Meter {
    providers: Cap,
    models: Cap,
    targets: Cap,
    metadata: Box<[MetadataLabel]>,
    series: RwLock<FnvMap<Box<[u32]>, Arc<Series>>>,
}

impl Meter {
    pub(crate) fn new(cap: usize, metadata_keys: &[String]) -> Self {
        assert!(
            metadata_keys.len() <= MAX_METADATA_LABELS,
            "at most {MAX_METADATA_LABELS} metadata keys may become labels"
        );
        Self {
            providers: Cap::new(cap),
            models: Cap::new(cap),
            targets: Cap::new(cap),
            metadata: metadata_keys
                .iter()
                .map(|key| MetadataLabel {
                    key: key.as_str().into(),
                    label: SharedString::from(metadata_label_name(key)),
                    values: Cap::new(cap),
                })
                .collect(),
            series: RwLock::new(FnvMap::default()),
        }
    }

    /// The labels of a request: its model and allow-listed metadata (an absent key is the
    /// empty value).
    pub(crate) fn request(&self, model: Option<&str>, metadata: &Metadata) -> RequestLabels {
        let mut ids = [EMPTY_ID; MAX_METADATA_LABELS];
        for (id, m) in ids.iter_mut().zip(self.metadata.iter()) {
            if let Some(value) = metadata.get(&m.key) {
                *id = m.values.id(value);
            }
        }
        RequestLabels {
            model: model.map_or(UNKNOWN_ID, |m| self.models.id(m)),
            metadata: ids,
        }
    }

    /// The handles for a response to `request` from `provider` through `target`, with
    /// `status`.
    pub(crate) fn series(
        &self,
        request: &RequestLabels,
        provider: Option<&str>,
        target: Option<TargetPath>,
        status: StatusCode,
    ) -> Arc<Series> {
        let provider = provider.map_or(UNKNOWN_ID, |p| self.providers.id(p));
        let target = match target {
            None => NONE_ID,
            Some(path) if path.is_root() => ROOT_ID,
            Some(path) => self.targets.id(path.config_text().as_str()),
        };
        let mut key = [0u32; 4 + MAX_METADATA_LABELS];
        key[..4].copy_from_slice(&[provider, request.model, target, u32::from(status.as_u16())]);
        let n = 4 + self.metadata.len();
        key[4..n].copy_from_slice(&request.metadata[..self.metadata.len()]);
        let key = &key[..n];
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return series.clone();
        }
        let series = Arc::new(self.register(key));
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.into())
            .or_insert(series)
            .clone()
    }

    /// The labels of a label set.
    fn register(&self, key: &[u32]) -> Series {
        let mut base = vec![
            Label::new("provider", self.providers.value(key[0])),
            Label::new("model", self.models.value(key[1])),
            Label::new("target", self.targets.value(key[2])),
        ];
        for (m, &id) in self.metadata.iter().zip(&key[4..]) {
            base.push(Label::new(m.label.clone(), m.values.value(id)));
        }
        Series {
            base,
            status: Label::new("status", SharedString::from(key[3].to_string())),
            requests: OnceLock::new(),
            duration: OnceLock::new(),
            time_to_first_token: OnceLock::new(),
            input_tokens: OnceLock::new(),
            output_tokens: OnceLock::new(),
            retries: OnceLock::new(),
            retries_exhausted: OnceLock::new(),
            fallbacks: OnceLock::new(),
            cache: Default::default(),
        }
    }
}

/// Whether a target path is not the first target at every level.
pub(crate) fn is_fallback(path: Option<TargetPath>) -> bool {
    path.is_some_and(|p| p.indices().iter().any(|&i| i != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_distinct_values() {
        let cap = Cap::new(2);
        let a = cap.id("a");
        let b = cap.id("b");
        assert_eq!(cap.value(a).as_ref(), "a");
        assert_eq!(cap.value(b).as_ref(), "b");
        assert_eq!(cap.value(cap.id("c")).as_ref(), OTHER);
        assert_eq!(cap.id("a"), a, "known values stay");
    }

    #[test]
    fn metadata_label_names_are_prometheus_safe() {
        assert_eq!(metadata_label_name("team"), "metadata_team");
        assert_eq!(
            metadata_label_name("cost-center.eu"),
            "metadata_cost_center_eu"
        );
    }

    #[test]
    fn one_label_set_shares_its_handles() {
        let meter = Meter::new(64, &["team".to_owned()]);
        let metadata = Metadata::new([("team".to_owned(), "a".to_owned())].into());
        let request = meter.request(Some("m"), &metadata);
        let one = meter.series(&request, Some("p"), None, StatusCode::OK);
        let again = meter.series(&request, Some("p"), None, StatusCode::OK);
        assert!(Arc::ptr_eq(&one, &again));
        let other = meter.series(&request, Some("p"), None, StatusCode::BAD_GATEWAY);
        assert!(!Arc::ptr_eq(&one, &other));
    }

    #[test]
    #[should_panic(expected = "at most 8 metadata keys")]
    fn the_metadata_allow_list_is_short() {
        let keys: Vec<String> = (0..9).map(|i| i.to_string()).collect();
        Meter::new(64, &keys);
    }

    #[test]
    fn fallback_means_any_non_first_index() {
        let mut p = TargetPath::root();
        assert!(!is_fallback(None));
        assert!(!is_fallback(Some(p)));
        p.push(0);
        assert!(!is_fallback(Some(p)));
        p.push(1);
        assert!(is_fallback(Some(p)));
    }
}
