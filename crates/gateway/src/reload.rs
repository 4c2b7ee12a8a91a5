//! Reloading the config file: on SIGHUP (the binary), and when `server.watch_config` is on,
//! whenever the file's content changes.
//!
//! Either way the file is read, checked and compiled, then swapped in with
//! [`Gateway::reload`]: requests in flight finish on the old config, the cache, limits and
//! breakers carry over, and a file that does not read or build leaves the running config in
//! place with the reason in the log.
//!
//! ```no_run
//! # async fn demo(gateway: portcullis_gateway::Gateway) {
//! use std::time::Duration;
//! let path = std::path::PathBuf::from("portcullis.json");
//! tokio::spawn(portcullis_gateway::reload::watch(gateway, path, Duration::from_secs(2)));
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Config, ConfigError, Gateway};

/// How often a watched file is read (`server.watch_config`).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Reads `path` and swaps it in; the log says which way it went.
pub fn reload_from(gateway: &Gateway, path: &Path) -> Result<(), ConfigError> {
    let loaded = Config::load(path).and_then(|config| gateway.reload(config));
    match &loaded {
        Ok(()) => tracing::info!(config = %path.display(), "config reloaded"),
        Err(err) => tracing::error!(
            config = %path.display(),
            error = %err,
            "config not reloaded: the running config stays"
        ),
    }
    loaded
}

/// Reads `path` every `every` and reloads the gateway when its bytes changed since the last
/// read (a touch that changes nothing reloads nothing; a file that fails to load is tried
/// again only once it changes again). Runs until the task is dropped.
pub async fn watch(gateway: Gateway, path: PathBuf, every: Duration) {
    // The file as it was when the gateway started (or last reloaded from it).
    let mut seen = std::fs::read(&path).ok();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        // A config file is small: reading it whole is cheaper than trusting mtimes, which
        // miss edits within the same second and editors that restore them.
        let now = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                if seen.is_some() {
                    tracing::warn!(config = %path.display(), error = %err, "config file unreadable: the running config stays");
                }
                None
            }
        };
        if now.is_none() || now == seen {
            seen = now.or(seen);
            continue;
        }
        seen = now;
        let _ = reload_from(&gateway, &path);
    }
}
