//! A connection that wakes itself while it is being polled is polled again at once, instead
//! of being handed back to the scheduler.
//!
//! Why: hyper's request body channel wakes the waker its sender last stored whenever the
//! receiver takes a chunk, even after the sender (the connection's dispatcher) has sent the
//! whole body and gone (hyper 1.12 and 1.13, `src/body/chan.rs`, `Receiver::poll_next`). The
//! gateway reads every request body in the connection's own task (the edge must hold the body
//! to read it), so taking the body woke the very task that was running. Tokio treats a task
//! woken during its own poll as one that yields: it goes to the back of the run queue and an
//! idle worker is woken to steal it, a futex wake and a second thread's work per request at
//! low load. Re-polling here gives the task the same second poll without either. Measured at
//! one connection (BENCHMARKS.md, session 7): futex calls per request 2.07 → 0.11, the
//! gateway's CPU per request 103 → 85.5 µs, instructions per request 89,972 → 86,983; at 32
//! connections, where no worker is idle, unchanged.
//!
//! The wrapper hands the inner future a waker of its own. While the inner future is being
//! polled, a wake only marks it; once the poll returns `Pending`, a marked future is polled
//! again, at most [`MAX_INLINE`] times per poll, then it yields to the scheduler as before
//! (a future that wakes itself on purpose to let others run still gets to). Outside a poll,
//! every wake goes to the task's waker at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// Not being polled: a wake goes to the task.
const IDLE: u8 = 0;
/// Being polled, not woken.
const POLLING: u8 = 1;
/// Being polled, and woken meanwhile: it is polled again.
const WOKEN: u8 = 2;

/// How many more times one poll polls a future that woke itself during its poll.
pub(crate) const MAX_INLINE: usize = 2;

/// See the [module docs](self).
pub(crate) struct InlineWake<F> {
    future: F,
    shared: Arc<Shared>,
    /// The waker the inner future sees, made once: the same waker every poll (`will_wake`
    /// holds, so the inner future's registrations are not redone).
    waker: Waker,
}

struct Shared {
    state: AtomicU8,
    /// The task's waker, registered at every poll (lock-free; a wake takes it).
    task: AtomicWaker,
}

impl<F> InlineWake<F> {
    pub(crate) fn new(future: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        Self {
            future,
            waker: Waker::from(Arc::clone(&shared)),
            shared,
        }
    }
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            // Marked: the poll in progress polls again.
            Ok(_) | Err(WOKEN) => {}
            // Not being polled: the task is woken (and registers again when it is polled).
            Err(_) => self.task.wake(),
        }
    }
}

impl<F: Future + Unpin> Future for InlineWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.shared.task.register(cx.waker());
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..=MAX_INLINE {
            this.shared.state.store(POLLING, Ordering::Release);
            let poll = Pin::new(&mut this.future).poll(&mut inner);
            // From here a wake goes to the task; one that came during the poll is seen here.
            let state = this.shared.state.swap(IDLE, Ordering::AcqRel);
            if poll.is_ready() || state != WOKEN {
                return poll;
            }
        }
        // Still waking itself: its turn ends, as the scheduler would have ended it.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    pub(in crate::server) struct Count(pub(in crate::server) AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub(in crate::server) fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    /// Pending until polled `ready_at` times; wakes itself during each of its first
    /// `self_wakes` polls; keeps the last waker it was given.
    struct Script {
        polls: usize,
        ready_at: usize,
        self_wakes: usize,
        kept: Option<Waker>,
    }

    impl Script {
        fn new(ready_at: usize, self_wakes: usize) -> Self {
            Self {
                polls: 0,
                ready_at,
                self_wakes,
                kept: None,
            }
        }
    }

    impl Future for Script {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            self.kept = Some(cx.waker().clone());
            if self.polls >= self.ready_at {
                return Poll::Ready(self.polls);
            }
            if self.polls <= self.self_wakes {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    #[test]
    fn a_future_woken_during_its_poll_is_polled_again_without_waking_the_task() {
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        // Woken during its first poll, ready at its second.
        let mut f = InlineWake::new(Script::new(2, 1));
        assert_eq!(Pin::new(&mut f).poll(&mut cx), Poll::Ready(2));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_still_yields_to_the_scheduler() {
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut f = InlineWake::new(Script::new(usize::MAX, usize::MAX));
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(f.future.polls, 1 + MAX_INLINE);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "its turn ends with a wake"
        );
    }

    #[test]
    fn a_future_not_woken_during_its_poll_is_polled_once() {
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut f = InlineWake::new(Script::new(usize::MAX, 0));
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(f.future.polls, 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn wakes_after_the_poll_go_to_the_latest_task_waker() {
        let (first, waker) = counting();
        let mut f = InlineWake::new(Script::new(usize::MAX, 0));
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let kept = f.future.kept.clone().unwrap();
        kept.wake_by_ref();
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        // Woken once, the task is due a poll: until then a second wake has nothing to add.
        kept.wake_by_ref();
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        // Polled again, then woken from another thread, as an I/O driver or a task wakes it.
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let again = kept.clone();
        std::thread::spawn(move || again.wake()).join().unwrap();
        assert_eq!(first.0.load(Ordering::SeqCst), 2);

        // Polled by a new task waker: later wakes go there.
        let (second, waker) = counting();
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        f.future.kept.clone().unwrap().wake();
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(first.0.load(Ordering::SeqCst), 2);
        // The inner future sees the same waker at every poll.
        assert!(kept.will_wake(f.future.kept.as_ref().unwrap()));
    }

    /// Woken from another thread while it is being polled (as another worker completing
    /// what it waits for): polled again, the task not woken.
    #[test]
    fn a_wake_from_another_thread_during_the_poll_is_not_lost() {
        struct WokenElsewhere {
            polls: usize,
        }
        impl Future for WokenElsewhere {
            type Output = usize;
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
                self.polls += 1;
                if self.polls == 2 {
                    return Poll::Ready(2);
                }
                let waker = cx.waker().clone();
                std::thread::spawn(move || waker.wake()).join().unwrap();
                Poll::Pending
            }
        }
        let (count, waker) = counting();
        let mut f = InlineWake::new(WokenElsewhere { polls: 0 });
        assert_eq!(
            Pin::new(&mut f).poll(&mut Context::from_waker(&waker)),
            Poll::Ready(2)
        );
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    /// On the real runtime: a spawned wrapper, woken from another task once it has been
    /// polled and is waiting, completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spawned_future_woken_from_another_task_completes() {
        let (polled_tx, polled_rx) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let task = tokio::spawn(InlineWake::new(Box::pin(async move {
            polled_tx.send(()).unwrap();
            rx.await.unwrap()
        })));
        // The wrapper has been polled and waits on `rx`: the send below wakes it from outside
        // its poll.
        polled_rx.await.unwrap();
        tx.send(7).unwrap();
        assert_eq!(task.await.unwrap(), 7);
    }
}
