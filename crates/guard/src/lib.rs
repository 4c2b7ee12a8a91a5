//! Guardrails for LLM calls (work in progress; not yet in the umbrella crate).

#![forbid(unsafe_code)]
