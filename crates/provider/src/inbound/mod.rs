//! Inbound APIs: layers that let clients of another provider's API call a stack that speaks
//! OpenAI's chat completions.
//!
//! Inside Portcullis every stack speaks OpenAI chat completions (the native providers
//! translate on the way out). An inbound layer sits in front of such a stack and translates
//! the other way: the client's request into a chat completion, the answer back into the
//! client's shape.
//!
//! - [`anthropic`]: Anthropic's Messages API (`POST /v1/messages`), so that the Anthropic
//!   SDKs, and tools built on them, can use any provider.

pub mod anthropic;
