//! The web console (`redis-discovery console`): its API, its security, and
//! its page driven in headless chromium through chromedriver.
//!
//! The page tests need `chromium` and `chromedriver` on PATH (`apt-get
//! install chromium chromium-driver`); their screenshots go to
//! `target/tmp/console-screenshots/`.

#[path = "../support/mod.rs"]
mod support;

mod actions;
mod api;
mod hooks;
mod hostile;
mod page;
mod page_actions;
mod phone;
mod recovery;
mod secrets;
mod security;
