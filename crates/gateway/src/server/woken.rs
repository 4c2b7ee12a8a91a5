//! [`Woken`]: a future polled only when it has asked to be.
//!
//! A connection's task is woken for every byte that arrives and every chunk a stream sends on,
//! and each time it polled the connection's idle timer too (a timer entry's state and waker
//! checked, a hundred-odd instructions), though a timer has news once in a connection's life.
//! Wrapped, the timer is polled on the task's first poll and then only after it woke the task
//! itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// `future`, polled only on the first poll and after it woke its task.
pub(crate) struct Woken<F> {
    future: F,
    shared: Arc<Flag>,
    /// The future's waker: marks it woken, then wakes the task.
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl<F> Woken<F> {
    pub(crate) fn new(future: F) -> Self {
        let shared = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            future,
            waker: Waker::from(Arc::clone(&shared)),
            shared,
        }
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future + Unpin> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the look: a wake from here on is seen now or wakes the task.
        this.shared.task.register(cx.waker());
        if !this.shared.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        Pin::new(&mut this.future).poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::server::inline_wake::tests::counting;

    /// Counts its polls; ready at its third.
    struct Polls {
        polls: usize,
        waker: Option<Waker>,
    }

    impl Future for Polls {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls += 1;
            self.waker = Some(cx.waker().clone());
            if self.polls == 3 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn the_future_is_polled_first_and_then_only_when_it_woke() {
        let mut woken = Woken::new(Polls {
            polls: 0,
            waker: None,
        });
        let (task, task_waker) = counting();
        let mut cx = Context::from_waker(&task_waker);
        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        // The task polled again for other reasons: the future is left alone.
        for _ in 0..5 {
            assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        }
        assert_eq!(woken.future.polls, 1);
        // It wakes itself: the task is woken, and the next poll reaches it.
        woken.future.waker.take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert_eq!(woken.future.polls, 2);
        woken.future.waker.take().unwrap().wake_by_ref();
        assert!(Pin::new(&mut woken).poll(&mut cx).is_ready());
        assert_eq!(woken.future.polls, 3);
    }

    /// A timer, as the connection's idle timer: it fires, and the wrapped future sees it.
    #[tokio::test(start_paused = true)]
    async fn a_timer_fires_through_it() {
        let start = tokio::time::Instant::now();
        let sleep = std::pin::pin!(tokio::time::sleep(Duration::from_secs(60)));
        // Bounded: a wake not passed on would leave it waiting for good.
        let fired = tokio::time::timeout(Duration::from_secs(120), Woken::new(sleep)).await;
        assert!(fired.is_ok(), "the timer's wake reaches the task");
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }
}
