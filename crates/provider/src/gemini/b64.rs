//! Base64, as the Vertex credentials (PEM keys, JWTs) and OpenAI's `encoding_format: base64`
//! embeddings need it: standard alphabet with padding, and URL-safe without.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool, out: &mut String) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        let keep = chunk.len() + 1;
        for (i, s) in sextets.into_iter().enumerate() {
            if i < keep {
                out.push(char::from(alphabet[s as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
}

/// Standard base64 with padding.
pub(crate) fn encode(bytes: &[u8], out: &mut String) {
    encode_with(bytes, STANDARD, true, out);
}

/// URL-safe base64 without padding (JWT segments).
pub(crate) fn encode_url(bytes: &[u8]) -> String {
    let mut out = String::new();
    encode_with(bytes, URL_SAFE, false, &mut out);
    out
}

/// Decodes standard base64, ignoring whitespace (PEM bodies are wrapped); `None` for any
/// other character or a bad length.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut padding = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (padding <= 2 && bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for input in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0xff, 0xfe],
        ] {
            let mut s = String::new();
            encode(input, &mut s);
            assert_eq!(decode(&s).unwrap(), input, "{s}");
        }
        let mut s = String::new();
        encode(b"foobar!", &mut s);
        assert_eq!(s, "Zm9vYmFyIQ==");
        assert_eq!(encode_url(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert!(decode("Zm9v*").is_none());
    }
}
