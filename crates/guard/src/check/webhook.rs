//! `default.webhook` and `default.log`: checks that call out, only to allowed origins.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_core::BuildError;
use serde_json::{Map, Value, json};

use super::params::Params;
use super::{Check, CheckError, Outcome, Run, Transform};
use crate::context::{HookContext, Phase};

/// The most a webhook's answer may weigh.
const MAX_ANSWER: usize = 4 << 20;

/// The origins (`scheme://host:port`) webhook and log checks may call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins {
    list: Vec<(String, String, u16)>,
}

fn split_origin(uri: &Uri) -> Option<(String, String, u16)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(match scheme.as_str() {
        "https" => 443,
        _ => 80,
    });
    Some((scheme, host, port))
}

impl Origins {
    /// No origin: every webhook is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `origin`, e.g. `http://127.0.0.1:9000` or `https://hooks.example.com`.
    ///
    /// # Errors
    /// `origin` is not an absolute `http(s)://host[:port]`.
    pub fn allow(&mut self, origin: &str) -> Result<(), BuildError> {
        let uri: Uri = origin
            .parse()
            .map_err(|e| BuildError::new(format!("`{origin}` is not a URL: {e}")))?;
        let parts = split_origin(&uri)
            .filter(|(s, _, _)| s == "http" || s == "https")
            .ok_or_else(|| BuildError::new(format!("`{origin}` is not an http(s) origin")))?;
        self.list.push(parts);
        Ok(())
    }

    /// Whether `url` is on an allowed origin.
    pub fn allows(&self, url: &Uri) -> bool {
        split_origin(url).is_some_and(|o| self.list.contains(&o))
    }

    /// Parses `url` and checks it against the list: the error names what is wrong.
    pub(crate) fn check(&self, url: &str) -> Result<Uri, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "`{url}`: https webhooks are not supported by this build (plain http on an allowed origin only)"
                ));
            }
            _ => return Err(format!("`{url}` is not an http URL")),
        }
        if !self.allows(&uri) {
            return Err(format!(
                "`{url}` is not on an allowed origin (the server's webhook allowlist)"
            ));
        }
        Ok(uri)
    }
}

/// The HTTP client webhook and log checks share.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// POSTs `body` and reads the answer (status and bytes) within `timeout`.
    async fn post(
        &self,
        uri: Uri,
        headers: &HeaderMap,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), String> {
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in headers {
            h.insert(k.clone(), v.clone());
        }
        let call = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("the request failed: {e}"))?;
            let status = res.status().as_u16();
            let bytes = Limited::new(res.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?
                .to_bytes();
            Ok((status, bytes))
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
        }
    }
}

/// Configured headers: an object, or (when `string_ok`) a JSON string holding one.
fn parse_headers(p: &Params<'_>, object_ok: bool) -> Result<HeaderMap, BuildError> {
    let err = |m: String| BuildError::new(m).in_key("headers");
    let map: Map<String, Value> = match p.get("headers") {
        None => return Ok(HeaderMap::new()),
        Some(Value::Object(m)) if object_ok => m.clone(),
        Some(Value::String(s)) => match serde_json::from_str(s) {
            Ok(Value::Object(m)) => m,
            _ => return Err(err("must be a JSON object (as a string)".into())),
        },
        Some(_) if object_ok => return Err(err("must be an object or a JSON string".into())),
        Some(_) => return Err(err("must be a JSON string holding an object".into())),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in map {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| err(format!("`{k}` is not a header name")))?;
        let value = v
            .as_str()
            .and_then(|s| HeaderValue::from_str(s).ok())
            .ok_or_else(|| err(format!("`{k}` must be a header value string")))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

fn timeout(p: &Params<'_>, default: Duration) -> Result<Duration, BuildError> {
    let ms = p.integer("timeout", default.as_millis() as u64)?;
    if ms == 0 || ms > 60_000 {
        return Err(BuildError::new("must be between 1 and 60000 ms").in_key("timeout"));
    }
    Ok(Duration::from_millis(ms))
}

/// The hook context as Portkey sends it to webhooks, without the request's headers: the
/// request's own credentials never leave.
fn context_json(cx: &HookContext) -> Value {
    let (response_text, response_json) = match cx.phase() {
        Phase::Before => (Value::String(String::new()), Value::Null),
        Phase::After => (
            Value::String(cx.text().to_owned()),
            cx.response_json().cloned().unwrap_or(Value::Null),
        ),
    };
    let request_text = match cx.phase() {
        Phase::Before => cx.text().to_owned(),
        Phase::After => String::new(),
    };
    let metadata: Map<String, Value> = cx
        .metadata()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let request_json = cx.request_json();
    let stream = request_json
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    json!({
        "request": {"text": request_text, "json": request_json, "isStreamingRequest": stream,
                    "isTransformed": cx.transformed_request},
        "response": {"text": response_text, "json": response_json,
                     "statusCode": if cx.phase() == Phase::After { json!(cx.status) } else { Value::Null },
                     "isTransformed": cx.transformed_response},
        "provider": cx.provider(),
        "requestType": cx.request_type().as_str(),
        "metadata": metadata,
        "eventType": cx.phase().event_type(),
    })
}

/// `default.webhook`.
#[derive(Debug)]
pub(crate) struct Webhook {
    url: String,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    client: HttpClient,
}

impl Webhook {
    pub(crate) fn parse(
        p: &Params<'_>,
        origins: &Origins,
        client: &HttpClient,
        default_timeout: Duration,
    ) -> Result<Self, BuildError> {
        let url = p.required_str("webhookURL")?;
        let uri = origins
            .check(url)
            .map_err(|e| BuildError::new(e).in_key("webhookURL"))?;
        Ok(Self {
            url: url.to_owned(),
            uri,
            headers: parse_headers(p, true)?,
            timeout: timeout(p, default_timeout)?,
            client: client.clone(),
        })
    }
}

impl Check for Webhook {
    fn run(&self, cx: &HookContext) -> Run {
        let body = serde_json::to_vec(&context_json(cx)).expect("JSON serialises");
        let phase = cx.phase();
        let client = self.client.clone();
        let (uri, headers, timeout, url) = (
            self.uri.clone(),
            self.headers.clone(),
            self.timeout,
            self.url.clone(),
        );
        Run::Pending(Box::pin(async move {
            let data = |verdict: bool, explanation: String, response: Value| {
                json!({"verdict": verdict, "explanation": explanation, "webhookUrl": url,
                       "responseData": response,
                       "requestContext": {"timeout": timeout.as_millis() as u64}})
            };
            let (status, bytes) = match client.post(uri, &headers, body, timeout).await {
                Ok(answer) => answer,
                Err(e) => {
                    return Outcome {
                        verdict: false,
                        data: data(false, format!("Webhook error: {e}"), Value::Null),
                        error: Some(CheckError::new(e)),
                        transform: None,
                    };
                }
            };
            let answer: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            if !(200..300).contains(&status) {
                let message = format!("the webhook answered {status}");
                return Outcome {
                    verdict: false,
                    data: data(false, format!("Webhook error: {message}"), answer),
                    error: Some(CheckError::new(message)),
                    transform: None,
                };
            }
            let verdict = answer
                .get("verdict")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let transformed = answer.get("transformedData");
            let transform = match phase {
                Phase::Before => transformed
                    .and_then(|t| t.get("request"))
                    .and_then(|r| r.get("json"))
                    .and_then(Value::as_object)
                    .map(|m| Transform::RequestBody(m.clone())),
                Phase::After => transformed
                    .and_then(|t| t.get("response"))
                    .and_then(|r| r.get("json"))
                    .filter(|v| v.is_object())
                    .map(|v| Transform::ResponseBody(v.clone())),
            };
            let explanation = if verdict {
                "Webhook check passed."
            } else {
                "Webhook check failed."
            };
            Outcome {
                verdict,
                data: data(verdict, explanation.into(), answer),
                error: None,
                transform,
            }
        }))
    }

    fn is_async(&self) -> bool {
        true
    }
}

/// `default.log`: POSTs the context to `logURL`; passes unless the POST fails.
#[derive(Debug)]
pub(crate) struct Log {
    url: String,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    client: HttpClient,
}

impl Log {
    pub(crate) fn parse(
        p: &Params<'_>,
        origins: &Origins,
        client: &HttpClient,
        default_timeout: Duration,
    ) -> Result<Self, BuildError> {
        let url = p.required_str("logURL")?;
        let uri = origins
            .check(url)
            .map_err(|e| BuildError::new(e).in_key("logURL"))?;
        Ok(Self {
            url: url.to_owned(),
            uri,
            headers: parse_headers(p, false)?,
            timeout: timeout(p, default_timeout)?,
            client: client.clone(),
        })
    }
}

impl Check for Log {
    fn run(&self, cx: &HookContext) -> Run {
        let body = serde_json::to_vec(&context_json(cx)).expect("JSON serialises");
        let client = self.client.clone();
        let (uri, headers, timeout, url) = (
            self.uri.clone(),
            self.headers.clone(),
            self.timeout,
            self.url.clone(),
        );
        Run::Pending(Box::pin(async move {
            let result = client.post(uri, &headers, body, timeout).await;
            match result {
                Ok((status, _)) if (200..300).contains(&status) => {
                    Outcome::verdict(true, json!({"logURL": url, "explanation": "Logged."}))
                }
                Ok((status, _)) => Outcome::error(format!("the log endpoint answered {status}"))
                    .with_data(json!({"logURL": url})),
                Err(e) => Outcome::error(e).with_data(json!({"logURL": url})),
            }
        }))
    }

    fn is_async(&self) -> bool {
        true
    }
}
