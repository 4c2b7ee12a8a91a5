//! The cost of translating between OpenAI's and Anthropic's shapes: per request (OpenAI
//! request → Anthropic body; Anthropic message → OpenAI completion) and per stream event.
//!
//! Goals: under 5 µs per request, under 1 µs per stream event. Run with
//! `cargo bench -p portcullis-provider --bench anthropic`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/support/bench.rs"]
mod support;

use bytes::Bytes;
use portcullis_core::RequestView;
use portcullis_provider::anthropic::{ResponseTranslator, StreamTranslator, Translator};

/// A typical chat request: a system prompt, a short conversation, a tool.
const CHAT: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":512,"temperature":0.2,
"stream":true,"stream_options":{"include_usage":true},"user":"user-42",
"messages":[
 {"role":"system","content":"You are a helpful assistant. Answer briefly and cite sources."},
 {"role":"user","content":"What is the weather like in Paris today?"},
 {"role":"assistant","content":"Let me check.","tool_calls":[{"id":"toolu_01A","type":"function",
   "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},
 {"role":"tool","tool_call_id":"toolu_01A","content":"18C, sunny, light wind from the west"},
 {"role":"user","content":"Thanks! And should I take an umbrella tomorrow?"}],
"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city",
 "parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string",
 "enum":["celsius","fahrenheit"]}},"required":["city"]}}}],
"tool_choice":"auto"}"#;

const MESSAGE: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",
"model":"claude-sonnet-4-5","content":[{"type":"text","text":"Tomorrow looks dry in Paris: no umbrella needed, though a light jacket would help in the evening."},
{"type":"tool_use","id":"toolu_01B","name":"get_weather","input":{"city":"Paris","day":"tomorrow"}}],
"stop_reason":"tool_use","stop_sequence":null,
"usage":{"input_tokens":412,"output_tokens":58,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800}}"#;

const START: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":412,\"cache_read_input_tokens\":1800,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01B\",\"name\":\"get_weather\",\"input\":{}}}\n\n";

const TEXT_DELTA: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" umbrella needed,\"}}\n\n";

const JSON_DELTA: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Par\"}}\n\n";

const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

fn bench(c: &mut Criterion) {
    let view = RequestView::parse(Bytes::from_static(CHAT.as_bytes())).unwrap();
    let translator = Translator::new();
    let mut group = c.benchmark_group("anthropic");
    group.bench_function("request_openai_to_anthropic", |b| {
        b.iter(|| black_box(translator.request(black_box(&view)).unwrap()));
    });
    let response = ResponseTranslator::default();
    group.bench_function("response_anthropic_to_openai", |b| {
        b.iter(|| {
            black_box(
                response
                    .json(black_box(MESSAGE.as_bytes()), 1_700_000_000)
                    .unwrap(),
            )
        });
    });
    let started = || {
        let mut stream: StreamTranslator = response.stream(1_700_000_000);
        black_box(stream.push(START));
        stream
    };
    support::chunks(
        &mut group,
        started,
        StreamTranslator::push,
        &[
            ("chunk_text_delta", TEXT_DELTA),
            ("chunk_input_json_delta", JSON_DELTA),
            ("chunk_ping_dropped", PING),
        ],
        // An event split across two network chunks: held, then completed.
        ("chunk_text_delta_split_in_two", TEXT_DELTA, 40),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
