//! A trigger of the user's own decides when the fallback moves on.

mod common;

use http::{HeaderMap, Response, StatusCode};
use portcullis_core::error::{UpstreamError, UpstreamErrorKind};
use portcullis_core::{Body, BoxError};
use portcullis_fallback::{BoxTarget, Fallback, Trigger};
use tower::ServiceExt;

use common::{Log, ok, path, request, status, target, text};

/// Moves on after a 429 only when the target says it is out of quota (`x-quota: spent`),
/// and never after an error: a transport failure is answered at once.
#[derive(Clone, Debug)]
struct QuotaSpent;

impl Trigger for QuotaSpent {
    fn on_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        status == StatusCode::TOO_MANY_REQUESTS
            && headers.get("x-quota").is_some_and(|v| v == "spent")
    }

    fn on_error(&self, _error: &BoxError) -> bool {
        false
    }
}

fn limited(quota: Option<&'static str>) -> Result<Response<Body>, BoxError> {
    let mut res = status(429, "slow down")?;
    if let Some(quota) = quota {
        res.headers_mut().insert("x-quota", quota.parse().unwrap());
    }
    Ok(res)
}

fn fallback<A>(log: &Log, first: A) -> Fallback<BoxTarget, QuotaSpent>
where
    A: Fn() -> Result<Response<Body>, BoxError> + Clone + Send + Sync + 'static,
{
    Fallback::builder()
        .target(target("first", log, first))
        .target(target("second", log, || ok("second")))
        .trigger(QuotaSpent)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_custom_trigger_reads_the_headers() {
    let log = Log::default();
    let res = fallback(&log, || limited(Some("spent")))
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(path(&res), "targets[1]");
    assert_eq!(text(res).await, "second");
    assert_eq!(log.names(), ["first", "second"]);

    let log = Log::default();
    let res = fallback(&log, || limited(None))
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "a plain 429 is answered");
    assert_eq!(log.names(), ["first"]);

    // The default list would move on after a 500; this trigger does not.
    let log = Log::default();
    let res = fallback(&log, || status(500, "down"))
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(log.names(), ["first"]);
}

#[tokio::test]
async fn a_custom_trigger_decides_on_errors_too() {
    let log = Log::default();
    let err = fallback(&log, || {
        Err(UpstreamError::new(UpstreamErrorKind::Connect, "refused").into())
    })
    .oneshot(request())
    .await
    .unwrap_err();
    assert!(err.downcast_ref::<UpstreamError>().is_some(), "{err}");
    assert_eq!(log.names(), ["first"]);
}

#[tokio::test]
async fn a_closure_is_a_trigger() {
    let log = Log::default();
    let fallback = Fallback::builder()
        .target(target("first", &log, || status(404, "no such model")))
        .target(target("second", &log, || ok("second")))
        .trigger(|status: StatusCode| status == StatusCode::NOT_FOUND)
        .build()
        .unwrap();
    let res = fallback.oneshot(request()).await.unwrap();
    assert_eq!(path(&res), "targets[1]");
    assert_eq!(log.names(), ["first", "second"]);
}
