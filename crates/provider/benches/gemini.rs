//! The cost of translating between OpenAI's and Gemini's shapes: per request (OpenAI request
//! → Gemini body; Gemini answer → OpenAI completion) and per stream chunk.
//!
//! Goals: under 5 µs per request, under 1 µs per stream chunk. Run with
//! `cargo bench -p portcullis-provider --bench gemini`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/support/bench.rs"]
mod support;

use bytes::Bytes;
use portcullis_core::RequestView;
use portcullis_provider::gemini::{ResponseTranslator, StreamTranslator, Translator};

/// A typical chat request: a system prompt, a short conversation with a tool call, a tool.
const CHAT: &str = r#"{"model":"gemini-2.5-flash","max_tokens":512,"temperature":0.2,
"stream":true,"stream_options":{"include_usage":true},"user":"user-42",
"messages":[
 {"role":"system","content":"You are a helpful assistant. Answer briefly and cite sources."},
 {"role":"user","content":"What is the weather like in Paris today?"},
 {"role":"assistant","content":"Let me check.","tool_calls":[{"id":"call_r1_0_0__thought__CiQBcsjafQ==","type":"function",
   "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},
 {"role":"tool","tool_call_id":"call_r1_0_0__thought__CiQBcsjafQ==","content":"18C, sunny, light wind from the west"},
 {"role":"user","content":"Thanks! And should I take an umbrella tomorrow?"}],
"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city",
 "parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string",
 "enum":["celsius","fahrenheit"]}},"required":["city"]}}}],
"tool_choice":"auto"}"#;

const ANSWER: &str = r#"{"candidates": [{"content": {"parts": [{"text": "Tomorrow looks dry in Paris: no umbrella needed, though a light jacket would help in the evening."},
{"functionCall": {"name": "get_weather","args": {"city": "Paris","day": "tomorrow"}},"thoughtSignature": "CtwDAdHtim9"}],"role": "model"},
"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 412,"candidatesTokenCount": 58,"totalTokenCount": 600,
"cachedContentTokenCount": 300,"thoughtsTokenCount": 130},"modelVersion": "gemini-2.5-flash","responseId": "Wq3BaOnfEt2pkdUPtb2gkQE"}"#;

const FIRST: &[u8] = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Tomorrow\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 412,\"totalTokenCount\": 412},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"Wq3BaOnfEt2pkdUPtb2gkQE\"}\r\n\r\n";

/// A text chunk as Google writes it: the text wrapped in the candidate, usage so far, model
/// and id.
const TEXT: &[u8] = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" looks dry in Paris: no umbrella needed,\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 412,\"candidatesTokenCount\": 12,\"totalTokenCount\": 424},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"Wq3BaOnfEt2pkdUPtb2gkQE\"}\r\n\r\n";

const CALL: &[u8] = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"get_weather\",\"args\": {\"city\": \"Paris\",\"day\": \"tomorrow\"}},\"thoughtSignature\": \"CtwDAdHtim9\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 412,\"totalTokenCount\": 412},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"Wq3BaOnfEt2pkdUPtb2gkQE\"}\r\n\r\n";

fn bench(c: &mut Criterion) {
    let view = RequestView::parse(Bytes::from_static(CHAT.as_bytes())).unwrap();
    let translator = Translator::new();
    let mut group = c.benchmark_group("gemini");
    group.bench_function("request_openai_to_gemini", |b| {
        b.iter(|| black_box(translator.request(black_box(&view)).unwrap()));
    });
    let response = ResponseTranslator::new("gemini-2.5-flash");
    group.bench_function("response_gemini_to_openai", |b| {
        b.iter(|| {
            black_box(
                response
                    .json(black_box(ANSWER.as_bytes()), 1_700_000_000)
                    .unwrap(),
            )
        });
    });
    let started = || {
        let mut stream: StreamTranslator = response.stream(1_700_000_000);
        black_box(stream.push(FIRST));
        stream
    };
    support::chunks(
        &mut group,
        started,
        StreamTranslator::push,
        &[("chunk_text", TEXT), ("chunk_function_call", CALL)],
        // A chunk split across two network reads: held, then completed.
        ("chunk_text_split_in_two", TEXT, 60),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
