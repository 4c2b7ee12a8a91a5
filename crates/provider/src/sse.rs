//! Server-Sent Events shared by the translating streams: cutting the upstream's bytes into
//! whole events, and the body that translates a stream as it flows.
//!
//! Each provider's stream translator (Anthropic's events → OpenAI chunks, Gemini's chunks →
//! OpenAI chunks, OpenAI chunks → Anthropic's events for the inbound Messages API) differs
//! only in what one event becomes; the framing and the body's poll loop live here once.
//!
//! `portcullis_core` has an event scanner of its own (`observe::sse`), crate-private: it
//! forwards the events' bytes, where a translator needs only their `data:`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::BoxError;
use portcullis_core::error::{TimeoutPhase, UpstreamTimeout};
use tokio::time::{Instant, Sleep};

/// Calls `on_event` with the data of every whole event in `carry` (bytes held back from
/// earlier chunks) followed by `chunk`, and keeps in `carry` the bytes of an event not yet
/// ended. `on_event` answers whether to go on: `false` ends the stream, and what follows is
/// dropped.
pub(crate) fn push(carry: &mut Vec<u8>, chunk: &[u8], on_event: impl FnMut(&[u8]) -> bool) {
    if carry.is_empty() {
        let used = cut(chunk, on_event);
        carry.extend_from_slice(&chunk[used..]);
    } else {
        carry.extend_from_slice(chunk);
        let used = cut(carry, on_event);
        carry.drain(..used);
    }
}

/// At the end of the upstream stream: the event held back in `carry`, if any, is read as if
/// its blank line had come (a last `data: [DONE]` sent without it).
pub(crate) fn flush(carry: &mut Vec<u8>, on_event: impl FnMut(&[u8]) -> bool) {
    if carry.iter().all(u8::is_ascii_whitespace) {
        carry.clear();
        return;
    }
    let mut last = std::mem::take(carry);
    last.extend_from_slice(b"\n\n");
    cut(&last, on_event);
}

/// Dispatches every whole event in `buf`; returns how many bytes they took (all of `buf`
/// once `on_event` ends the stream).
fn cut(buf: &[u8], mut on_event: impl FnMut(&[u8]) -> bool) -> usize {
    let mut event_start = 0;
    let mut line_start = 0;
    // The event's `data:` lines: the first as a range, any more joined (rare).
    let mut data: Option<(usize, usize)> = None;
    let mut joined: Option<Vec<u8>> = None;
    // A chunk's data is one long line: searched eight bytes at a time.
    while let Some(offset) = crate::scan::find_either(&buf[line_start..], b'\n', b'\n') {
        let line_end = line_start + offset;
        let line = &buf[line_start..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            let go_on = match (&joined, data) {
                (Some(all), _) => on_event(all),
                (None, Some((s, e))) => on_event(&buf[s..e]),
                (None, None) => true,
            };
            if !go_on {
                return buf.len();
            }
            data = None;
            joined = None;
            event_start = line_end + 1;
        } else if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            let start = line_start + (line.len() - value.len());
            match (&mut joined, data) {
                (Some(all), _) => {
                    all.push(b'\n');
                    all.extend_from_slice(value);
                }
                (None, Some((s, e))) => {
                    let mut all = buf[s..e].to_vec();
                    all.push(b'\n');
                    all.extend_from_slice(value);
                    joined = Some(all);
                }
                (None, None) => data = Some((start, start + value.len())),
            }
        }
        line_start = line_end + 1;
    }
    event_start
}

/// A stream translator, as the [`TranslatedBody`] drives it.
pub(crate) trait Translate {
    /// Whether the inner body is still read once the translation has ended, so the layers
    /// inside see their stream complete rather than dropped (a layer over a service), or
    /// left at once, closing the upstream connection (a provider).
    const DRAIN: bool;

    /// Translates `chunk`; empty when nothing is to be sent yet.
    fn push(&mut self, chunk: &[u8]) -> Bytes;

    /// Whether more input is wanted.
    fn is_open(&self) -> bool;

    /// The inner body ended: the last bytes to send (empty for none), or the error that ends
    /// the translated body.
    fn end(&mut self) -> Result<Bytes, BoxError>;

    /// The inner body broke with `err`: the last bytes to send, or the error that ends the
    /// translated body.
    fn broke(&mut self, err: BoxError) -> Result<Bytes, BoxError>;
}

pin_project! {
    /// A body translated by `T` as it flows, failing with an idle timeout when the inner body
    /// sends nothing for too long.
    pub(crate) struct TranslatedBody<B, T> {
        #[pin]
        inner: B,
        translator: T,
        idle: Option<(Pin<Box<Sleep>>, Duration)>,
        ended: bool,
    }
}

impl<B, T> TranslatedBody<B, T> {
    /// Translates `inner` with `translator`; `idle` is the longest wait for a chunk.
    pub(crate) fn new(inner: B, translator: T, idle: Option<Duration>) -> Self {
        Self {
            inner,
            translator,
            idle: idle.map(|after| (Box::pin(tokio::time::sleep(after)), after)),
            ended: false,
        }
    }

    /// The translator.
    pub(crate) fn translator(&self) -> &T {
        &self.translator
    }
}

impl<B, T> http_body::Body for TranslatedBody<B, T>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    T: Translate,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.ended || (!T::DRAIN && !this.translator.is_open()) {
                *this.ended = true;
                return Poll::Ready(None);
            }
            let last = match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some((sleep, after)) = this.idle.as_mut() {
                        sleep.as_mut().reset(Instant::now() + *after);
                    }
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let out = this.translator.push(&data);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    continue;
                }
                Poll::Ready(Some(Err(err))) => this.translator.broke(err.into()),
                Poll::Ready(None) => this.translator.end(),
                Poll::Pending => {
                    let Some((sleep, after)) = this.idle.as_mut() else {
                        return Poll::Pending;
                    };
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    Err(UpstreamTimeout::new(TimeoutPhase::Idle, *after).into())
                }
            };
            *this.ended = true;
            return Poll::Ready(match last {
                Ok(out) if out.is_empty() => None,
                Ok(out) => Some(Ok(Frame::data(out))),
                Err(err) => Some(Err(err)),
            });
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(carry: &mut Vec<u8>, chunk: &[u8]) -> Vec<String> {
        let mut seen = Vec::new();
        push(carry, chunk, |data| {
            seen.push(String::from_utf8_lossy(data).into_owned());
            data != b"[DONE]"
        });
        seen
    }

    #[test]
    fn events_are_cut_across_chunks_and_lines_joined() {
        let mut carry = Vec::new();
        assert_eq!(events(&mut carry, b"data: a\r\n\r\ndata: b"), ["a"]);
        assert_eq!(carry, b"data: b");
        assert_eq!(events(&mut carry, b"\ndata:c\n\nevent: x\n"), ["b\nc"]);
        assert_eq!(carry, b"event: x\n");
        assert!(events(&mut carry, b"\n").is_empty());
        assert!(carry.is_empty());
    }

    #[test]
    fn an_event_that_ends_the_stream_drops_what_follows() {
        let mut carry = Vec::new();
        assert_eq!(
            events(&mut carry, b"data: [DONE]\n\ndata: x\n\ndata: y"),
            ["[DONE]"]
        );
        assert!(carry.is_empty());
    }

    #[test]
    fn flush_reads_a_last_event_without_its_blank_line() {
        let mut carry = b"data: [DONE]".to_vec();
        let mut seen = Vec::new();
        flush(&mut carry, |data| {
            seen.push(data.to_vec());
            true
        });
        assert_eq!(seen, [b"[DONE]".to_vec()]);
        let mut blank = b"\r\n".to_vec();
        flush(&mut blank, |_| panic!("no event in white space"));
        assert!(blank.is_empty());
    }
}
