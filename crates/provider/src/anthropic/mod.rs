//! The native Anthropic Messages API provider (work in progress).
