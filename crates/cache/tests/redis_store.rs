//! The Redis store against a real `redis-server` (started by the test on a free port):
//! entries and partitions with their TTL in Redis, values it did not write refused, a Redis
//! that goes away and comes back.

use std::sync::Arc;
use std::time::Duration;

use portcullis_cache::entry::Entry;
use portcullis_cache::key::Key;
use portcullis_cache::store::{CacheStore, Candidate, RedisStore};
use portcullis_testkit::redis::RedisServer;

async fn raw(url: &str, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

fn candidate(i: u8) -> Candidate {
    Candidate {
        key: Key([i; 32]),
        embedder: "ngram".into(),
        text: format!("question {i}").into(),
        vector: vec![f32::from(i), 0.5].into(),
    }
}

#[tokio::test]
async fn entries_live_in_redis_with_their_ttl() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::new(&redis.url()).unwrap();
    let key = Key([3; 32]);
    assert_eq!(store.get(&key).await.unwrap(), None);
    let body = format!("{{\"text\":\"{}\"}}", "x".repeat(5000));
    let entry = Arc::new(Entry::from_json(body.into(), None, 1234));
    store
        .put(&key, entry.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(entry));
    let name = format!("portcullis:cache:e:{}", key.to_hex());
    let redis::Value::Int(ttl) = raw(&redis.url(), &["PTTL", &name]).await else {
        panic!("PTTL")
    };
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
    // Large values are compressed.
    let redis::Value::Int(len) = raw(&redis.url(), &["STRLEN", &name]).await else {
        panic!("STRLEN")
    };
    assert!(len < 1000, "{len} bytes for a 5 KB body");
}

#[tokio::test]
async fn a_value_it_did_not_write_is_an_error_not_an_answer() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::new(&redis.url()).unwrap();
    let key = Key([4; 32]);
    let name = format!("portcullis:cache:e:{}", key.to_hex());
    raw(&redis.url(), &["SET", &name, "not an entry"]).await;
    assert!(store.get(&key).await.is_err());
}

#[tokio::test]
async fn partitions_are_bounded_and_expire() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::with_prefix(&redis.url(), "t:").unwrap();
    let p = Key([9; 32]);
    for i in 0..5 {
        store
            .add_candidate(&p, candidate(i), 3, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let list = store.candidates(&p).await.unwrap();
    let texts: Vec<&str> = list.iter().map(|c| &*c.text).collect();
    assert_eq!(texts, ["question 4", "question 3", "question 2"]);
    assert_eq!(list[0], candidate(4));
    let name = format!("t:p:{}", p.to_hex());
    let redis::Value::Int(ttl) = raw(&redis.url(), &["PTTL", &name]).await else {
        panic!("PTTL")
    };
    assert!(ttl > 20_000 && ttl <= 30_000, "{ttl}");
    // A foreign value in the list is skipped, never compared.
    raw(&redis.url(), &["LPUSH", &name, "garbage"]).await;
    assert_eq!(store.candidates(&p).await.unwrap().len(), 3);
}

#[tokio::test]
async fn redis_going_away_is_an_error_and_coming_back_works_again() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::new(&redis.url()).unwrap();
    let key = Key([5; 32]);
    let entry = Arc::new(Entry::from_json("{}".into(), None, 1));
    store
        .put(&key, entry.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    redis.kill();
    assert!(store.get(&key).await.is_err());
    redis.restart();
    // The connection comes back on its own; the restarted server is empty.
    let mut answered = None;
    for _ in 0..50 {
        if let Ok(found) = store.get(&key).await {
            answered = Some(found);
            break;
        }
    }
    assert_eq!(answered, Some(None));
    store
        .put(&key, entry.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(entry));
}
