//! Gemini embeddings answers (Google AI Studio's and Vertex AI's) → OpenAI's embeddings list.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::b64;
use super::response::InvalidResponse;
use crate::json::Json;

/// Translates the answer of one [`EmbedRequest`](super::EmbedRequest) (`embedContent`'s
/// `{"embedding": {"values": […]}}`, `batchEmbedContents`' `{"embeddings": [{"values":
/// […]}, …]}`, or Vertex AI `predict`'s `{"predictions": [{"embeddings": {"values": […],
/// "statistics": {"token_count": n}}}, …]}`) into OpenAI's `{"object": "list", "data":
/// [{"object": "embedding", "index", "embedding"}], "model", "usage"}`, the vectors as numbers
/// or, when the client asked for `encoding_format: base64`, as base64 of little-endian `f32`s,
/// as OpenAI sends them. Usage: `prompt_tokens` = `total_tokens` = the sum of Vertex AI's
/// `token_count`s; Google AI Studio reports none, so zero.
///
/// ```
/// use portcullis_provider::gemini::EmbeddingTranslator;
///
/// let t = EmbeddingTranslator::new("text-embedding-004", false);
/// let body = t.json(br#"{"embeddings":[{"values":[0.5,-1]},{"values":[2]}]}"#).unwrap();
/// let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(v["data"][1]["index"], 1);
/// assert_eq!(v["data"][0]["embedding"], serde_json::json!([0.5, -1.0]));
/// assert_eq!(v["model"], "text-embedding-004");
/// ```
#[derive(Clone, Debug)]
pub struct EmbeddingTranslator {
    model: Arc<str>,
    base64: bool,
}

impl EmbeddingTranslator {
    /// A translator for answers to a request for `model`; `base64` for vectors as base64.
    pub fn new(model: impl Into<Arc<str>>, base64: bool) -> Self {
        Self {
            model: model.into(),
            base64,
        }
    }

    /// The OpenAI embeddings list for Gemini's answer.
    ///
    /// # Errors
    /// [`InvalidResponse`] when `body` is not JSON or holds no embedding.
    pub fn json(&self, body: &[u8]) -> Result<Bytes, InvalidResponse> {
        let answer: Value = serde_json::from_slice(body)
            .map_err(|e| InvalidResponse::new(format!("not JSON: {e}")))?;
        let one = answer.get("embedding").map(std::slice::from_ref);
        let predictions = answer.get("predictions").and_then(Value::as_array);
        let list = one
            .or_else(|| {
                answer
                    .get("embeddings")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
            })
            .or(predictions.map(Vec::as_slice))
            .ok_or_else(|| {
                InvalidResponse::new("no `embedding`, `embeddings` nor `predictions`")
            })?;
        let mut tokens = 0u64;
        let mut out = Json::with_capacity(body.len() + 128);
        out.raw(b"{\"object\":\"list\",\"data\":[");
        for (index, embedding) in list.iter().enumerate() {
            // A Vertex AI prediction holds its embedding, and the input's token count.
            let embedding = match predictions {
                Some(_) => {
                    let inner = embedding
                        .get("embeddings")
                        .ok_or_else(|| InvalidResponse::new("a prediction without `embeddings`"))?;
                    tokens += inner
                        .pointer("/statistics/token_count")
                        .and_then(Value::as_f64)
                        .map_or(0, |n| n as u64);
                    inner
                }
                None => embedding,
            };
            let values = embedding
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| InvalidResponse::new("an embedding without `values`"))?;
            if index > 0 {
                out.raw(b",");
            }
            out.raw(b"{\"object\":\"embedding\",\"index\":");
            out.u64(index as u64);
            out.raw(b",\"embedding\":");
            if self.base64 {
                let mut bytes = Vec::with_capacity(values.len() * 4);
                for v in values {
                    let v = v.as_f64().ok_or_else(|| {
                        InvalidResponse::new("an embedding value is not a number")
                    })?;
                    bytes.extend_from_slice(&(v as f32).to_le_bytes());
                }
                let mut text = String::new();
                b64::encode(&bytes, &mut text);
                out.str(&text);
            } else {
                out.raw(b"[");
                for (n, v) in values.iter().enumerate() {
                    let v = v.as_f64().ok_or_else(|| {
                        InvalidResponse::new("an embedding value is not a number")
                    })?;
                    if n > 0 {
                        out.raw(b",");
                    }
                    // As floats, the way OpenAI writes them (`-1.0`, not `-1`).
                    out.value(&Value::from(v));
                }
                out.raw(b"]");
            }
            out.raw(b"}");
        }
        out.raw(b"],\"model\":");
        out.str(&self.model);
        out.raw(b",\"usage\":{\"prompt_tokens\":");
        out.u64(tokens);
        out.raw(b",\"total_tokens\":");
        out.u64(tokens);
        out.raw(b"}}");
        Ok(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_embedding_and_base64() {
        let t = EmbeddingTranslator::new("e", true);
        let body = t.json(br#"{"embedding":{"values":[1.0,0.5]}}"#).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let text = v["data"][0]["embedding"].as_str().unwrap();
        let bytes = b64::decode(text).unwrap();
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(&bytes[4..], &0.5f32.to_le_bytes());
        assert!(t.json(b"{}").is_err());
    }

    #[test]
    fn vertex_predictions_and_their_token_counts() {
        let t = EmbeddingTranslator::new("text-embedding-005", false);
        let body = t
            .json(
                br#"{"predictions":[
                {"embeddings":{"values":[0.5],"statistics":{"token_count":3,"truncated":false}}},
                {"embeddings":{"values":[1.5],"statistics":{"token_count":4.0}}}]}"#,
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"][1]["embedding"], serde_json::json!([1.5]));
        assert_eq!(v["usage"]["prompt_tokens"], 7);
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert!(t.json(br#"{"predictions":[{"values":[1]}]}"#).is_err());
    }
}
