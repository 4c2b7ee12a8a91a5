//! The cost of the inbound Messages API translation: per request (Anthropic Messages request
//! → OpenAI chat body; OpenAI chat completion → Anthropic message) and per stream chunk
//! (OpenAI chunk → Anthropic events).
//!
//! Goals: under 5 µs per request, under 1 µs per chunk. Run with
//! `cargo bench -p portcullis-provider --bench inbound`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/support/bench.rs"]
mod support;

use portcullis_provider::inbound::anthropic::{Answer, StreamTranslator, Translator};

/// A typical Messages request, as Anthropic's SDKs send it: a system prompt, a short
/// conversation with a tool round trip, a tool.
const MESSAGES: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":512,"temperature":0.2,
"stream":true,"metadata":{"user_id":"user-42"},
"system":"You are a helpful assistant. Answer briefly and cite sources.",
"messages":[
 {"role":"user","content":"What is the weather like in Paris today?"},
 {"role":"assistant","content":[{"type":"text","text":"Let me check."},
   {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Paris","unit":"celsius"}}]},
 {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01A","content":"18C, sunny, light wind from the west"},
   {"type":"text","text":"Thanks! And should I take an umbrella tomorrow?"}]}],
"tools":[{"name":"get_weather","description":"Current weather for a city",
 "input_schema":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string",
 "enum":["celsius","fahrenheit"]}},"required":["city"]}}],
"tool_choice":{"type":"auto"}}"#;

const COMPLETION: &str = r#"{"id":"chatcmpl-9xFDUDYJgAACzvnptvVoYEL","object":"chat.completion","created":1700000000,
"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",
"content":"Tomorrow looks dry in Paris: no umbrella needed, though a light jacket would help in the evening.",
"tool_calls":[{"id":"call_01B","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"day\":\"tomorrow\"}"}}]},
"finish_reason":"tool_calls"}],
"usage":{"prompt_tokens":2212,"completion_tokens":58,"total_tokens":2270,"prompt_tokens_details":{"cached_tokens":1800}}}"#;

const FIRST: &[u8] = b"data: {\"id\":\"chatcmpl-9xF\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";

const TEXT_CHUNK: &[u8] = b"data: {\"id\":\"chatcmpl-9xF\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" umbrella needed,\"},\"finish_reason\":null}]}\n\n";

const TOOL_START: &[u8] = b"data: {\"id\":\"chatcmpl-9xF\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_01B\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n";

const ARGUMENTS_CHUNK: &[u8] = b"data: {\"id\":\"chatcmpl-9xF\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\": \\\"Par\"}}]},\"finish_reason\":null}]}\n\n";

fn bench(c: &mut Criterion) {
    let translator = Translator::new();
    let mut group = c.benchmark_group("inbound_anthropic");
    group.bench_function("request_messages_to_openai", |b| {
        b.iter(|| {
            black_box(
                translator
                    .translate(black_box(MESSAGES.as_bytes()))
                    .unwrap(),
            )
        });
    });
    let answer = Answer::default();
    group.bench_function("response_openai_to_message", |b| {
        b.iter(|| black_box(answer.json(black_box(COMPLETION.as_bytes())).unwrap()));
    });
    // Each stream is past its first chunk and, for the tool case, its tool call's start.
    let started = |first: &'static [u8]| {
        move || {
            let mut stream: StreamTranslator = answer.stream();
            black_box(stream.push(FIRST));
            black_box(stream.push(first));
            stream
        }
    };
    support::chunks(
        &mut group,
        started(TEXT_CHUNK),
        StreamTranslator::push,
        &[("chunk_text_delta", TEXT_CHUNK)],
        // A chunk split across two network reads: held, then completed.
        ("chunk_text_delta_split_in_two", TEXT_CHUNK, 60),
    );
    support::chunks(
        &mut group,
        started(TOOL_START),
        StreamTranslator::push,
        &[("chunk_input_json_delta", ARGUMENTS_CHUNK)],
        ("chunk_input_json_delta_split_in_two", ARGUMENTS_CHUNK, 60),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
