//! Generated JSON for the property tests of the one-pass reads ([`super::chunk`],
//! [`super::start`]): chunks as upstreams send them, values of any shape, written with any
//! white space and escapes, and broken bytes.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// 2,000 cases per property, unless `PROPTEST_CASES` asks for more (or fewer). No regression
/// files are written: a failure found is kept as a plain test.
pub(crate) fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2000;
    }
    config.failure_persistence = None;
    config
}

/// A JSON value, written out by [`Style`] in one of many equivalent (or broken) forms.
#[derive(Clone, Debug)]
pub(crate) enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// How a value is written: white space between tokens, characters written as escapes,
/// object entries written twice, keys written with escapes.
#[derive(Clone, Debug)]
pub(crate) struct Style {
    seed: u64,
    spaces: bool,
    escapes: bool,
    repeats: bool,
    escaped_keys: bool,
}

impl Style {
    pub(crate) fn plain() -> impl Strategy<Value = Style> {
        (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(seed, spaces, escapes)| Style {
            seed,
            spaces,
            escapes,
            repeats: false,
            escaped_keys: false,
        })
    }

    pub(crate) fn any() -> impl Strategy<Value = Style> {
        (Style::plain(), any::<bool>(), any::<bool>()).prop_map(|(style, repeats, keys)| Style {
            repeats,
            escaped_keys: keys,
            ..style
        })
    }

    pub(crate) fn write(&self, value: &J) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut out = String::new();
        self.value(value, &mut rng, &mut out);
        self.space(&mut rng, &mut out);
        out.into_bytes()
    }

    fn space(&self, rng: &mut fastrand::Rng, out: &mut String) {
        if self.spaces && rng.bool() {
            out.push_str([" ", "\n", "\t", "\r\n", "  "][rng.usize(..5)]);
        }
    }

    fn value(&self, value: &J, rng: &mut fastrand::Rng, out: &mut String) {
        self.space(rng, out);
        match value {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => self.string(s, self.escapes, rng, out),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.space(rng, out);
                        out.push(',');
                    }
                    self.value(item, rng, out);
                }
                self.space(rng, out);
                out.push(']');
            }
            J::Obj(entries) => {
                out.push('{');
                let mut first = true;
                for (key, value) in entries {
                    let times = if self.repeats && rng.u8(..) < 20 {
                        2
                    } else {
                        1
                    };
                    for _ in 0..times {
                        if !first {
                            self.space(rng, out);
                            out.push(',');
                        }
                        first = false;
                        self.space(rng, out);
                        self.string(key, self.escaped_keys && rng.u8(..) < 60, rng, out);
                        self.space(rng, out);
                        out.push(':');
                        self.value(value, rng, out);
                    }
                }
                self.space(rng, out);
                out.push('}');
            }
        }
    }

    fn string(&self, s: &str, escapes: bool, rng: &mut fastrand::Rng, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' if rng.bool() => out.push_str("\\n"),
                '\t' if rng.bool() => out.push_str("\\t"),
                '\u{8}' if rng.bool() => out.push_str("\\b"),
                c if (c as u32) < 0x20 || (escapes && rng.u8(..) < 50) => {
                    if c == '/' && rng.bool() {
                        out.push_str("\\/");
                        continue;
                    }
                    let mut units = [0; 2];
                    for unit in c.encode_utf16(&mut units) {
                        if rng.bool() {
                            out.push_str(&format!("\\u{unit:04x}"));
                        } else {
                            out.push_str(&format!("\\u{unit:04X}"));
                        }
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        ".{0,6}",
        "[a-z /\"\\\\\n\t]{0,8}",
        prop::sample::select(vec![
            "",
            "\"",
            "\\",
            "/",
            "\n\r\t\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "é",
            "😀 👍",
            "\u{ffff}\u{10000}\u{10ffff}",
            "中文",
            "{\"city\":\"Paris\"}",
        ])
        .prop_map(str::to_owned),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..1_000_000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "0", "-0", "-1", "1.0", "1.5e3", "1e999", "-2.5E-3", "4294967295", "4294967296",
            "18446744073709551615", "18446744073709551616", "1E+2",
        ])
        .prop_map(str::to_owned),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "model",
        "choices",
        "usage",
        "error",
        "index",
        "delta",
        "message",
        "text",
        "finish_reason",
        "content",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "role",
        "tool_calls",
        "id",
        "x",
        "",
        "é",
    ])
    .prop_map(str::to_owned)
}

/// Any JSON value, a few levels deep.
pub(crate) fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number().prop_map(J::Num),
        text().prop_map(J::Str),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
            prop::collection::vec((key(), inner), 0..4).prop_map(J::Obj),
        ]
    })
}

/// `typed`, or now and then (when `odd`) `null` or a value of any type.
fn or_odd(typed: BoxedStrategy<J>, odd: bool) -> BoxedStrategy<J> {
    if odd {
        prop_oneof![6 => typed, 1 => Just(J::Null), 1 => value()].boxed()
    } else {
        typed
    }
}

fn string(odd: bool) -> BoxedStrategy<J> {
    or_odd(text().prop_map(J::Str).boxed(), odd)
}

/// An entry that is there or not.
fn entry(key: &'static str, value: BoxedStrategy<J>) -> BoxedStrategy<Option<(String, J)>> {
    prop::option::of(value.prop_map(move |v| (key.to_owned(), v))).boxed()
}

/// An object of the given entries, in any order, with extra ones of any name when `odd`.
fn object(entries: Vec<BoxedStrategy<Option<(String, J)>>>, odd: bool) -> BoxedStrategy<J> {
    let extra = if odd {
        prop::collection::vec((key(), value()), 0..3).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (entries, extra)
        .prop_map(|(entries, extra)| entries.into_iter().flatten().chain(extra).collect())
        .prop_shuffle()
        .prop_map(J::Obj)
        .boxed()
}

fn tool_calls() -> BoxedStrategy<J> {
    let call = (0u64..3, text(), text()).prop_map(|(i, name, args)| {
        J::Obj(vec![
            ("index".into(), J::Num(i.to_string())),
            ("id".into(), J::Str(format!("call_{i}"))),
            ("type".into(), J::Str("function".into())),
            (
                "function".into(),
                J::Obj(vec![
                    ("name".into(), J::Str(name)),
                    ("arguments".into(), J::Str(args)),
                ]),
            ),
        ])
    });
    prop::collection::vec(call, 0..3).prop_map(J::Arr).boxed()
}

fn content(odd: bool) -> BoxedStrategy<J> {
    let object = object(
        vec![
            entry("content", string(odd)),
            entry("role", Just(J::Str("assistant".into())).boxed()),
            entry("tool_calls", tool_calls()),
            entry(
                "refusal",
                prop_oneof![Just(J::Null), Just(J::Str(String::new())), string(odd)].boxed(),
            ),
            entry("reasoning_content", string(odd)),
        ],
        odd,
    );
    or_odd(object, odd)
}

fn index(odd: bool) -> BoxedStrategy<J> {
    let typed = prop_oneof![4 => Just(0u64), 1 => 1u64..3]
        .prop_map(|i| J::Num(i.to_string()))
        .boxed();
    if odd {
        prop_oneof![6 => typed, 1 => number().prop_map(J::Num), 1 => value()].boxed()
    } else {
        typed
    }
}

fn choice(odd: bool) -> BoxedStrategy<J> {
    object(
        vec![
            entry("index", index(odd)),
            entry("delta", content(odd)),
            entry("message", content(odd)),
            entry("text", string(odd)),
            entry("finish_reason", string(odd)),
            entry("logprobs", Just(J::Null).boxed()),
        ],
        odd,
    )
}

fn count(odd: bool) -> BoxedStrategy<J> {
    if odd {
        prop_oneof![6 => (0u64..100_000).prop_map(|n| J::Num(n.to_string())), 1 => number().prop_map(J::Num), 1 => value()].boxed()
    } else {
        prop_oneof![3 => 0u64..100_000, 1 => any::<u64>()]
            .prop_map(|n| J::Num(n.to_string()))
            .boxed()
    }
}

/// A chunk: the fields a stream event or an answer has, each there or not; with `odd`,
/// values of other types and entries of any name too.
pub(crate) fn chunk(odd: bool) -> BoxedStrategy<J> {
    let usage = object(
        vec![
            entry("prompt_tokens", count(odd)),
            entry("completion_tokens", count(odd)),
            entry("total_tokens", count(odd)),
            entry(
                "prompt_tokens_details",
                Just(J::Obj(vec![("cached_tokens".into(), J::Num("0".into()))])).boxed(),
            ),
        ],
        odd,
    );
    let error = object(
        vec![
            entry("message", string(odd)),
            entry("type", Just(J::Str("server_error".into())).boxed()),
            entry("code", Just(J::Null).boxed()),
        ],
        odd,
    );
    let choices = prop_oneof![
        3 => prop::collection::vec(choice(odd), 1..3).prop_map(J::Arr),
        1 => Just(J::Arr(Vec::new())),
    ]
    .boxed();
    object(
        vec![
            entry("id", Just(J::Str("chatcmpl-1".into())).boxed()),
            entry(
                "object",
                Just(J::Str("chat.completion.chunk".into())).boxed(),
            ),
            entry("created", Just(J::Num("1700000000".into())).boxed()),
            entry("model", string(odd)),
            entry("system_fingerprint", string(odd)),
            entry("choices", or_odd(choices, odd)),
            entry("usage", or_odd(usage, odd)),
            entry("error", or_odd(error, odd)),
        ],
        odd,
    )
}

/// A byte changed, inserted, removed, or the bytes cut short.
#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    None,
    Cut(prop::sample::Index),
    Remove(prop::sample::Index),
    Insert(prop::sample::Index, u8),
    Replace(prop::sample::Index, u8),
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        prop::sample::select(b"\"\\,:{}[]0n \x0c\x00\x01\xff\xc3".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        2 => Just(Mutation::None),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Cut),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => (any::<prop::sample::Index>(), byte.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<prop::sample::Index>(), byte).prop_map(|(i, b)| Mutation::Replace(i, b)),
    ]
}

impl Mutation {
    pub(crate) fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self {
            Mutation::None => {}
            Mutation::Cut(i) => bytes.truncate(i.index(bytes.len())),
            Mutation::Remove(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            Mutation::Replace(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
        }
    }
}
