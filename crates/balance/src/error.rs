//! What can be wrong with a balancer's configuration.

use std::fmt;

/// A balancer that cannot be built, naming the field at fault as a config path:
/// `targets[1].weight: must be >= 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    path: String,
    message: String,
}

impl BuildError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The field at fault, e.g. `targets[1].weight`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong with it, e.g. `must be >= 0`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for BuildError {}
