//! The cache service with the memory store, in front of a service of the test's own: what a
//! miss, a hit, identical misses in flight, a failed leader and an entry past its age do.
//! (A store that answers in place looks a request up and leads its miss inside `call`; the
//! gateway's tests drive the same over HTTP, and the Redis store's tests the async way.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use portcullis_cache::store::MemoryStore;
use portcullis_cache::{CacheEngine, CacheSettings, Mode};
use portcullis_core::facts::{CacheStatus, ResponseFacts};
use portcullis_core::{Body, BoxError, BufferedBody};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt, service_fn};

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"4"},"finish_reason":"stop"}]}"#;

fn ask() -> Request<BufferedBody> {
    Request::post("/v1/chat/completions")
        .body(BufferedBody::new(
            r#"{"model":"m","messages":[{"role":"user","content":"2+2?"}]}"#,
        ))
        .unwrap()
}

fn answer() -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(ANSWER))
        .unwrap()
}

fn status(response: &Response<Body>) -> Option<CacheStatus> {
    ResponseFacts::get(response).and_then(|f| f.cache)
}

/// The engine, and a cached service that counts its calls and answers once `gate` gives it
/// a permit (a closed gate answers at once); its first `failures` calls fail.
fn cached(
    gate: Option<Arc<Semaphore>>,
    failures: usize,
) -> (
    Arc<CacheEngine>,
    Arc<AtomicUsize>,
    impl Service<
        Request<BufferedBody>,
        Response = Response<Body>,
        Error = BoxError,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static,
) {
    // A follower waits for its leader this long at most: longer than any test, so a leader
    // that never lets go fails the test (by the guard of `within`) instead of passing late.
    let engine = CacheEngine::builder()
        .store(MemoryStore::new(16 << 20))
        .coalesce_wait(Duration::from_secs(3600))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let provider = service_fn(move |_req: Request<BufferedBody>| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let gate = gate.clone();
        async move {
            if let Some(gate) = gate {
                gate.acquire().await.unwrap().forget();
            }
            if n < failures {
                return Err::<_, BoxError>("the upstream went away".into());
            }
            Ok(answer())
        }
    });
    let settings = CacheSettings::new(Mode::Simple).max_age(Duration::from_secs(10));
    let service = engine.layer(Some(settings), "provider").layer(provider);
    (engine, calls, service)
}

/// `future`'s output, or a failure if it takes more than a few seconds: a guard against a
/// wait that never ends, never reached when the code under test is right.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("waited too long: a leader never let its followers go?")
}

/// Yields until `calls` reaches `n` (a bounded number of times).
async fn until_called(calls: &AtomicUsize, n: usize) {
    for _ in 0..1_000 {
        if calls.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the service was never called {n} time(s)");
}

type Answer = tokio::task::JoinHandle<Result<Response<Body>, BoxError>>;

/// Two identical requests: the first, which leads the miss and waits in the service at its
/// gate, then the second, which follows it (checked: it has run, made no call, and waits).
async fn leader_and_follower<S>(
    engine: &CacheEngine,
    calls: &AtomicUsize,
    service: &S,
) -> (Answer, Answer)
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let leader = tokio::spawn(service.clone().oneshot(ask()));
    until_called(calls, 1).await;
    let follower = tokio::spawn(service.clone().oneshot(ask()));
    // On this one-thread runtime, a yield polls the follower.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the follower made no call");
    assert_eq!(engine.misses_in_flight(), 1);
    assert!(!follower.is_finished(), "the follower waits for the leader");
    (leader, follower)
}

/// Reads a response whole (the store keeps an answer once it has been read to its end).
async fn read(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_miss_calls_the_service_and_the_same_question_then_hits() {
    let (engine, calls, mut service) = cached(None, 0);
    let first = service.ready().await.unwrap().call(ask()).await.unwrap();
    assert_eq!(status(&first), Some(CacheStatus::Miss));
    assert_eq!(read(first).await, ANSWER);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        engine.misses_in_flight(),
        0,
        "the leader let go once stored"
    );

    let second = service.ready().await.unwrap().call(ask()).await.unwrap();
    assert_eq!(status(&second), Some(CacheStatus::Hit));
    assert_eq!(read(second).await, ANSWER);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a hit calls nothing");
}

#[tokio::test]
async fn identical_misses_in_flight_make_one_call() {
    let gate = Arc::new(Semaphore::new(0));
    let (engine, calls, service) = cached(Some(gate.clone()), 0);
    let (leader, follower) = leader_and_follower(&engine, &calls, &service).await;
    gate.add_permits(1);
    let leader = within(leader).await.unwrap().unwrap();
    assert_eq!(status(&leader), Some(CacheStatus::Miss));
    assert_eq!(read(leader).await, ANSWER);
    let follower = within(follower).await.unwrap().unwrap();
    assert_eq!(status(&follower), Some(CacheStatus::Hit));
    assert_eq!(read(follower).await, ANSWER);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(engine.misses_in_flight(), 0);
}

#[tokio::test]
async fn a_failed_leader_lets_go_and_its_follower_calls_for_itself() {
    let gate = Arc::new(Semaphore::new(0));
    let (engine, calls, service) = cached(Some(gate.clone()), 1);
    let (leader, follower) = leader_and_follower(&engine, &calls, &service).await;
    gate.add_permits(2);
    let err = within(leader).await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "the upstream went away");
    // Released as the leader's answer failed, not an hour later.
    let follower = within(follower).await.unwrap().unwrap();
    assert_eq!(status(&follower), Some(CacheStatus::Miss));
    assert_eq!(read(follower).await, ANSWER);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(engine.misses_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_entry_past_its_max_age_is_a_miss() {
    let (_engine, calls, mut service) = cached(None, 0);
    let first = service.ready().await.unwrap().call(ask()).await.unwrap();
    read(first).await;
    tokio::time::advance(Duration::from_secs(9)).await;
    let young = service.ready().await.unwrap().call(ask()).await.unwrap();
    assert_eq!(status(&young), Some(CacheStatus::Hit));
    tokio::time::advance(Duration::from_secs(2)).await;
    let old = service.ready().await.unwrap().call(ask()).await.unwrap();
    assert_eq!(status(&old), Some(CacheStatus::Miss));
    assert_eq!(read(old).await, ANSWER);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
