//! What every provider does with an upstream answer before reading it: the hop-by-hop headers
//! removed, and a client error told apart (connect, connect timeout, protocol).

use std::time::Duration;

use http::{HeaderMap, header};
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

/// Removes the headers of one connection; `translated`: the body will be rewritten, so its
/// length goes too.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, translated: bool) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
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
