//! What every provider does around an upstream call: the `accept` header it sends; then, with
//! the answer, before reading it: the hop-by-hop headers removed, and a client error told
//! apart (connect, connect timeout, protocol).

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Uri, header};
use portcullis_core::BoxError;
use portcullis_core::error::{TimeoutPhase, UpstreamError, UpstreamErrorKind, UpstreamTimeout};

/// Headers that describe one connection, not the message.
const HOP_BY_HOP: [header::HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// The `accept` header of an upstream call: `text/event-stream` for a stream, else
/// `application/json`.
pub(crate) fn accept(stream: bool) -> HeaderValue {
    HeaderValue::from_static(if stream {
        "text/event-stream"
    } else {
        "application/json"
    })
}

/// The `host` header of every call to a plain-HTTP upstream at `uri`, made once when the
/// provider is built: the value hyper's client would otherwise make for each HTTP/1 request
/// (the host, and the port unless it is 80): a copy of the host per call, and a `format!`
/// besides when the port is not the default.
///
/// `None` for `https://`: there the connection may be HTTP/2 (by ALPN), whose requests carry
/// the authority in `:authority` and no `host`, so the client is left to decide per
/// connection.
pub(crate) fn plain_host(uri: &Uri) -> Option<HeaderValue> {
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?;
    let text = match uri.port() {
        Some(port) if port.as_u16() != 80 => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::try_from(text).ok()
}

/// [`plain_host`] of a URL given as text (`None` when it does not parse).
pub(crate) fn plain_host_at(url: &str) -> Option<HeaderValue> {
    url.parse().ok().and_then(|uri| plain_host(&uri))
}

/// Whether `name` describes one connection: [`HOP_BY_HOP`], `keep-alive`, `proxy-connection`.
fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == "keep-alive" || name == "proxy-connection"
}

/// Removes the headers of one connection; `translated`: the body will be rewritten, so its
/// length goes too.
///
/// The answer's few names are compared with the hop-by-hop ones (again after each removal;
/// an answer carries none, or one or two); a lookup per hop-by-hop name hashed eight names
/// per answer (1.2k instructions) to find, most often, none.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, translated: bool) {
    while let Some(name) = headers.keys().find(|n| is_hop_by_hop(n)).cloned() {
        headers.remove(name);
    }
    if translated {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// A client error as the typed cause callers downcast: a connect timeout, a refused or reset
/// connection, or a protocol error.
pub(crate) fn classify(
    err: hyper_util::client::legacy::Error,
    connect_timeout: Duration,
) -> BoxError {
    if err.is_connect() {
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return UpstreamTimeout::new(TimeoutPhase::Connect, connect_timeout).into();
            }
            source = cause.source();
        }
        return UpstreamError::new(UpstreamErrorKind::Connect, err).into();
    }
    UpstreamError::new(UpstreamErrorKind::Protocol, err).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_the_headers_of_one_connection_are_removed() {
        let names = [
            "connection",
            "transfer-encoding",
            "te",
            "trailer",
            "upgrade",
            "proxy-authenticate",
            "keep-alive",
            "proxy-connection",
            "content-length",
            "content-type",
            "x-request-id",
            "keep-alive-extra",
            "set-cookie",
        ];
        // Every subset of the names, each name twice when the subset's number is odd (a
        // header with two values).
        for subset in 0u32..1 << names.len() {
            let mut headers = HeaderMap::new();
            for (i, name) in names.iter().enumerate() {
                if subset & (1 << i) != 0 {
                    headers.append(*name, HeaderValue::from_static("v"));
                    if subset % 2 == 1 {
                        headers.append(*name, HeaderValue::from_static("w"));
                    }
                }
            }
            let translated = subset % 3 == 0;
            let mut expected = headers.clone();
            for name in names.iter().take(8) {
                expected.remove(*name);
            }
            if translated {
                expected.remove(header::CONTENT_LENGTH);
            }
            strip_hop_by_hop(&mut headers, translated);
            assert_eq!(headers, expected);
        }
    }

    #[test]
    fn a_plain_upstream_host_is_what_the_client_would_write() {
        let host = |url: &str| plain_host(&url.parse().unwrap());
        assert_eq!(host("http://127.0.0.1:8080/v1").unwrap(), "127.0.0.1:8080");
        assert_eq!(
            host("http://upstream.internal/v1").unwrap(),
            "upstream.internal"
        );
        assert_eq!(
            host("http://upstream.internal:80").unwrap(),
            "upstream.internal"
        );
        assert_eq!(host("http://[::1]:9000/v1").unwrap(), "[::1]:9000");
        assert_eq!(
            host("http://user@upstream.internal:81").unwrap(),
            "upstream.internal:81"
        );
        // HTTP/2 may be chosen per connection: the client decides.
        assert_eq!(host("https://api.openai.com/v1"), None);
        assert_eq!(host("https://127.0.0.1:8443/v1"), None);
    }
}
