//! [`Graceful`]: tells every connection to finish its requests and close, and waits until they
//! have, as `hyper_util`'s `GracefulShutdown` does, with a [`Signal`] in place of its watch
//! future. That future was polled, and registered its waker again, on every poll of every
//! connection: about 200 instructions a poll, some twenty polls a streamed request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::sync::watch;

use super::signal::Signal;

/// The shutdown of the connections it watches.
pub(crate) struct Graceful {
    tx: watch::Sender<bool>,
}

impl Graceful {
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::Sender::new(false),
        }
    }

    /// `conn`, shut down gracefully (no new request; the ones in flight finish) once
    /// [`Graceful::shutdown`] is called.
    pub(crate) fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        Watched {
            conn,
            signal: Signal::new(&self.tx.subscribe()),
            told: false,
        }
    }

    /// Tells every watched connection to shut down, and resolves once they all have ended
    /// (been dropped).
    pub(crate) async fn shutdown(self) {
        self.tx.send_replace(true);
        self.tx.closed().await;
    }
}

pin_project! {
    /// A connection [`Graceful`] watches. Its signal lives as long as it does: the shutdown
    /// waits for it.
    pub(crate) struct Watched<C> {
        #[pin]
        conn: C,
        signal: Signal,
        told: bool,
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.told && this.signal.poll_fired(cx).is_ready() {
            *this.told = true;
            this.conn.as_mut().graceful_shutdown();
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTP/1 connection over an in-memory pipe, nothing sent on it yet.
    fn idle_connection() -> (
        impl GracefulConnection<Output = Result<(), hyper::Error>>,
        tokio::io::DuplexStream,
    ) {
        let (server, client) = tokio::io::duplex(1024);
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service);
        (conn, client)
    }

    // Time paused: a shutdown that never ended would fail at the timeout, not hang.
    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_idle_connections_and_waits_for_them() {
        let graceful = Graceful::new();
        let (first, _client1) = idle_connection();
        let (second, _client2) = idle_connection();
        let first = tokio::spawn(graceful.watch(first));
        let second = tokio::spawn(graceful.watch(second));
        // Both are waiting for a request.
        tokio::task::yield_now().await;
        assert!(!first.is_finished() && !second.is_finished());
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown());
        assert!(ended.await.is_ok(), "the shutdown ends");
        // Told to shut down, an idle connection closes: the shutdown waited for both.
        assert!(first.await.unwrap().is_ok());
        assert!(second.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_with_nothing_watched_is_at_once() {
        let ended = tokio::time::timeout(Duration::from_secs(1), Graceful::new().shutdown());
        assert!(ended.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_a_request_in_flight() {
        let graceful = Graceful::new();
        let (server, mut client) = tokio::io::duplex(4096);
        let (entered, in_service) = tokio::sync::oneshot::channel::<()>();
        let entered = Arc::new(Mutex::new(Some(entered)));
        let release = Arc::new(tokio::sync::Notify::new());
        let service = {
            let release = Arc::clone(&release);
            hyper::service::service_fn(move |_req| {
                let (entered, release) = (Arc::clone(&entered), Arc::clone(&release));
                async move {
                    if let Some(entered) = entered.lock().unwrap().take() {
                        let _ = entered.send(());
                    }
                    release.notified().await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(String::from("done")))
                }
            })
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service);
        let task = tokio::spawn(graceful.watch(conn));
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        in_service.await.unwrap();
        let mut shutdown = std::pin::pin!(graceful.shutdown());
        let early = tokio::time::timeout(Duration::from_secs(1), &mut shutdown).await;
        assert!(early.is_err(), "the shutdown waits for the request");
        release.notify_one();
        let ended = tokio::time::timeout(Duration::from_secs(5), &mut shutdown).await;
        assert!(ended.is_ok(), "and ends once the request has");
        assert!(task.await.unwrap().is_ok());
        // The request was answered in full, and the connection closed after it.
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with("done"), "{answer}");
    }
}
