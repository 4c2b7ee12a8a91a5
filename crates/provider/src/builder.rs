//! What the builders of the translating providers ([`Anthropic`](crate::Anthropic),
//! [`Gemini`](crate::Gemini)) check alike: the base URL, and the headers sent on every call.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Uri};
use portcullis_core::BuildError;

use crate::client::HttpClient;

/// `{scheme}://{authority}{path}` of a base URL, its path without a trailing `/`.
///
/// # Errors
/// A [`BuildError`] at `base_url` for a URL that is not `http(s)://`, has no host or has a
/// query, or is `https://` in a build without TLS.
pub(crate) fn checked_base(url: &str) -> Result<String, BuildError> {
    let base: Uri = url
        .parse()
        .map_err(|e| BuildError::at("base_url", format!("`{url}` is not a URL: {e}")))?;
    let scheme = base.scheme_str().unwrap_or("");
    if scheme != "http" && scheme != "https" {
        return Err(BuildError::at(
            "base_url",
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    if scheme == "https" && !HttpClient::TLS {
        return Err(BuildError::at(
            "base_url",
            format!(
                "`{url}` needs TLS: this build of portcullis-provider has no TLS; enable \
                 its `rustls` feature (`portcullis` and the gateway: `rustls`)"
            ),
        ));
    }
    let authority = base
        .authority()
        .ok_or_else(|| BuildError::at("base_url", format!("`{url}` has no host")))?;
    if base.query().is_some() {
        return Err(BuildError::at(
            "base_url",
            format!("`{url}` must not have a query"),
        ));
    }
    Ok(format!(
        "{scheme}://{authority}{}",
        base.path().trim_end_matches('/')
    ))
}

/// `v` as a header value, or a [`BuildError`] at `path`.
pub(crate) fn header_value(path: &str, v: &str) -> Result<HeaderValue, BuildError> {
    HeaderValue::try_from(v)
        .map_err(|_| BuildError::at(path, "has characters not allowed in a header"))
}

/// The headers of every call: `user-agent`, `content-type: application/json`, and the
/// configured `extra` ones, none of which may be one of `reserved` (the provider's own).
///
/// # Errors
/// A [`BuildError`] at `headers` for a name or value that is not a header's, or a reserved
/// name.
pub(crate) fn headers(
    extra: &[(String, String)],
    reserved: &[&str],
) -> Result<HeaderMap, BuildError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, v) in extra {
        let header_name = HeaderName::try_from(name.as_str())
            .map_err(|_| BuildError::at("headers", format!("`{name}` is not a header name")))?;
        if reserved.contains(&header_name.as_str()) {
            return Err(BuildError::at(
                "headers",
                format!("`{name}` is set by the provider and cannot be configured"),
            ));
        }
        headers.append(header_name, header_value(&format!("headers.{name}"), v)?);
    }
    Ok(headers)
}
