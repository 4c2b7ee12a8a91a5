//! Test data shared by the one-pass readers' tests: JSON documents written byte by byte
//! (escapes, broken UTF-8, control characters, repeated keys, numbers serde_json refuses), so
//! a reader can be checked against serde_json on what upstreams send and on what they should
//! not.

use proptest::prelude::*;

/// A JSON document as written: literals and strings exactly as they go into the bytes
/// (escapes, broken UTF-8, raw control characters and all), keys likewise.
#[derive(Clone, Debug)]
pub(crate) enum J {
    Lit(&'static str),
    Str(&'static [u8]),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

/// How the bytes are spaced.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Style {
    Compact,
    Spaced,
    Lines,
}

impl J {
    pub(crate) fn write(&self, style: Style, out: &mut Vec<u8>) {
        let gap: &[u8] = match style {
            Style::Compact => b"",
            Style::Spaced => b" ",
            Style::Lines => b"\r\n\t",
        };
        match self {
            J::Lit(l) => out.extend_from_slice(l.as_bytes()),
            J::Str(s) => {
                out.push(b'"');
                out.extend_from_slice(s);
                out.push(b'"');
            }
            J::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(gap);
                    item.write(style, out);
                }
                out.extend_from_slice(gap);
                out.push(b']');
            }
            J::Obj(members) => {
                out.push(b'{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(gap);
                    out.push(b'"');
                    out.extend_from_slice(key.as_bytes());
                    out.extend_from_slice(b"\"");
                    out.extend_from_slice(gap);
                    out.push(b':');
                    out.extend_from_slice(gap);
                    value.write(style, out);
                }
                out.extend_from_slice(gap);
                out.push(b'}');
            }
        }
    }
}

pub(crate) fn string() -> impl Strategy<Value = J> {
    let valid = prop::sample::select(vec![
        &b"Hello! How can I assist you today?"[..],
        b"",
        b"text",
        b"te\\u0078t",
        b"a \\\"quoted\\\" word\\nand a line",
        b"caf\\u00e9 \\ud83d\\ude00 \\/ \\\\",
        "é 中 😀".as_bytes(),
        b"image_url",
    ]);
    // serde_json refuses each of these: rare, or few documents would be JSON.
    let invalid = prop::sample::select(vec![
        &b"\\ud800"[..],
        b"\xff\xfe",
        b"raw\x01control",
        b"\\x",
    ]);
    prop_oneof![60 => valid, 1 => invalid].prop_map(J::Str)
}

pub(crate) fn key() -> impl Strategy<Value = &'static str> {
    let plain = prop::sample::select(vec![
        "choices",
        "content",
        "message",
        "text",
        "type",
        "hook_results",
        "role",
        "index",
        "delta",
        "x",
    ]);
    // Keys the one pass leaves to serde_json.
    let refused = prop::sample::select(vec!["te\\u0078t", "\\u0063ontent", "é"]);
    prop_oneof![20 => plain, 1 => refused]
}

pub(crate) fn any_value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        30 => prop::sample::select(vec!["null", "true", "false", "0", "-1.5", "42"])
            .prop_map(J::Lit),
        // Numbers the one pass leaves to serde_json, and ones serde_json refuses.
        1 => prop::sample::select(vec!["1e3", "12345678901234567890123", "1e999", "01"])
            .prop_map(J::Lit),
    ];
    let leaf = prop_oneof![3 => leaf, 1 => string()];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
            prop::collection::vec((key(), inner), 0..4).prop_map(J::Obj),
        ]
    })
}

/// An object of some of `members`, in any order, one of them now and then twice.
pub(crate) fn object(members: Vec<(&'static str, BoxedStrategy<J>)>) -> BoxedStrategy<J> {
    let picked: Vec<_> = members
        .into_iter()
        .map(|(k, v)| prop::option::weighted(0.8, v.prop_map(move |v| (k, v))))
        .collect();
    (
        picked,
        any::<prop::sample::Index>(),
        prop::bool::weighted(0.1),
    )
        .prop_flat_map(move |(picked, twice, dup)| {
            let mut members: Vec<(&'static str, J)> = picked.into_iter().flatten().collect();
            if dup && !members.is_empty() {
                let again = members[twice.index(members.len())].clone();
                members.push(again);
            }
            Just(members).prop_shuffle()
        })
        .prop_map(J::Obj)
        .boxed()
}

/// `top` written out as bytes in some spacing; now and then a byte broken, dropped, or
/// trailing (bytes serde_json refuses, for a reader to refuse too).
pub(crate) fn document(top: impl Strategy<Value = J>) -> impl Strategy<Value = Vec<u8>> {
    let style = prop::sample::select(vec![Style::Compact, Style::Spaced, Style::Lines]);
    let broken = prop::option::weighted(
        0.05,
        (
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                Some(b'"'),
                Some(b'}'),
                Some(b'\\'),
                Some(0xff),
                Some(b' '),
                Some(b'1'),
                None,
            ]),
        ),
    );
    let trailing = prop_oneof![
        20 => prop::sample::select(vec![&b""[..], b" \n"]),
        1 => prop::sample::select(vec![&b"x"[..], b"{}"]),
    ];
    (top, style, broken, trailing).prop_map(|(top, style, broken, trailing)| {
        let mut bytes = Vec::new();
        top.write(style, &mut bytes);
        if let Some((at, byte)) = broken {
            let at = at.index(bytes.len());
            match byte {
                Some(b) => bytes[at] = b,
                None => {
                    bytes.remove(at);
                }
            }
        }
        bytes.extend_from_slice(trailing);
        bytes
    })
}
