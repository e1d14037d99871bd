//! Redis URLs: `redis://`, `rediss://`, `unix://` (the redis crate's parser)
//! and the Sentinel and Cluster forms the crate parses by hand.
//!
//! Every NUL character of the input stands for a password-like secret
//! (`SECRET`), so the fuzzer can put one anywhere without guessing it.
//!
//! Invariants: no panic; redaction is idempotent; when the parsed URL holds
//! the secret in a password, neither the redacted URL nor the endpoint's
//! `Debug` shows it; an error message never shows the secret when the
//! redacted URL hides it (errors say no more than the redacted URL).
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_discovery::fuzzing::{parse_redis_url, redact_redis_url};

/// No prefix of it is also a suffix, so every occurrence in the URL comes
/// from one NUL of the input.
const SECRET: &str = "Hunter2#pw";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains(SECRET) {
        return;
    }
    let url = text.replace('\0', SECRET);
    let redacted = redact_redis_url(&url);
    assert_eq!(redact_redis_url(&redacted), redacted, "not idempotent");
    let hidden = !redacted.contains(SECRET);
    match parse_redis_url(&url) {
        Ok(parsed) => {
            if parsed.passwords.iter().any(|p| p.contains(SECRET)) {
                assert!(hidden, "password in {redacted:?}");
                assert!(!parsed.debug.contains(SECRET), "password in {parsed:?}");
            }
        }
        Err(e) => {
            let message = e.to_string();
            if hidden {
                assert!(!message.contains(SECRET), "{url:?} -> {message}");
            }
            assert!(!format!("{e:?}").contains(SECRET) || !hidden, "{e:?}");
        }
    }
});
