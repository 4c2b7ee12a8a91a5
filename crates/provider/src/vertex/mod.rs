//! Google Cloud's Vertex AI, shared by the providers that speak to it: service-account
//! credentials, the access tokens they earn, where a project's models live, and which
//! publisher serves a model.
//!
//! One Vertex AI project serves models of several publishers under one host and one token:
//! Google's Gemini (`…/publishers/google/models/{model}:generateContent`, served by
//! [`Gemini`](crate::Gemini)) and Anthropic's Claude
//! (`…/publishers/anthropic/models/{model}:rawPredict`, served by
//! [`Anthropic`](crate::Anthropic) in its Vertex AI mode). A [`Gemini`](crate::Gemini) built
//! with [`vertex`](crate::GeminiBuilder::vertex) serves both: it picks the publisher of each
//! request by its model ([`Publisher::of`]) and both publishers use one token cache, so one
//! token is fetched for all.
//!
//! ```
//! use portcullis_provider::vertex::Publisher;
//!
//! assert_eq!(Publisher::of("gemini-2.5-pro").unwrap(), (Publisher::Google, "gemini-2.5-pro"));
//! assert_eq!(
//!     Publisher::of("claude-sonnet-4-5@20250929").unwrap(),
//!     (Publisher::Anthropic, "claude-sonnet-4-5@20250929")
//! );
//! assert_eq!(
//!     Publisher::of("anthropic.claude-haiku-4-5").unwrap(),
//!     (Publisher::Anthropic, "claude-haiku-4-5")
//! );
//! assert_eq!(Publisher::of("google.gemini-2.5-flash").unwrap().1, "gemini-2.5-flash");
//! let refused = Publisher::of("meta.llama-4-maverick").unwrap_err();
//! assert!(refused.message.contains("meta.llama-4-maverick"));
//! ```

mod credentials;

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_core::BuildError;
use portcullis_core::error::InvalidRequest;

use crate::client::HttpClient;

pub use self::credentials::{CredentialsError, DEFAULT_TOKEN_URI, ServiceAccount};
pub(crate) use self::credentials::{TokenFuture, TokenSource};

/// The publisher of a model on Vertex AI: who serves it, under
/// `…/publishers/{publisher}/models/{model}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publisher {
    /// Google's models (Gemini, the text embeddings): `publishers/google`.
    Google,
    /// Anthropic's Claude: `publishers/anthropic`, Messages bodies through `rawPredict`.
    Anthropic,
}

/// Model prefixes naming publishers whose models Vertex AI serves in shapes of their own,
/// which no provider here speaks.
const REFUSED_PREFIXES: [&str; 3] = ["meta", "mistralai", "endpoints"];

impl Publisher {
    /// The publisher of `model`, and the model's name in the URL, picked as Portkey picks
    /// them: a `google.` or `anthropic.` prefix names the publisher (and is removed), a model
    /// starting with `claude` is Anthropic's, any other is Google's.
    ///
    /// # Errors
    /// An [`InvalidRequest`] (400) naming the model for a `meta.`, `mistralai.` or
    /// `endpoints.` model (their publishers answer in shapes of their own), or a name that
    /// is empty or has anything but letters, digits and `-._@` (it goes in the URL path).
    pub fn of(model: &str) -> Result<(Publisher, &str), InvalidRequest> {
        let (publisher, name) = if let Some(name) = model.strip_prefix("anthropic.") {
            (Publisher::Anthropic, name)
        } else if let Some(name) = model.strip_prefix("google.") {
            (Publisher::Google, name)
        } else if let Some(prefix) = REFUSED_PREFIXES
            .iter()
            .find(|p| model.strip_prefix(**p).is_some_and(|r| r.starts_with('.')))
        {
            return Err(InvalidRequest::param(
                "model",
                format!(
                    "`{model}`: Vertex AI models of the `{prefix}` publisher are not supported \
                     (Google's and Anthropic's are: `gemini-…`, `claude-…`, or a `google.` / \
                     `anthropic.` prefix)"
                ),
            ));
        } else if model.starts_with("claude") {
            (Publisher::Anthropic, model)
        } else {
            (Publisher::Google, model)
        };
        if !plain_model(name) {
            return Err(InvalidRequest::param(
                "model",
                format!(
                    "`{model}` is not a Vertex AI model name (letters, digits, `-`, `.`, `_`, \
                     `@`)"
                ),
            ));
        }
        Ok((publisher, name))
    }

    /// The publisher's segment of the URL: `google` or `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Publisher::Google => "google",
            Publisher::Anthropic => "anthropic",
        }
    }
}

/// Whether `name` can go in a URL path as a model: not empty, and only letters, digits and
/// `-._@` (Vertex AI's Claude versions are `claude-…@20250929`).
pub(crate) fn plain_model(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b))
}

/// Where Vertex AI credentials come from.
#[derive(Clone, Debug)]
pub(crate) enum Credentials {
    /// A service-account JSON key file, read when the provider is built.
    File(PathBuf),
    /// A service account read already.
    Account(ServiceAccount),
}

/// A provider's Vertex AI settings, as its builder was given them.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) project: String,
    pub(crate) region: String,
    pub(crate) credentials: Credentials,
}

/// Vertex AI settings checked and ready: the default host, the project's route and the
/// token source.
pub(crate) struct Resolved {
    /// `https://{region}-aiplatform.googleapis.com` (`https://aiplatform.googleapis.com` for
    /// `global`), for a provider given no base URL.
    pub(crate) default_base: String,
    /// `/projects/{project}/locations/{region}/publishers/`: a version before it, the
    /// publisher and `/models/{model}:{method}` after it.
    pub(crate) route: String,
    pub(crate) tokens: Arc<TokenSource>,
}

impl Settings {
    /// Reads the service account (when given as a file), takes the project from it when none
    /// was given, checks the project and region, and makes the token source (reaching the
    /// token endpoint through `client`).
    ///
    /// # Errors
    /// A [`BuildError`] at `vertex_service_account_file` for credentials that cannot be read
    /// or used, at `vertex_project` / `vertex_region` for an empty or not plain name.
    pub(crate) fn resolve(&self, client: &HttpClient) -> Result<Resolved, BuildError> {
        let account = match &self.credentials {
            Credentials::Account(account) => account.clone(),
            Credentials::File(path) => ServiceAccount::from_file(path)
                .map_err(|e| BuildError::at("vertex_service_account_file", e.to_string()))?,
        };
        let project = match (self.project.as_str(), account.project_id()) {
            ("", Some(project)) => project.to_owned(),
            (project, _) => project.to_owned(),
        };
        for (path, value) in [
            ("vertex_project", &project),
            ("vertex_region", &self.region),
        ] {
            let plain = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !plain {
                return Err(BuildError::at(
                    path,
                    format!("`{value}` must be a plain name (letters, digits, `-`, `_`, `.`)"),
                ));
            }
        }
        let region = &self.region;
        let default_base = if region == "global" {
            "https://aiplatform.googleapis.com".to_owned()
        } else {
            format!("https://{region}-aiplatform.googleapis.com")
        };
        let tokens = TokenSource::new(account, client.clone())
            .map_err(|e| BuildError::at("vertex_service_account_file", e))?;
        Ok(Resolved {
            default_base,
            route: format!("/projects/{project}/locations/{region}/publishers/"),
            tokens: Arc::new(tokens),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_by_model() {
        for (model, publisher, name) in [
            ("gemini-2.5-pro", Publisher::Google, "gemini-2.5-pro"),
            (
                "gemini-1.5-pro-002",
                Publisher::Google,
                "gemini-1.5-pro-002",
            ),
            (
                "text-embedding-005",
                Publisher::Google,
                "text-embedding-005",
            ),
            (
                "google.gemini-2.0-flash",
                Publisher::Google,
                "gemini-2.0-flash",
            ),
            (
                "claude-3-5-sonnet@20240620",
                Publisher::Anthropic,
                "claude-3-5-sonnet@20240620",
            ),
            (
                "anthropic.claude-opus-4-1",
                Publisher::Anthropic,
                "claude-opus-4-1",
            ),
            // A prefix is a publisher only when it is one.
            ("metallica", Publisher::Google, "metallica"),
        ] {
            assert_eq!(Publisher::of(model).unwrap(), (publisher, name), "{model}");
        }
        for model in [
            "meta.llama-3",
            "mistralai.mistral-large",
            "endpoints.123",
            "",
            "a/b",
            "anthropic.",
        ] {
            let err = Publisher::of(model).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("model"));
            assert!(err.message.contains(&format!("`{model}`")), "{err}");
        }
    }
}
