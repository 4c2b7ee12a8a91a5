//! The error of building a [`RetryPolicy`](crate::RetryPolicy).

use std::fmt;

/// A retry setting out of range, found when the policy is built.
///
/// [`field`](BuildError::field) is the setting's name as Portkey's `retry` config spells it
/// (`attempts`, `on_status_codes`) or the builder method's name for settings Portkey does not
/// have, so a config loader can prefix its own path (`targets[1].retry.attempts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    field: &'static str,
    message: String,
}

impl BuildError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    /// The setting at fault.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for BuildError {}
