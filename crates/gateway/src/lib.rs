//! The Portcullis gateway: a Portkey-compatible config compiled into a tower stack.
//!
//! - [`config`]: the file (providers, a routing tree in Portkey's schema, server settings),
//!   read strictly; every error names its path.
//! - [`build`]: providers built once; routing trees compiled into stacks.
//! - [`Gateway`]: the entry service: endpoints, gateway API keys, Portkey's request headers
//!   (`x-portkey-config`, `x-portkey-virtual-key`, `x-portkey-metadata`,
//!   `x-portkey-trace-id`, `x-portkey-request-timeout`).
//! - [`server`]: HTTP/1.1 + HTTP/2 serving with graceful shutdown.
//!
//! ```
//! use portcullis_gateway::{Config, Gateway};
//!
//! let config = Config::parse(
//!     r#"{"providers": {"local": {"provider": "mock"}},
//!         "config": {"virtual_key": "local"}}"#,
//!     &|_| None,
//! )
//! .unwrap();
//! let gateway = Gateway::new(config).unwrap();
//! # let _ = gateway;
//! ```

#![forbid(unsafe_code)]

pub mod build;
pub mod config;
mod console;
mod gateway;
mod header_cache;
pub mod litellm;
pub mod log_writer;
mod messages;
mod portkey_headers;
mod prompts;
pub mod reload;
pub mod server;
mod slug;

pub use self::config::{Config, ConfigError};
pub use self::gateway::{ConfigRef, Gateway};
