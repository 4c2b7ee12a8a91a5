//! Prices per million tokens and the usage they apply to.
//!
//! [`PriceTable::builtin`] holds list prices for the models users name most; a config adds
//! or overrides prices per provider. [`TokenUsage`] is usage normalised across providers
//! before pricing: uncached input, cached input read, cache writes and output (reasoning
//! included), whatever shape the provider reported.
//!
//! ```
//! use portcullis_budget::price::{Price, PriceTable, TokenUsage};
//!
//! let table = PriceTable::builtin();
//! let price = table.lookup(Some("openai"), "gpt-4o-2024-08-06").unwrap();
//! // OpenAI counts cached tokens inside prompt_tokens.
//! let usage = TokenUsage::from_json(&serde_json::json!({"usage": {
//!     "prompt_tokens": 1000, "completion_tokens": 100,
//!     "prompt_tokens_details": {"cached_tokens": 400}}})).unwrap();
//! assert_eq!((usage.input, usage.cached_input, usage.output), (600, 400, 100));
//! // 600 × $2.50 + 400 × $1.25 + 100 × $10 per million = $0.003
//! assert_eq!(price.cost(&usage).micro_usd, 3_000);
//!
//! // An override for a self-hosted model.
//! let table = table.with(Some("vllm"), "llama-3.1-8b", Price::per_million_usd(0.02, 0.02));
//! assert!(table.lookup(Some("vllm"), "llama-3.1-8b").is_some());
//! assert!(table.lookup(None, "a-model-nobody-priced").is_none());
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_core::BuildError;
use portcullis_core::facts::{Cost, Usage};
use serde_json::Value;

use crate::policy::usd_to_micros;

/// The date of the built-in prices: the providers' public list prices for standard
/// (non-batch, non-priority) use, short prompts (below the long-context tiers).
pub const PRICES_AS_OF: &str = "2025-08-01";

/// The price of one model in micro-USD per million tokens (so $2.50 is 2,500,000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Price {
    /// Uncached input.
    pub input: u64,
    /// Output, reasoning included.
    pub output: u64,
    /// Input read from the provider's prompt cache.
    pub cached_input: u64,
    /// Input written to the provider's prompt cache (Anthropic).
    pub cache_write: u64,
}

impl Price {
    /// A price from US dollars per million input and output tokens; cached input costs as
    /// much as input until [`cached_input_usd`](Self::cached_input_usd) says otherwise.
    pub fn per_million_usd(input: f64, output: f64) -> Self {
        let input = usd_to_micros(input);
        Self {
            input,
            output: usd_to_micros(output),
            cached_input: input,
            cache_write: input,
        }
    }

    /// Sets the price of cached input, USD per million.
    pub fn cached_input_usd(mut self, usd: f64) -> Self {
        self.cached_input = usd_to_micros(usd);
        self
    }

    /// Sets the price of cache writes, USD per million.
    pub fn cache_write_usd(mut self, usd: f64) -> Self {
        self.cache_write = usd_to_micros(usd);
        self
    }

    /// The cost of `usage`, rounded up to the micro-dollar.
    pub fn cost(&self, usage: &TokenUsage) -> Cost {
        let pico = u128::from(usage.input) * u128::from(self.input)
            + u128::from(usage.cached_input) * u128::from(self.cached_input)
            + u128::from(usage.cache_write) * u128::from(self.cache_write)
            + u128::from(usage.output) * u128::from(self.output);
        Cost {
            micro_usd: u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX),
        }
    }

    /// Reads `{"input": 2.5, "output": 10, "cached_input": 1.25, "cache_write": 3.125}`
    /// (USD per million tokens; `input` and `output` required).
    ///
    /// # Errors
    /// A missing or negative price, at its key.
    pub fn from_json(value: &Value) -> Result<Self, BuildError> {
        let object = value
            .as_object()
            .ok_or_else(|| BuildError::new("expected an object of prices"))?;
        for key in object.keys() {
            if !matches!(
                key.as_str(),
                "input" | "output" | "cached_input" | "cache_write"
            ) {
                return Err(BuildError::at(
                    key.clone(),
                    "unknown price; expected input, output, cached_input or cache_write",
                ));
            }
        }
        let usd = |key: &str, required: bool| -> Result<Option<f64>, BuildError> {
            match object.get(key) {
                None if required => Err(BuildError::at(key, "required (USD per million tokens)")),
                None => Ok(None),
                Some(v) => match v.as_f64() {
                    Some(x) if x >= 0.0 && x.is_finite() => Ok(Some(x)),
                    _ => Err(BuildError::at(
                        key,
                        "expected a number >= 0 (USD per million tokens)",
                    )),
                },
            }
        };
        let mut price = Price::per_million_usd(
            usd("input", true)?.unwrap_or_default(),
            usd("output", true)?.unwrap_or_default(),
        );
        if let Some(x) = usd("cached_input", false)? {
            price = price.cached_input_usd(x);
        }
        if let Some(x) = usd("cache_write", false)? {
            price = price.cache_write_usd(x);
        }
        Ok(price)
    }
}

/// Token usage normalised across providers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenUsage {
    /// Input tokens not read from a cache (and not written to one).
    pub input: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write: u64,
    /// Output tokens, reasoning (thinking) tokens included.
    pub output: u64,
}

fn u(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl TokenUsage {
    /// Every token, input and output.
    pub fn total(&self) -> u64 {
        self.input + self.cached_input + self.cache_write + self.output
    }

    /// From the core [`Usage`] (OpenAI's three numbers, no cache detail).
    pub fn from_usage(usage: &Usage) -> Self {
        Self {
            input: usage.prompt_tokens,
            output: usage.completion_tokens,
            ..Self::default()
        }
    }

    /// From a response body or event holding `usage` (OpenAI chat or responses, Anthropic)
    /// or `usageMetadata` (Gemini). `None` when there is neither.
    ///
    /// - OpenAI: `prompt_tokens` (or the Responses API's `input_tokens` with
    ///   `input_tokens_details`) includes `cached_tokens`; `completion_tokens` includes
    ///   reasoning.
    /// - Anthropic: `input_tokens` excludes `cache_read_input_tokens` and
    ///   `cache_creation_input_tokens`.
    /// - Gemini: `promptTokenCount` includes `cachedContentTokenCount`;
    ///   `thoughtsTokenCount` is output on top of `candidatesTokenCount`.
    pub fn from_json(body: &Value) -> Option<Self> {
        if let Some(meta) = body.get("usageMetadata") {
            let prompt = u(meta, "promptTokenCount");
            let cached = u(meta, "cachedContentTokenCount").min(prompt);
            return Some(Self {
                input: prompt - cached,
                cached_input: cached,
                cache_write: 0,
                output: u(meta, "candidatesTokenCount") + u(meta, "thoughtsTokenCount"),
            });
        }
        let usage = body.get("usage").filter(|v| v.is_object())?;
        if usage.get("prompt_tokens").is_some() || usage.get("completion_tokens").is_some() {
            let prompt = u(usage, "prompt_tokens");
            let cached = usage
                .get("prompt_tokens_details")
                .map_or(0, |d| u(d, "cached_tokens"))
                .min(prompt);
            return Some(Self {
                input: prompt - cached,
                cached_input: cached,
                cache_write: 0,
                output: u(usage, "completion_tokens"),
            });
        }
        if let Some(details) = usage.get("input_tokens_details") {
            // OpenAI's Responses API: input_tokens includes the cached ones.
            let input = u(usage, "input_tokens");
            let cached = u(details, "cached_tokens").min(input);
            return Some(Self {
                input: input - cached,
                cached_input: cached,
                cache_write: 0,
                output: u(usage, "output_tokens"),
            });
        }
        if usage.get("input_tokens").is_some() || usage.get("output_tokens").is_some() {
            return Some(Self {
                input: u(usage, "input_tokens"),
                cached_input: u(usage, "cache_read_input_tokens"),
                cache_write: u(usage, "cache_creation_input_tokens"),
                output: u(usage, "output_tokens"),
            });
        }
        None
    }
}

/// Prices by model, globally and per provider.
///
/// A lookup tries the provider's own prices, then the global ones; in each, the exact model
/// name, then the longest priced name that the model extends with a version suffix
/// (`gpt-4o` prices `gpt-4o-2024-08-06` and `claude-3-5-sonnet` prices
/// `claude-3-5-sonnet-20241022`, but `o1` does not price `o1-pro`). A `@provider/` or
/// `provider/` prefix on the model is dropped first.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    global: HashMap<Arc<str>, Price>,
    providers: HashMap<Arc<str>, HashMap<Arc<str>, Price>>,
}

/// `(model, input, output, cached input, cache write)` in USD per million tokens.
const BUILTIN: &[(&str, f64, f64, f64, f64)] = &[
    // OpenAI
    ("gpt-4o", 2.50, 10.00, 1.25, 2.50),
    ("gpt-4o-mini", 0.15, 0.60, 0.075, 0.15),
    ("gpt-4.1", 2.00, 8.00, 0.50, 2.00),
    ("gpt-4.1-mini", 0.40, 1.60, 0.10, 0.40),
    ("gpt-4.1-nano", 0.10, 0.40, 0.025, 0.10),
    ("o1", 15.00, 60.00, 7.50, 15.00),
    ("o1-mini", 1.10, 4.40, 0.55, 1.10),
    ("o3", 2.00, 8.00, 0.50, 2.00),
    ("o3-mini", 1.10, 4.40, 0.55, 1.10),
    ("o4-mini", 1.10, 4.40, 0.275, 1.10),
    ("gpt-3.5-turbo", 0.50, 1.50, 0.50, 0.50),
    // Anthropic: cache reads at a tenth of input, 5-minute cache writes at 1.25×.
    ("claude-3-5-sonnet", 3.00, 15.00, 0.30, 3.75),
    ("claude-3-7-sonnet", 3.00, 15.00, 0.30, 3.75),
    ("claude-sonnet-4", 3.00, 15.00, 0.30, 3.75),
    ("claude-3-5-haiku", 0.80, 4.00, 0.08, 1.00),
    ("claude-3-haiku", 0.25, 1.25, 0.03, 0.30),
    ("claude-3-opus", 15.00, 75.00, 1.50, 18.75),
    ("claude-opus-4", 15.00, 75.00, 1.50, 18.75),
    ("claude-opus-4-1", 15.00, 75.00, 1.50, 18.75),
    // Google Gemini (prompts up to 128k / 200k tokens).
    ("gemini-1.5-pro", 1.25, 5.00, 0.3125, 1.25),
    ("gemini-1.5-flash", 0.075, 0.30, 0.01875, 0.075),
    ("gemini-2.0-flash", 0.10, 0.40, 0.025, 0.10),
    ("gemini-2.0-flash-lite", 0.075, 0.30, 0.075, 0.075),
    ("gemini-2.5-pro", 1.25, 10.00, 0.31, 1.25),
    ("gemini-2.5-flash", 0.30, 2.50, 0.075, 0.30),
    ("gemini-2.5-flash-lite", 0.10, 0.40, 0.025, 0.10),
    // Mistral
    ("mistral-large", 2.00, 6.00, 2.00, 2.00),
    ("mistral-small", 0.10, 0.30, 0.10, 0.10),
    // Groq
    ("llama-3.3-70b-versatile", 0.59, 0.79, 0.59, 0.59),
    ("llama-3.1-70b-versatile", 0.59, 0.79, 0.59, 0.59),
    ("llama-3.1-8b-instant", 0.05, 0.08, 0.05, 0.05),
    ("llama3-70b-8192", 0.59, 0.79, 0.59, 0.59),
    ("llama3-8b-8192", 0.05, 0.08, 0.05, 0.05),
];

/// Whether `rest` (what follows a priced name) is a version of it: `-2024-08-06`, `-20241022`,
/// `-001`, `-latest`, `-preview-05-20`, `-exp`.
fn is_version_suffix(rest: &str) -> bool {
    let Some(rest) = rest.strip_prefix('-') else {
        return false;
    };
    rest.starts_with(|c: char| c.is_ascii_digit())
        || rest.starts_with("latest")
        || rest.starts_with("preview")
        || rest.starts_with("exp")
}

fn find(prices: &HashMap<Arc<str>, Price>, model: &str) -> Option<Price> {
    if let Some(price) = prices.get(model) {
        return Some(*price);
    }
    prices
        .iter()
        .filter(|(name, _)| model.strip_prefix(&***name).is_some_and(is_version_suffix))
        .max_by_key(|(name, _)| name.len())
        .map(|(_, price)| *price)
}

/// `model` without a `@provider/` prefix, or a `provider/` prefix naming `provider`.
pub(crate) fn bare_model<'a>(provider: Option<&str>, model: &'a str) -> &'a str {
    if let Some(rest) = model.strip_prefix('@') {
        return rest.split_once('/').map_or(model, |(_, m)| m);
    }
    match (provider, model.split_once('/')) {
        (Some(p), Some((head, m))) if head == p => m,
        _ => model,
    }
}

impl PriceTable {
    /// No prices.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in list prices (as of [`PRICES_AS_OF`]).
    pub fn builtin() -> Self {
        let mut table = Self::empty();
        for &(model, input, output, cached, write) in BUILTIN {
            let price = Price::per_million_usd(input, output)
                .cached_input_usd(cached)
                .cache_write_usd(write);
            table.global.insert(model.into(), price);
        }
        table
    }

    /// Sets the price of `model`, for `provider` only or (`None`) for all.
    pub fn set(&mut self, provider: Option<&str>, model: &str, price: Price) {
        match provider {
            Some(p) => {
                self.providers
                    .entry(p.into())
                    .or_default()
                    .insert(model.into(), price);
            }
            None => {
                self.global.insert(model.into(), price);
            }
        }
    }

    /// [`set`](Self::set), by value.
    pub fn with(mut self, provider: Option<&str>, model: &str, price: Price) -> Self {
        self.set(provider, model, price);
        self
    }

    /// The price of `model` at `provider` (see the type's docs for the order).
    pub fn lookup(&self, provider: Option<&str>, model: &str) -> Option<Price> {
        let model = bare_model(provider, model);
        provider
            .and_then(|p| self.providers.get(p))
            .and_then(|prices| find(prices, model))
            .or_else(|| find(&self.global, model))
    }

    /// Adds the prices of `{"<provider or *>": {"<model>": {"input": …, "output": …}}}` to
    /// this table (`*`: every provider).
    ///
    /// # Errors
    /// A malformed price, at its path (`openai."gpt-4o".input: …`).
    pub fn extend_from_json(&mut self, value: &Value) -> Result<(), BuildError> {
        let providers = value
            .as_object()
            .ok_or_else(|| BuildError::new("expected an object of providers"))?;
        for (provider, models) in providers {
            let models = models
                .as_object()
                .ok_or_else(|| BuildError::new("expected an object of models").in_key(provider))?;
            for (model, price) in models {
                let price =
                    Price::from_json(price).map_err(|e| e.in_key(model).in_key(provider))?;
                let provider = (provider != "*").then_some(provider.as_str());
                self.set(provider, model, price);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_prices_match_dated_and_prefixed_names() {
        let table = PriceTable::builtin();
        let mini = table.lookup(None, "gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(mini.input, 150_000);
        assert_eq!(
            table.lookup(None, "gpt-4o-2024-08-06").unwrap().input,
            2_500_000
        );
        assert_eq!(
            table.lookup(None, "@openai/gpt-4o").unwrap().input,
            2_500_000
        );
        assert_eq!(
            table
                .lookup(Some("openai"), "openai/gpt-4.1-mini")
                .unwrap()
                .input,
            400_000
        );
        assert_eq!(
            table
                .lookup(None, "claude-3-5-sonnet-20241022")
                .unwrap()
                .output,
            15_000_000
        );
        assert_eq!(
            table
                .lookup(None, "claude-sonnet-4-20250514")
                .unwrap()
                .cache_write,
            3_750_000
        );
        assert_eq!(
            table
                .lookup(None, "claude-opus-4-1-20250805")
                .unwrap()
                .input,
            15_000_000
        );
        assert_eq!(
            table.lookup(None, "gemini-2.5-flash-lite").unwrap().output,
            400_000
        );
        assert_eq!(
            table.lookup(None, "gemini-1.5-pro-002").unwrap().input,
            1_250_000
        );
        assert_eq!(
            table.lookup(None, "mistral-large-latest").unwrap().input,
            2_000_000
        );
        assert!(
            table.lookup(None, "o1-pro").is_none(),
            "a different model, not a version"
        );
        assert!(table.lookup(None, "gpt-4o-audio-preview").is_none());
    }

    #[test]
    fn provider_prices_override_the_global_ones() {
        let mut table = PriceTable::builtin();
        table
            .extend_from_json(&json!({"azure": {"gpt-4o": {"input": 5, "output": 15}}}))
            .unwrap();
        assert_eq!(
            table.lookup(Some("azure"), "gpt-4o").unwrap().input,
            5_000_000
        );
        assert_eq!(
            table.lookup(Some("azure"), "gpt-4o").unwrap().cached_input,
            5_000_000
        );
        assert_eq!(
            table.lookup(Some("openai"), "gpt-4o").unwrap().input,
            2_500_000
        );
        let err = table
            .extend_from_json(&json!({"azure": {"gpt-4o": {"input": -1, "output": 1}}}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "azure.gpt-4o.input: expected a number >= 0 (USD per million tokens)"
        );
    }

    #[test]
    fn usage_is_normalised_per_provider() {
        let anthropic = TokenUsage::from_json(&json!({"usage": {"input_tokens": 10,
            "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200, "output_tokens": 50}}))
        .unwrap();
        assert_eq!(
            anthropic,
            TokenUsage {
                input: 10,
                cached_input: 1000,
                cache_write: 200,
                output: 50
            }
        );
        assert_eq!(anthropic.total(), 1260);
        let gemini = TokenUsage::from_json(&json!({"usageMetadata": {"promptTokenCount": 100,
            "cachedContentTokenCount": 40, "candidatesTokenCount": 20, "thoughtsTokenCount": 300}}))
        .unwrap();
        assert_eq!(
            gemini,
            TokenUsage {
                input: 60,
                cached_input: 40,
                cache_write: 0,
                output: 320
            }
        );
        let responses = TokenUsage::from_json(&json!({"usage": {"input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 30}, "output_tokens": 5}}))
        .unwrap();
        assert_eq!(
            responses,
            TokenUsage {
                input: 70,
                cached_input: 30,
                cache_write: 0,
                output: 5
            }
        );
        assert!(TokenUsage::from_json(&json!({"choices": []})).is_none());
        // Anthropic's cache pricing: reads at a tenth, writes at 1.25×.
        let sonnet = PriceTable::builtin()
            .lookup(None, "claude-3-7-sonnet-latest")
            .unwrap();
        assert_eq!(sonnet.cost(&anthropic).micro_usd, 30 + 300 + 750 + 750);
    }
}
