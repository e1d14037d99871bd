//! The page and its assets, embedded in the binary: the console works on a
//! machine with no internet.

pub(super) const INDEX: &str = include_str!("assets/index.html");
pub(super) const APP_JS: &str = include_str!("assets/app.js");
pub(super) const STYLE_CSS: &str = include_str!("assets/style.css");
pub(super) const FAVICON_SVG: &str = include_str!("assets/favicon.svg");
