//! An incremental scanner that cuts a byte stream into whole Server-Sent Events.

use bytes::{Bytes, BytesMut};

/// Cuts chunks into whole events. Bytes of an event that has not ended yet are held back
/// (`carry`) until it does, so what is forwarded always ends on an event boundary: a client
/// never sees half an event, and an error event added after a broken stream stands alone.
#[derive(Debug, Default)]
pub(crate) struct SseScanner {
    carry: Option<Bytes>,
}

/// What a scanned event asks of the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    Forward,
    Drop,
}

impl SseScanner {
    /// Whether bytes of an unfinished event are held back.
    #[cfg(test)]
    pub(crate) fn has_partial(&self) -> bool {
        self.carry.is_some()
    }

    /// Scans `chunk`, calling `on_event` with the data of each event that ends in it, and
    /// returns the bytes to forward: every complete event, minus those `on_event` dropped.
    pub(crate) fn push(
        &mut self,
        chunk: Bytes,
        mut on_event: impl FnMut(&[u8]) -> Keep,
    ) -> Option<Bytes> {
        let buf = match self.carry.take() {
            None => chunk,
            Some(carry) => {
                let mut joined = BytesMut::with_capacity(carry.len() + chunk.len());
                joined.extend_from_slice(&carry);
                joined.extend_from_slice(&chunk);
                joined.freeze()
            }
        };
        let mut dropped: Vec<(usize, usize)> = Vec::new();
        let mut event_start = 0;
        let mut line_start = 0;
        let mut data = DataLines::default();
        while let Some(offset) = find_newline(&buf[line_start..]) {
            let line_end = line_start + offset;
            let line = trim_cr(&buf[line_start..line_end]);
            if line.is_empty() {
                if !data.is_empty() && on_event(&data.joined(&buf)) == Keep::Drop {
                    dropped.push((event_start, line_end + 1));
                }
                data = DataLines::default();
                event_start = line_end + 1;
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let start = line_start + (line.len() - value.len());
                data.push(start, start + value.len());
            }
            line_start = line_end + 1;
        }
        if event_start < buf.len() {
            self.carry = Some(buf.slice(event_start..));
        }
        let complete = buf.slice(..event_start);
        if dropped.is_empty() {
            return (!complete.is_empty()).then_some(complete);
        }
        let mut kept = BytesMut::with_capacity(complete.len());
        let mut at = 0;
        for (start, end) in dropped {
            kept.extend_from_slice(&complete[at..start]);
            at = end;
        }
        kept.extend_from_slice(&complete[at..]);
        (!kept.is_empty()).then(|| kept.freeze())
    }

    /// At the end of the stream: an unfinished event is dispatched if its data reads as a whole
    /// (a last `data: [DONE]` without its blank line), and returned to forward with the blank
    /// line added; otherwise it is dropped and `None` returned.
    pub(crate) fn finish(&mut self, mut on_event: impl FnMut(&[u8]) -> bool) -> Option<Bytes> {
        let carry = self.carry.take()?;
        let mut data = DataLines::default();
        let mut line_start = 0;
        while line_start < carry.len() {
            let line_end = carry[line_start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(carry.len(), |o| line_start + o);
            let raw = &carry[line_start..line_end];
            let line = trim_cr(raw);
            if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let start = line_start + (line.len() - value.len());
                data.push(start, start + value.len());
            }
            line_start = line_end + 1;
        }
        if data.is_empty() || !on_event(&data.joined(&carry)) {
            return None;
        }
        let mut out = BytesMut::with_capacity(carry.len() + 2);
        out.extend_from_slice(&carry);
        out.extend_from_slice(if carry.ends_with(b"\n") {
            b"\n"
        } else {
            b"\n\n"
        });
        Some(out.freeze())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The `data:` lines of one event, as ranges of the scanned buffer; joined with `\n` only
/// when there is more than one.
#[derive(Default)]
struct DataLines {
    first: Option<(usize, usize)>,
    more: Vec<(usize, usize)>,
}

impl DataLines {
    fn push(&mut self, start: usize, end: usize) {
        if self.first.is_none() {
            self.first = Some((start, end));
        } else {
            self.more.push((start, end));
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn joined<'a>(&self, buf: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let Some((s, e)) = self.first else {
            return std::borrow::Cow::Borrowed(&[]);
        };
        if self.more.is_empty() {
            return std::borrow::Cow::Borrowed(&buf[s..e]);
        }
        let mut out = buf[s..e].to_vec();
        for &(s, e) in &self.more {
            out.push(b'\n');
            out.extend_from_slice(&buf[s..e]);
        }
        std::borrow::Cow::Owned(out)
    }
}

/// The lines of `bytes`, split at each `\n` as `bytes.split(|&b| b == b'\n')` splits them
/// (a `\r` before it kept; a last line without one, or after the last one, empty or not),
/// each end found by [`find_newline`].
///
/// ```
/// use portcullis_core::observe::lines;
/// let all: Vec<&[u8]> = lines(b"data: a\r\n\ndata: b").collect();
/// assert_eq!(all, [&b"data: a\r"[..], b"", b"data: b"]);
/// ```
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let now = rest?;
        Some(match find_newline(now) {
            Some(nl) => {
                rest = Some(&now[nl + 1..]);
                &now[..nl]
            }
            None => {
                rest = None;
                now
            }
        })
    })
}

/// The index of the first `\n` in `hay`, looked for eight bytes at a time: every byte of a
/// stream goes through this search (here and in every layer that cuts a stream into events),
/// and a byte-at-a-time loop was most of the observer's own instructions per event.
///
/// ```
/// use portcullis_core::observe::find_newline;
/// assert_eq!(find_newline(b"data: {\"a\":1}\n\n"), Some(13));
/// assert_eq!(find_newline(b"no end"), None);
/// ```
pub fn find_newline(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // A byte of `x` is zero where the word has a newline; the lowest flagged byte is the
        // first zero byte (a borrow only flags bytes above a zero one).
        let x = word ^ NEWLINES;
        let flagged = x.wrapping_sub(ONES) & !x & HIGHS;
        if flagged != 0 {
            return Some(at + (flagged.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_what_split_gives() {
        for text in [
            &b""[..],
            b"\n",
            b"\n\n\n",
            b"a",
            b"a\n",
            b"a\r\n\r\nb",
            b"data: {\"x\":1}\n\ndata: [DONE]\n\n",
            b"one line that is longer than eight bytes\nand another",
        ] {
            let ours: Vec<&[u8]> = lines(text).collect();
            let theirs: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn newlines_are_found_where_a_byte_by_byte_search_finds_them() {
        let naive = |hay: &[u8]| hay.iter().position(|&b| b == b'\n');
        // Every length to a few words, a newline at every place, neighbours that differ from
        // it by one bit or sit next to it in value, and bytes with the high bit set.
        for len in 0..40 {
            for at in 0..=len {
                for filler in [b'a', 0x0b, 0x09, 0x8a, 0x00, 0xff, 0x0a ^ 0x80] {
                    let mut hay = vec![filler; len];
                    if at < len {
                        hay[at] = b'\n';
                    }
                    assert_eq!(find_newline(&hay), naive(&hay), "{hay:?}");
                }
            }
        }
        let mut rng = fastrand::Rng::with_seed(18);
        for _ in 0..2000 {
            let hay: Vec<u8> = (0..rng.usize(0..64))
                .map(|_| if rng.u8(..) < 8 { b'\n' } else { rng.u8(..) })
                .collect();
            assert_eq!(find_newline(&hay), naive(&hay), "{hay:?}");
        }
    }

    fn scan(chunks: &[&str]) -> (Vec<String>, Vec<String>, SseScanner) {
        let mut scanner = SseScanner::default();
        let mut events = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            let forwarded = scanner.push(Bytes::copy_from_slice(chunk.as_bytes()), |data| {
                events.push(String::from_utf8(data.to_vec()).unwrap());
                Keep::Forward
            });
            if let Some(f) = forwarded {
                out.push(String::from_utf8(f.to_vec()).unwrap());
            }
        }
        (events, out, scanner)
    }

    #[test]
    fn whole_events_pass_through_untouched() {
        let (events, out, s) = scan(&["data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert_eq!(events, ["{\"a\":1}", "[DONE]"]);
        assert_eq!(out, ["data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert!(!s.has_partial());
    }

    #[test]
    fn events_split_across_chunks_are_held_until_whole() {
        let (events, out, s) = scan(&["data: {\"a\"", ":1}\n", "\nda", "ta: x\r\n\r\n"]);
        assert_eq!(events, ["{\"a\":1}", "x"]);
        assert_eq!(out, ["data: {\"a\":1}\n\n", "data: x\r\n\r\n"]);
        assert!(!s.has_partial());
    }

    #[test]
    fn multi_line_data_and_other_fields() {
        let (events, _, _) = scan(&[": comment\nevent: e\ndata:a\ndata: b\nid: 1\n\n"]);
        assert_eq!(events, ["a\nb"]);
    }

    #[test]
    fn dropped_events_are_cut_out() {
        let mut scanner = SseScanner::default();
        let out = scanner
            .push(
                Bytes::from_static(b"data: 1\n\ndata: 2\n\ndata: 3\n\n"),
                |d| {
                    if d == b"2" { Keep::Drop } else { Keep::Forward }
                },
            )
            .unwrap();
        assert_eq!(&out[..], b"data: 1\n\ndata: 3\n\n");
        let none = scanner.push(Bytes::from_static(b"data: 2\n\n"), |_| Keep::Drop);
        assert!(none.is_none());
    }

    #[test]
    fn finish_forwards_a_readable_last_event() {
        let (_, _, mut s) = scan(&["data: [DONE]"]);
        assert!(s.has_partial());
        let out = s.finish(|d| d == b"[DONE]").unwrap();
        assert_eq!(&out[..], b"data: [DONE]\n\n");
        let (_, _, mut s) = scan(&["data: {\"trunc"]);
        assert!(s.finish(|_| false).is_none());
    }
}
