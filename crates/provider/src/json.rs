//! A JSON writer for the translations: the shapes are fixed, so they are written straight to
//! bytes, strings and passed-through values with core's writer (serde_json's bytes).

use bytes::Bytes;
use serde_json::Value;

/// JSON written piece by piece into one buffer.
pub(super) struct Json {
    buf: Vec<u8>,
}

impl Json {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Bytes that are already JSON (punctuation, keys, literals).
    pub(super) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// A string, quoted and escaped.
    pub(super) fn str(&mut self, s: &str) {
        portcullis_core::observe::json::write_str(&mut self.buf, s);
    }

    /// Any value, as JSON.
    pub(super) fn value(&mut self, v: &Value) {
        portcullis_core::observe::json::write_value(&mut self.buf, v);
    }

    pub(super) fn u64(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        self.buf
            .extend_from_slice(portcullis_core::digits::decimal(n, &mut digits).as_bytes());
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn into_bytes(self) -> Bytes {
        Bytes::from(self.buf)
    }

    pub(super) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_make_json() {
        let mut out = Json::with_capacity(8);
        out.raw(b"{\"a\":");
        out.str("q\"\n");
        out.raw(b",\"n\":[");
        out.u64(0);
        out.raw(b",");
        out.u64(u64::MAX);
        out.raw(b"]}");
        let v: Value = serde_json::from_slice(&out.into_vec()).unwrap();
        assert_eq!(v["a"], "q\"\n");
        assert_eq!(v["n"][1], u64::MAX);
    }
}
