//! [`Signal`]: a wait on the server's shutdown watches that a hot future can poll each time it
//! waits, at the cost of an atomic load.
//!
//! A connection is polled every time a byte arrives, and a stream every time it waits between
//! two of the upstream's chunks. Each of them watches a shutdown signal (the connection: "stop
//! taking requests"; the stream: "the grace is over"). Polling tokio's watch future again each
//! time registered the same waker again, under the watch's lock and in its waiter list: a
//! tenth of a streamed request's instructions, for news that comes once in a server's life.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

/// Fired when its watch holds `true`, or its sender is gone.
///
/// Its future registers with the watch the first time it waits, and is polled again only when
/// the watch has news or the caller polls with another waker. While it lives, it holds a
/// receiver of the watch (a sender waiting for [`watch::Sender::closed`] waits for it).
pub(crate) struct Signal {
    /// Outside tokio's task budget: a poll the budget turned away would return `Pending`
    /// without registering, and the signal, taking it for registered, would never hear it.
    fired: Pin<Box<dyn Future<Output = ()> + Send>>,
    news: watch::Receiver<bool>,
    /// The waker the future was last polled with, once it has been.
    waker: Option<Waker>,
}

impl Signal {
    pub(crate) fn new(watch: &watch::Receiver<bool>) -> Self {
        let mut fired = watch.clone();
        Self {
            fired: Box::pin(tokio::task::unconstrained(async move {
                let _ = fired.wait_for(|on| *on).await;
            })),
            news: watch.clone(),
            waker: None,
        }
    }

    /// Ready once fired; else registered to wake `cx`'s task when it fires.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let quiet = !self.news.has_changed().unwrap_or(true);
        if quiet && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        // Marked seen before the look, so that a send after it is news next time.
        self.news.mark_unchanged();
        let poll = self.fired.as_mut().poll(cx);
        if poll.is_pending() {
            match &mut self.waker {
                Some(waker) => waker.clone_from(cx.waker()),
                None => self.waker = Some(cx.waker().clone()),
            }
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::server::inline_wake::tests::counting;

    #[test]
    fn a_signal_wakes_the_waker_it_was_last_polled_with() {
        let (tx, rx) = watch::channel(false);
        let mut signal = Signal::new(&rx);
        let (first, first_waker) = counting();
        let mut cx = Context::from_waker(&first_waker);
        for _ in 0..3 {
            assert!(signal.poll_fired(&mut cx).is_pending());
        }
        // Polled from another task: registered with that task's waker instead.
        let (second, second_waker) = counting();
        let mut cx = Context::from_waker(&second_waker);
        assert!(signal.poll_fired(&mut cx).is_pending());
        // News that is not the signal: looked at, and waited on again.
        tx.send_replace(false);
        assert!(signal.poll_fired(&mut cx).is_pending());
        assert!(!signal.news.has_changed().unwrap(), "quiet again");
        assert!(signal.poll_fired(&mut cx).is_pending());
        tx.send_replace(true);
        assert_eq!(second.0.load(Ordering::SeqCst), 2, "woken by both sends");
        assert_eq!(
            first.0.load(Ordering::SeqCst),
            0,
            "the replaced waker is not woken"
        );
        assert!(signal.poll_fired(&mut cx).is_ready());
    }

    /// A task that has spent its budget (many reads and writes in one turn) still registers:
    /// a poll the budget turned away would leave the signal deaf.
    #[tokio::test]
    async fn a_signal_first_polled_on_a_spent_budget_still_hears_it() {
        let (tx, rx) = watch::channel(false);
        let mut signal = Signal::new(&rx);
        let (woken, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        // Spend the task's budget (128 units in tokio 1.x), then poll in the same turn.
        for _ in 0..1_000 {
            let mut unit = std::pin::pin!(tokio::task::consume_budget());
            if unit
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
            {
                break;
            }
        }
        assert!(signal.poll_fired(&mut cx).is_pending());
        assert!(signal.poll_fired(&mut cx).is_pending());
        tx.send_replace(true);
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "the signal wakes the task"
        );
        assert!(signal.poll_fired(&mut cx).is_ready());
    }

    #[test]
    fn a_signal_fires_when_its_sender_is_gone() {
        let (tx, rx) = watch::channel(false);
        let mut signal = Signal::new(&rx);
        let (woken, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(signal.poll_fired(&mut cx).is_pending());
        drop(tx);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert!(signal.poll_fired(&mut cx).is_ready());
    }

    #[test]
    fn a_signal_already_on_is_ready_at_once() {
        let (_tx, rx) = watch::channel(true);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(Signal::new(&rx).poll_fired(&mut cx).is_ready());
    }

    #[test]
    fn a_live_signal_holds_its_watch_open() {
        let (tx, rx) = watch::channel(false);
        let signal = Signal::new(&rx);
        drop(rx);
        let (_, waker) = counting();
        let mut closed = std::pin::pin!(tx.closed());
        let mut cx = Context::from_waker(&waker);
        assert!(closed.as_mut().poll(&mut cx).is_pending());
        drop(signal);
        assert!(closed.as_mut().poll(&mut cx).is_ready());
    }
}
