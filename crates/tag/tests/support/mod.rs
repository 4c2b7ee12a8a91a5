//! Test helpers: a recorder snapshot that reads by name and labels, and a `tracing` layer that
//! keeps the fields of every closed span.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One metric series: kind, name, labels (sorted), value.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) kind: MetricKind,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Counter(u64),
    Histogram(Vec<f64>),
}

/// A debugging recorder and the series it holds.
pub(crate) struct Metrics {
    pub(crate) recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Self {
            recorder,
            snapshotter,
        }
    }

    /// Every series now (counters are read once: a second snapshot starts from zero).
    pub(crate) fn series(&self) -> Vec<Series> {
        self.snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (kind, key) = key.into_parts();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                let value = match value {
                    DebugValue::Counter(n) => Value::Counter(n),
                    DebugValue::Histogram(v) => {
                        Value::Histogram(v.into_iter().map(|f| f.0).collect())
                    }
                    DebugValue::Gauge(_) => unreachable!("no gauges here"),
                };
                Series {
                    kind,
                    name: key.name().to_owned(),
                    labels,
                    value,
                }
            })
            .collect()
    }
}

/// The series named `name`.
pub(crate) fn named<'a>(series: &'a [Series], name: &str) -> Vec<&'a Series> {
    series.iter().filter(|s| s.name == name).collect()
}

/// The one series named `name`.
pub(crate) fn one<'a>(series: &'a [Series], name: &str) -> &'a Series {
    let found = named(series, name);
    assert_eq!(found.len(), 1, "one series {name}: {series:#?}");
    found[0]
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The fields of a span, as text.
pub(crate) type Fields = BTreeMap<String, String>;

/// A `tracing` layer that records every field of every span and keeps them when it closes.
#[derive(Clone, Default)]
pub(crate) struct Spans {
    closed: Arc<Mutex<Vec<(String, Fields)>>>,
}

impl Spans {
    /// The closed spans of trace `trace` (their `portcullis.trace_id`): name and fields.
    pub(crate) fn closed(&self, trace: &str) -> Vec<(String, Fields)> {
        self.closed
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, fields)| {
                fields.get("portcullis.trace_id").map(String::as_str) == Some(trace)
            })
            .cloned()
            .collect()
    }
}

/// The span capture of this test binary, installed as the global subscriber on first use.
///
/// Global, not per test: `tracing` caches whether a callsite is enabled, and a per-thread
/// default set while another test thread registers the callsite can leave it disabled. Tests
/// tell their spans apart by trace id.
pub(crate) fn spans() -> &'static Spans {
    static SPANS: OnceLock<Spans> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Spans::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
            .expect("the only global subscriber of this test binary");
        spans
    })
}

struct Open(Fields);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        ctx.span(id).unwrap().extensions_mut().insert(Open(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut ext = span.extensions_mut();
        let open = ext.get_mut::<Open>().unwrap();
        values.record(&mut Visitor(&mut open.0));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions_mut().remove::<Open>().unwrap().0;
        self.closed
            .lock()
            .unwrap()
            .push((span.name().to_owned(), fields));
    }
}
