//! The console's page, script and styles, compiled into the binary.

/// The page.
pub(crate) const INDEX: &str = include_str!("assets/index.html");
/// Its script.
pub(crate) const APP_JS: &str = include_str!("assets/app.js");
/// Its styles.
pub(crate) const APP_CSS: &str = include_str!("assets/app.css");
/// The page served when the console is off.
pub(crate) const OFF: &str = include_str!("assets/off.html");
