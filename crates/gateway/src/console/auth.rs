//! The console's sessions: a cookie that carries its own expiry and an HMAC of it under the
//! admin token, so the gateway keeps no session table, a restart keeps sessions, and a new
//! admin token ends every session at once.

use std::time::Duration;

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use ring::hmac;

/// Portkey's cookie name, so its console's habits carry over.
pub(crate) const COOKIE_NAME: &str = "portkey_admin_session";

/// How long a session lasts (Portkey's 12 hours).
pub(crate) const SESSION: Duration = Duration::from_secs(12 * 3600);

fn key(admin_token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, admin_token.as_bytes())
}

fn message(expires: u64) -> String {
    format!("portcullis-console|{expires}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A session value that expires `SESSION` after `now` (unix seconds).
pub(crate) fn issue(admin_token: &str, now: u64) -> String {
    let expires = now + SESSION.as_secs();
    let tag = hmac::sign(&key(admin_token), message(expires).as_bytes());
    format!("{expires}.{}", hex(tag.as_ref()))
}

/// Whether `value` is a session issued under `admin_token` that has not expired.
pub(crate) fn valid(admin_token: &str, value: &str, now: u64) -> bool {
    let Some((expires, tag)) = value.split_once('.') else {
        return false;
    };
    let (Ok(expires), Some(tag)) = (expires.parse::<u64>(), unhex(tag)) else {
        return false;
    };
    // ring compares the tags in constant time.
    expires > now && hmac::verify(&key(admin_token), message(expires).as_bytes(), &tag).is_ok()
}

/// The `Set-Cookie` value of a new session.
pub(crate) fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session cookie's value, if the request carries one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// Whether the request carries a valid session cookie or the admin token as a bearer token.
pub(crate) fn authorized(headers: &HeaderMap, admin_token: &str, now: u64) -> bool {
    if let Some(value) = cookie(headers)
        && valid(admin_token, value, now)
    {
        return true;
    }
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .is_some_and(|token| token_matches(token, admin_token))
}

/// Compares a presented token with the admin token in time that depends on neither (their
/// digests, every byte read).
pub(crate) fn token_matches(presented: &str, admin_token: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let (a, b) = (digest(presented), digest(admin_token));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TOKEN: &str = "console-admin-token-0123";

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_under_its_token() {
        let value = issue(TOKEN, 1_000);
        assert!(valid(TOKEN, &value, 1_000));
        assert!(valid(TOKEN, &value, 1_000 + SESSION.as_secs() - 1));
        assert!(!valid(TOKEN, &value, 1_000 + SESSION.as_secs()));
        assert!(!valid("another-admin-token-456", &value, 1_000));
    }

    #[test]
    fn a_forged_or_stretched_session_is_refused() {
        let value = issue(TOKEN, 1_000);
        let (_, tag) = value.split_once('.').unwrap();
        let stretched = format!("{}.{tag}", 1_000 + 10 * SESSION.as_secs());
        assert!(!valid(TOKEN, &stretched, 1_000));
        for junk in ["", ".", "abc", "99999999999.zz", "99999999999.abc"] {
            assert!(!valid(TOKEN, junk, 1_000), "{junk:?}");
        }
    }

    #[test]
    fn cookie_or_bearer_token() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, TOKEN, 0));
        let cookie = format!("other=1; {COOKIE_NAME}={}", issue(TOKEN, 0));
        headers.insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(authorized(&headers, TOKEN, 0));
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {TOKEN}")).unwrap(),
        );
        assert!(authorized(&headers, TOKEN, 0));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert!(!authorized(&headers, TOKEN, 0));
    }

    #[test]
    fn cookie_flags() {
        let set = set_cookie("v", false);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.contains("Max-Age=43200") && !set.contains("Secure"));
        assert!(set_cookie("v", true).ends_with("; Secure"));
    }
}
