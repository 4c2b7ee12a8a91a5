//! Filling the cache from an answer as it passes, and coalescing identical misses.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::BoxError;
use portcullis_core::observe::{Observation, Outcome};
use tokio::sync::watch;

use crate::entry::Entry;
use crate::key::{Key, KeyState};
use crate::layer::CacheEngine;
use crate::store::Candidate;

/// Misses in flight, by key: the first caller of a key leads (calls the upstream); the others
/// wait for it to store the answer.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    leaders: Mutex<HashMap<Key, watch::Receiver<()>, KeyState>>,
}

/// Held by the leader of a miss until its answer is stored (or known not to be): dropping it
/// wakes the followers.
#[derive(Debug)]
pub(crate) struct Leader {
    engine: Arc<CacheEngine>,
    key: Key,
    _done: watch::Sender<()>,
}

impl Leader {
    /// The engine whose miss this leads.
    pub(crate) fn engine(&self) -> &Arc<CacheEngine> {
        &self.engine
    }

    /// The key of the miss.
    pub(crate) fn key(&self) -> Key {
        self.key
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut leaders = self
            .engine
            .inflight
            .leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        leaders.remove(&self.key);
    }
}

/// The role of a request in a miss.
pub(crate) enum Role {
    Leader(Leader),
    Follower(watch::Receiver<()>),
}

impl Inflight {
    pub(crate) fn join(engine: &Arc<CacheEngine>, key: Key) -> Role {
        let mut leaders = engine
            .inflight
            .leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = leaders.get(&key) {
            return Role::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        leaders.insert(key, rx);
        Role::Leader(Leader {
            engine: engine.clone(),
            key,
            _done: tx,
        })
    }

    /// Misses in flight now.
    pub(crate) fn len(&self) -> usize {
        self.leaders.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Waits until the leader is done (its guard dropped), at most `wait`.
pub(crate) async fn follow(mut rx: watch::Receiver<()>, wait: Duration) {
    // `changed` fails once the sender is gone: that is the signal.
    let _ = tokio::time::timeout(wait, rx.changed()).await;
}

/// What to store once the answer has ended cleanly.
pub(crate) struct Pending {
    pub(crate) engine: Arc<CacheEngine>,
    pub(crate) key: Key,
    pub(crate) ttl: Duration,
    pub(crate) stream: bool,
    pub(crate) observation: Observation,
    /// The semantic candidate to add with it.
    pub(crate) candidate: Option<(Key, Candidate)>,
    pub(crate) leader: Option<Leader>,
}

pin_project! {
    /// A response body that keeps a copy of what it passes (up to the entry size limit) and
    /// stores it when the body ends cleanly with a complete answer.
    ///
    /// "Ends cleanly" is the observer's word: its report says `Complete`. The report may come
    /// after this body is gone: hyper stops reading a body with a known length once it has
    /// sent that many bytes and drops it, and the observer reports from its drop. So at the
    /// end, or at the drop, the copy waits for the report.
    pub(crate) struct RecordBody<B> {
        #[pin]
        inner: B,
        chunks: Vec<Bytes>,
        size: usize,
        pending: Option<Pending>,
    }

    impl<B> PinnedDrop for RecordBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(p) = this.pending.take() {
                finish(p, std::mem::take(this.chunks));
            }
        }
    }
}

impl<B> RecordBody<B> {
    pub(crate) fn new(inner: B, pending: Pending) -> Self {
        Self {
            inner,
            chunks: Vec::new(),
            size: 0,
            pending: Some(pending),
        }
    }
}

impl<B> http_body::Body for RecordBody<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(data), Some(p)) = (f.data_ref(), this.pending.as_ref()) {
                    *this.size += data.len();
                    if *this.size > p.engine.max_entry_bytes {
                        // Too large to keep: stop recording, wake any followers.
                        *this.pending = None;
                        this.chunks.clear();
                    } else {
                        this.chunks.push(data.clone());
                    }
                }
            }
            // A broken body is never stored.
            Some(Err(_)) => *this.pending = None,
            None => {
                if let Some(p) = this.pending.take() {
                    finish(p, std::mem::take(this.chunks));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // The end must be seen by `poll_frame` to store: never claim it early.
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Stores the copy once the observer reports a complete success (now, or when it does).
fn finish(p: Pending, chunks: Vec<Bytes>) {
    let observation = p.observation.clone();
    observation.on_report(move |report| {
        if report.outcome == Outcome::Complete && report.status.is_success() {
            store(p, chunks, report.usage);
        }
    });
}

/// A chunk as the cache keeps it: a copy of its bytes. An upstream's chunk is a slice of the
/// connection's read buffer (8 KiB and more): kept as it came, one 515-byte answer held the
/// whole buffer for the entry's lifetime while the store's byte bound counted 515 bytes (a
/// gateway whose every request was a miss grew to 150 MiB with a 64 MiB bound).
fn stored_copy(chunk: Bytes) -> Bytes {
    Bytes::copy_from_slice(&chunk)
}

fn store(p: Pending, chunks: Vec<Bytes>, usage: Option<portcullis_core::facts::Usage>) {
    let body = match chunks.len() {
        1 => stored_copy(chunks.into_iter().next().expect("one")),
        _ => {
            let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in &chunks {
                all.extend_from_slice(c);
            }
            all.freeze()
        }
    };
    let now = p.engine.clock.now_millis();
    let entry = Arc::new(if p.stream {
        Entry::from_stream(body, usage, now)
    } else {
        Entry::from_json(body, usage, now)
    });
    // Storing is the store's I/O, off the client's path; the leader guard moves along, so
    // followers wake once the entry is there to be read. A store that answers at once (the
    // memory store) is done before the body's end reaches the client: a client that has the
    // whole answer finds it cached.
    let mut store = Box::pin(async move {
        let Pending {
            engine,
            key,
            ttl,
            candidate,
            leader,
            ..
        } = p;
        engine.put(&key, entry, ttl).await;
        if let Some((partition, candidate)) = candidate {
            engine.add_candidate(&partition, candidate, ttl).await;
        }
        drop(leader);
    });
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if store.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_chunk_does_not_share_the_buffer_it_came_from() {
        // What an upstream's chunk is: a slice of a larger read buffer.
        let buffer = Bytes::from(vec![b'x'; 8192]);
        let chunk = buffer.slice(0..515);
        assert!(!chunk.is_unique(), "the slice shares the 8 KiB buffer");
        let stored = stored_copy(chunk.clone());
        assert!(stored.is_unique(), "the copy has an allocation of its own");
        assert_eq!(stored, chunk);
    }
}
