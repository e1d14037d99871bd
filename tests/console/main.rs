//! The web console (`redis-discovery console`): its API, its security, and
//! its page driven in headless chromium through chromedriver.
