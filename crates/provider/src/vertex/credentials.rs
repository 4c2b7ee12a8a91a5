//! Vertex AI credentials: a service account's key signs a JWT, which Google's token endpoint
//! trades for an access token; the token is cached and refreshed before it expires, one
//! refresh at a time however many requests wait for it, whichever publisher (Google's Gemini,
//! Anthropic's Claude) the requests are for.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use portcullis_core::error::{self as core_error, ErrorBody};
use portcullis_core::{Body, BufferedBody};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::Value;
use tokio::time::Instant;

use crate::client::HttpClient;
use crate::gemini::b64;

/// Google's token endpoint, for service accounts whose file names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The scope asked for: Vertex AI, with the rest of Google Cloud.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How long the JWT asks the token to last (Google's maximum).
const LIFETIME: u64 = 3600;

/// How long before its expiry a token is refreshed.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long the token endpoint has to answer.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Token answers larger than this are refused.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// A Google service account's credentials, from the JSON key file the Cloud console makes.
///
/// Only what the token exchange needs is kept: the account's email, its key (parsed and
/// checked when read), the key's id, the token endpoint and the project. `Debug` shows no key.
///
/// ```
/// use portcullis_provider::vertex::ServiceAccount;
///
/// let err = ServiceAccount::from_json(br#"{"type":"service_account","client_email":"a@b",
///     "private_key":"not a key"}"#)
/// .unwrap_err();
/// assert!(err.to_string().contains("private_key"));
/// ```
#[derive(Clone)]
pub struct ServiceAccount {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: String,
    project_id: Option<String>,
    key: Arc<RsaKeyPair>,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

/// Service-account credentials that cannot be used: unreadable, not JSON, or without a
/// usable key. The message names the file and the field, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsError {
    message: String,
}

impl CredentialsError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CredentialsError {}

impl ServiceAccount {
    /// Reads a service-account JSON key file.
    ///
    /// # Errors
    /// A [`CredentialsError`] when the file cannot be read or is not a usable service
    /// account (see [`from_json`](Self::from_json)).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CredentialsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| CredentialsError::new(format!("cannot read `{}`: {e}", path.display())))?;
        Self::from_json(&bytes)
            .map_err(|e| CredentialsError::new(format!("`{}`: {e}", path.display())))
    }

    /// Reads a service account from its JSON key.
    ///
    /// # Errors
    /// A [`CredentialsError`] when it is not JSON, its `type` is given and is not
    /// `service_account`, `client_email` is missing, or `private_key` is not an RSA key in
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_json(json: &[u8]) -> Result<Self, CredentialsError> {
        let v: Value = serde_json::from_slice(json)
            .map_err(|e| CredentialsError::new(format!("not JSON: {e}")))?;
        let field = |key: &str| v.get(key).and_then(Value::as_str);
        if let Some(kind) = field("type")
            && kind != "service_account"
        {
            return Err(CredentialsError::new(format!(
                "`type` is `{kind}`: only `service_account` credentials are supported"
            )));
        }
        let client_email = field("client_email")
            .ok_or_else(|| CredentialsError::new("`client_email` is missing"))?
            .to_owned();
        let pem = field("private_key")
            .ok_or_else(|| CredentialsError::new("`private_key` is missing"))?;
        let der = pem_body(pem).ok_or_else(|| {
            CredentialsError::new(
                "`private_key` is not a PEM key (`-----BEGIN PRIVATE KEY-----` … \
                 `-----END PRIVATE KEY-----`)",
            )
        })?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            CredentialsError::new(format!("`private_key` is not a usable PKCS#8 RSA key: {e}"))
        })?;
        Ok(Self {
            client_email,
            private_key_id: field("private_key_id").map(str::to_owned),
            token_uri: field("token_uri").unwrap_or(DEFAULT_TOKEN_URI).to_owned(),
            project_id: field("project_id").map(str::to_owned),
            key: Arc::new(key),
        })
    }

    /// The account's email, the JWT's issuer.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The project the account belongs to, when the file says.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// The token endpoint (default [`DEFAULT_TOKEN_URI`]).
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The signed JWT (RS256) asking for a token of the cloud-platform scope, issued at
    /// `iat` (seconds since the Unix epoch) and valid for an hour.
    fn assertion(&self, iat: u64) -> Result<String, TokenError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = Value::from(kid.as_str());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + LIFETIME,
        });
        let mut jwt = b64::encode_url(header.to_string().as_bytes());
        jwt.push('.');
        jwt.push_str(&b64::encode_url(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                jwt.as_bytes(),
                &mut signature,
            )
            .map_err(|_| TokenError::new(StatusCode::BAD_GATEWAY, "signing the JWT failed"))?;
        jwt.push('.');
        jwt.push_str(&b64::encode_url(&signature));
        Ok(jwt)
    }
}

/// The DER bytes of the first PEM block of `pem`.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = start + pem[start..].find("-----END PRIVATE KEY-----")?;
    b64::decode(&pem[start..end])
}

/// Why no access token could be had: the status of the answer (502 when Google refused or
/// answered nonsense, 503 when it could not be reached) and the cause.
#[derive(Clone, Debug)]
pub(crate) struct TokenError {
    status: StatusCode,
    message: String,
}

impl TokenError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// An access token being fetched: the `Authorization` value, or the error answer when there
/// is none.
pub(crate) type TokenFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HeaderValue, Box<http::Response<Body>>>> + Send>,
>;

/// A cached access token.
struct Cached {
    /// `Bearer …`, marked sensitive.
    value: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

/// Access tokens for one service account: cached, refreshed [`REFRESH_MARGIN`] before they
/// expire, one refresh at a time.
pub(crate) struct TokenSource {
    account: ServiceAccount,
    uri: Uri,
    client: HttpClient,
    cached: Mutex<Option<Cached>>,
    /// Held by the one request refreshing; the others wait on it, then use its token or its
    /// failure.
    refresh: tokio::sync::Mutex<Option<TokenError>>,
    /// Refreshes finished so far, to tell whether one finished while a request waited.
    refreshes: AtomicU64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("account", &self.account.client_email)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// # Errors
    /// The token URI of `account` is not an `http(s)` URL.
    pub(crate) fn new(account: ServiceAccount, client: HttpClient) -> Result<Self, String> {
        let uri: Uri = account
            .token_uri
            .parse()
            .map_err(|e| format!("`token_uri` `{}` is not a URL: {e}", account.token_uri))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(format!(
                "`token_uri` `{}` must be an http(s) URL",
                account.token_uri
            ));
        }
        Ok(Self {
            account,
            uri,
            client,
            cached: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(None),
            refreshes: AtomicU64::new(0),
        })
    }

    /// The cached token, if it is not due for a refresh.
    pub(crate) fn fresh(&self) -> Option<HeaderValue> {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.value.clone())
    }

    /// The cached token, if it has not expired (used when a refresh fails).
    fn unexpired(&self) -> Option<HeaderValue> {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|c| Instant::now() < c.expires_at)
            .map(|c| c.value.clone())
    }

    /// A token: the cached one, or a new one, fetched by one request while the others wait.
    /// A failed refresh fails the requests that waited for it too (one call to the token
    /// endpoint per failure, not one per request); a token not yet expired is still used.
    pub(crate) async fn token(self: Arc<Self>) -> Result<HeaderValue, Box<http::Response<Body>>> {
        if let Some(value) = self.fresh() {
            return Ok(value);
        }
        let seen = self.refreshes.load(Ordering::Acquire);
        let mut last_failure = self.refresh.lock().await;
        if let Some(value) = self.fresh() {
            return Ok(value);
        }
        if self.refreshes.load(Ordering::Acquire) != seen
            && let Some(failure) = last_failure.as_ref()
        {
            return Err(self.answer(failure));
        }
        let fetched = self.fetch().await;
        self.refreshes.fetch_add(1, Ordering::Release);
        match fetched {
            Ok((value, expires_in)) => {
                let now = Instant::now();
                let margin = REFRESH_MARGIN.min(expires_in / 2);
                *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(Cached {
                    value: value.clone(),
                    refresh_at: now + expires_in - margin,
                    expires_at: now + expires_in,
                });
                *last_failure = None;
                Ok(value)
            }
            Err(failure) => {
                let answer = self.answer(&failure);
                *last_failure = Some(failure);
                self.unexpired().ok_or(answer)
            }
        }
    }

    /// The error answer for a failed refresh: it names the account and the cause, never the
    /// key or the assertion.
    fn answer(&self, failure: &TokenError) -> Box<http::Response<Body>> {
        Box::new(core_error::response(
            failure.status,
            ErrorBody::new(
                "api_error",
                format!(
                    "no Vertex AI access token for service account `{}`: {}",
                    self.account.client_email, failure.message
                ),
            )
            .code("provider_credentials_failed"),
        ))
    }

    /// Trades a new JWT for an access token at the token endpoint.
    async fn fetch(&self) -> Result<(HeaderValue, Duration), TokenError> {
        let iat = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let assertion = self.account.assertion(iat)?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let mut request = Request::new(BufferedBody::new(form));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION"))),
        );
        let uri = &self.uri;
        let unavailable = |why: String| TokenError::new(StatusCode::SERVICE_UNAVAILABLE, why);
        let exchange = async {
            let response = self.client.inner.request(request).await.map_err(|e| {
                unavailable(format!("the token endpoint {uri} cannot be reached: {e}"))
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_TOKEN_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    TokenError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("the token endpoint's answer could not be read: {e}"),
                    )
                })?
                .to_bytes();
            Ok::<_, TokenError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TOKEN_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                unavailable(format!(
                    "the token endpoint {uri} did not answer within {} s",
                    TOKEN_TIMEOUT.as_secs()
                ))
            })??;
        let answer: Option<Value> = serde_json::from_slice(&body).ok();
        let field = |key: &str| answer.as_ref().and_then(|a| a.get(key));
        if !status.is_success() {
            let what = match (
                field("error").and_then(Value::as_str),
                field("error_description").and_then(Value::as_str),
            ) {
                (Some(error), Some(description)) => format!("{error}: {description}"),
                (Some(error), None) => error.to_owned(),
                _ => {
                    let text = String::from_utf8_lossy(&body);
                    text.chars().take(200).collect()
                }
            };
            let status_out = if status.is_server_error() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
            return Err(TokenError::new(
                status_out,
                format!("the token endpoint {uri} answered {status}: {what}"),
            ));
        }
        let token = field("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TokenError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the token endpoint {uri} answered without an `access_token`"),
                )
            })?;
        let expires_in = field("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(LIFETIME)
            .max(1);
        let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
            TokenError::new(
                StatusCode::BAD_GATEWAY,
                "the access token has characters not allowed in a header",
            )
        })?;
        value.set_sensitive(true);
        Ok((value, Duration::from_secs(expires_in)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/golden/gemini/test_only_service_account_key.pem");

    fn account() -> ServiceAccount {
        let json = serde_json::json!({"type": "service_account", "client_email": "sa@p.iam",
            "private_key_id": "kid1", "private_key": KEY, "project_id": "p"});
        ServiceAccount::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_jwt_is_rs256_with_the_claims_google_asks() {
        let account = account();
        assert_eq!(account.token_uri(), DEFAULT_TOKEN_URI);
        assert_eq!(account.project_id(), Some("p"));
        let jwt = account.assertion(1_000).unwrap();
        let segments: Vec<&str> = jwt.split('.').collect();
        assert_eq!(segments.len(), 3);
        let decode = |s: &str| {
            let standard: String = s
                .chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect();
            let padded = format!("{standard}{}", "=".repeat((4 - standard.len() % 4) % 4));
            b64::decode(&padded).unwrap()
        };
        let header: Value = serde_json::from_slice(&decode(segments[0])).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "kid1"})
        );
        let claims: Value = serde_json::from_slice(&decode(segments[1])).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"iss": "sa@p.iam", "scope": SCOPE, "aud": DEFAULT_TOKEN_URI,
                "iat": 1000, "exp": 4600})
        );
        // The signature verifies with the key's public half.
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            account.key.public().as_ref().to_vec(),
        );
        let signed = &jwt[..jwt.rfind('.').unwrap()];
        public
            .verify(signed.as_bytes(), &decode(segments[2]))
            .unwrap();
        let debug = format!("{account:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }

    #[test]
    fn unusable_credentials_say_why() {
        for (json, want) in [
            (r#"{"type":"authorized_user"}"#, "service_account"),
            (r#"{"private_key":"x"}"#, "client_email"),
            (r#"{"client_email":"a","private_key":"x"}"#, "PEM"),
            (
                r#"{"client_email":"a","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}"#,
                "PKCS#8",
            ),
        ] {
            let err = ServiceAccount::from_json(json.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
        let err = ServiceAccount::from_file("/nonexistent/sa.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sa.json"), "{err}");
    }
}
