//! Gemini embeddings answers → OpenAI's embeddings list.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::b64;
use super::response::InvalidResponse;
use crate::json::Json;

/// Translates the answer of one [`EmbedRequest`](super::EmbedRequest) (`embedContent`'s
/// `{"embedding": {"values": […]}}` or `batchEmbedContents`' `{"embeddings": [{"values":
/// […]}, …]}`) into OpenAI's `{"object": "list", "data": [{"object": "embedding", "index",
/// "embedding"}], "model", "usage"}`, the vectors as numbers or, when the client asked for
/// `encoding_format: base64`, as base64 of little-endian `f32`s, as OpenAI sends them. Gemini
/// reports no token counts for embeddings: usage is zero.
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
        let list = one
            .or_else(|| {
                answer
                    .get("embeddings")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
            })
            .ok_or_else(|| InvalidResponse::new("no `embedding` nor `embeddings`"))?;
        let mut out = Json::with_capacity(body.len() + 128);
        out.raw(b"{\"object\":\"list\",\"data\":[");
        for (index, embedding) in list.iter().enumerate() {
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
        out.raw(b",\"usage\":{\"prompt_tokens\":0,\"total_tokens\":0}}");
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
}
