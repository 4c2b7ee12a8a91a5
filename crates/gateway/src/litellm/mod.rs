//! LiteLLM's `config.yaml`, read as a Portcullis config (work in progress).
