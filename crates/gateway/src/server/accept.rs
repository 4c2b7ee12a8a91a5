//! What the accept loop needs to never spin: connection slots it waits for before accepting,
//! and a growing wait after an accept error.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections accepted past `max_connections`, each short-lived and answering only
/// `GET /health`, so a health check still gets through while the server is full.
pub(crate) const SPARE_CONNECTIONS: usize = 4;

/// The first wait after an accept error.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between accepts after repeated errors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The wait between failed accepts: none for an error that belongs to one connection (it is
/// gone, the next may be fine), otherwise doubling from 10 ms to 1 s and reset by a
/// successful accept. Out of file descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`,
/// `ENOBUFS`), accepting again at once would fail again at once: a loop that only logs.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { next: MIN_BACKOFF }
    }

    /// How long to wait after `err` before accepting again (`None`: no wait).
    pub(crate) fn failed(&mut self, err: &io::Error) -> Option<Duration> {
        if is_connection_error(err) {
            return None;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        Some(wait)
    }

    /// A connection was accepted: the next error waits the shortest time again.
    pub(crate) fn succeeded(&mut self) {
        self.next = MIN_BACKOFF;
    }
}

/// Errors that end one pending connection, not the listener's ability to accept.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The connection slots: `max_connections` full ones and [`SPARE_CONNECTIONS`] spare ones.
/// The accept loop takes a slot before it accepts, so with every slot taken it waits (the
/// kernel's backlog holds new connections) instead of accepting and dropping in a loop.
#[derive(Debug)]
pub(crate) struct Slots {
    full: Arc<Semaphore>,
    spare: Arc<Semaphore>,
}

/// A taken slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) enum Slot {
    /// A connection served in full.
    Full(#[allow(dead_code)] OwnedSemaphorePermit),
    /// A connection over the limit: `GET /health` only, closed soon.
    Spare(OwnedSemaphorePermit),
}

impl Slots {
    pub(crate) fn new(max_connections: usize) -> Self {
        Self {
            full: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
            spare: Arc::new(Semaphore::new(SPARE_CONNECTIONS)),
        }
    }

    /// Waits for a slot, a full one first.
    pub(crate) async fn acquire(&self) -> Slot {
        if let Ok(permit) = self.full.clone().try_acquire_owned() {
            return Slot::Full(permit);
        }
        tokio::select! {
            biased;
            Ok(permit) = self.full.clone().acquire_owned() => Slot::Full(permit),
            Ok(permit) = self.spare.clone().acquire_owned() => Slot::Spare(permit),
        }
    }

    /// Trades a spare slot for a full one freed while the connection was being accepted.
    pub(crate) fn promote(&self, slot: Slot) -> Slot {
        match slot {
            Slot::Spare(spare) => match self.full.clone().try_acquire_owned() {
                Ok(permit) => Slot::Full(permit),
                Err(_) => Slot::Spare(spare),
            },
            full => full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn out_of_descriptors_waits_longer_each_time_up_to_a_second() {
        let mut backoff = Backoff::new();
        // EMFILE, ENFILE, ENOMEM on Linux.
        let waits: Vec<_> = [24, 23, 12, 24, 24, 24, 24, 24, 24, 24]
            .into_iter()
            .map(|code| backoff.failed(&raw(code)).unwrap().as_millis())
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(&raw(24)), Some(MIN_BACKOFF));
    }

    #[test]
    fn an_error_of_one_connection_does_not_wait() {
        let mut backoff = Backoff::new();
        assert_eq!(
            backoff.failed(&io::Error::from(io::ErrorKind::ConnectionAborted)),
            None
        );
        assert_eq!(
            backoff.failed(&io::Error::from(io::ErrorKind::ConnectionReset)),
            None
        );
        assert_eq!(backoff.failed(&raw(24)), Some(MIN_BACKOFF));
    }

    #[tokio::test(start_paused = true)]
    async fn slots_fill_full_then_spare_then_wait() {
        let slots = Slots::new(2);
        let mut taken = Vec::new();
        for _ in 0..2 {
            taken.push(slots.acquire().await);
        }
        assert!(taken.iter().all(|s| matches!(s, Slot::Full(_))));
        for _ in 0..SPARE_CONNECTIONS {
            taken.push(slots.acquire().await);
        }
        assert!(matches!(taken.last(), Some(Slot::Spare(_))));
        // Every slot taken: the next waits.
        let waiting = tokio::time::timeout(Duration::from_secs(1), slots.acquire()).await;
        assert!(waiting.is_err(), "no slot while all are taken");
        // A full slot freed: a spare one is promoted.
        let spare = taken.pop().unwrap();
        taken.remove(0);
        assert!(matches!(slots.promote(spare), Slot::Full(_)));
    }
}
