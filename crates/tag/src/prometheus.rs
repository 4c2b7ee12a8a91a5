//! The Prometheus text exposition of every metric recorded through the [`metrics`] facade
//! (feature `prometheus`).
//!
//! [`Prometheus::install`] installs a recorder for the whole process (once, at start-up, before
//! the first request) and returns the handle a server renders `GET /metrics` with. Histograms
//! of this crate get buckets suited to LLM latencies ([`DURATION_BUCKETS`],
//! [`TTFT_BUCKETS`]); other histograms render as summaries.
//!
//! ```
//! use portcullis_tag::{meter, Prometheus};
//!
//! // A recorder for this scope only; a server calls `Prometheus::install()` once instead.
//! let (recorder, prometheus) = Prometheus::recorder();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!(meter::REQUESTS_TOTAL, "status" => "200").increment(2);
//! });
//! let text = prometheus.render();
//! assert!(text.contains("portcullis_requests_total{status=\"200\"} 2"), "{text}");
//!
//! let response = prometheus.response();
//! assert_eq!(response.headers()["content-type"], portcullis_tag::prometheus::CONTENT_TYPE);
//! ```
//!
//! [`DURATION_BUCKETS`]: crate::meter::DURATION_BUCKETS
//! [`TTFT_BUCKETS`]: crate::meter::TTFT_BUCKETS

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Response, header};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use portcullis_core::Body;

use crate::meter::{self, DURATION_BUCKETS, TTFT_BUCKETS};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A handle to a Prometheus recorder: renders the text exposition.
#[derive(Clone, Debug)]
pub struct Prometheus {
    handle: PrometheusHandle,
}

/// The recorder could not be installed: another one is installed already.
#[derive(Debug)]
pub struct InstallError(String);

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not install the Prometheus recorder: {}", self.0)
    }
}

impl StdError for InstallError {}

impl Prometheus {
    /// The builder [`install`](Self::install) and [`recorder`](Self::recorder) start from:
    /// this crate's histogram buckets set. Add global labels or buckets of other metrics to it
    /// and finish with [`Prometheus::install_with`].
    pub fn builder() -> PrometheusBuilder {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(meter::REQUEST_DURATION.to_owned()),
                DURATION_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(meter::TIME_TO_FIRST_TOKEN.to_owned()),
                    TTFT_BUCKETS,
                )
            })
            .expect("the bucket lists are not empty")
    }

    /// Installs a recorder for the whole process and describes this crate's metrics.
    ///
    /// Call it once, before serving: metrics recorded before it are lost.
    pub fn install() -> Result<Self, InstallError> {
        Self::install_with(Self::builder())
    }

    /// Installs the recorder of `builder` for the whole process (see [`install`](Self::install)).
    pub fn install_with(builder: PrometheusBuilder) -> Result<Self, InstallError> {
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|e| InstallError(e.to_string()))?;
        meter::describe();
        Ok(Self { handle })
    }

    /// A recorder that is not installed, and its handle: for a local recorder
    /// (`metrics::with_local_recorder`), tests, or composing with other recorders. This
    /// crate's metrics are described to it.
    pub fn recorder() -> (PrometheusRecorder, Self) {
        let recorder = Self::builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, meter::describe);
        (recorder, Self { handle })
    }

    /// The text exposition of every metric now.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// A `200` response with the text exposition, for `GET /metrics`.
    pub fn response(&self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.render()));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }

    /// Folds the histogram samples recorded since the last render into their buckets.
    ///
    /// Rendering does it too; a server that may go long without a scrape should run it
    /// periodically ([`spawn_upkeep`](Self::spawn_upkeep)) so that samples do not pile up.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Runs [`upkeep`](Self::upkeep) every `period` on the current tokio runtime, until the
    /// returned task is aborted.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn_upkeep(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        })
    }

    /// The underlying handle.
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }
}
