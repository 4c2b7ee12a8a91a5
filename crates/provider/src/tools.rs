//! OpenAI's `tools` as the translating providers ([`Anthropic`](crate::Anthropic),
//! [`Gemini`](crate::Gemini)) read them: function declarations only, each written in the
//! upstream's own shape by the provider.

use portcullis_core::error::InvalidRequest;
use serde_json::Value;

/// One function tool of a request.
pub(crate) struct Function<'a> {
    /// Its position in `tools`, for the paths of errors.
    pub(crate) index: usize,
    pub(crate) name: &'a str,
    pub(crate) description: Option<&'a str>,
    /// Its `parameters` schema, when it has one (`null` counts as none).
    pub(crate) parameters: Option<&'a Value>,
    /// The tool entry itself, for fields beside `function` (Anthropic's `cache_control`).
    pub(crate) tool: &'a Value,
}

/// The function tools of `tools`, in order; `upstream` names the provider in the refusal of
/// a tool of another type.
///
/// # Errors
/// [`InvalidRequest`] for `tools` that is not a list, a tool that is not a `function`, or a
/// function without a name.
pub(crate) fn functions<'a>(
    tools: &'a Value,
    upstream: &str,
) -> Result<Vec<Function<'a>>, InvalidRequest> {
    let tools = tools
        .as_array()
        .ok_or_else(|| InvalidRequest::param("tools", "`tools` must be a list"))?;
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "function" {
                return Err(InvalidRequest::param(
                    format!("tools[{i}].type"),
                    format!(
                        "a tool of type `{kind}` is not supported by {upstream} (only `function`)"
                    ),
                ));
            }
            let function = tool.get("function");
            let field = |key: &str| function.and_then(|f| f.get(key));
            let name = field("name").and_then(Value::as_str).ok_or_else(|| {
                InvalidRequest::param(
                    format!("tools[{i}].function.name"),
                    format!("`tools[{i}].function.name` must be a string"),
                )
            })?;
            Ok(Function {
                index: i,
                name,
                description: field("description").and_then(Value::as_str),
                parameters: field("parameters").filter(|p| !p.is_null()),
                tool,
            })
        })
        .collect()
}
