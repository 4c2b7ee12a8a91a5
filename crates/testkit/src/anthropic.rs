//! A fake Anthropic Messages API upstream on loopback (work in progress).
