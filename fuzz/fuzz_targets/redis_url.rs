//! Redis URLs: `redis://`, `rediss://`, `unix://` (the redis crate's parser)
//! and the Sentinel and Cluster forms the crate parses by hand.
//!
//! The `n`-th NUL character of the input stands for a password-like secret
//! `Hunter{n}#pw`, so the fuzzer can put secrets anywhere without guessing
//! them, and each is told apart from the others.
//!
//! Invariants: no panic; redaction is idempotent; a secret that the parsed
//! URL holds in a password shows neither in the redacted URL nor in the
//! endpoint's `Debug`; an error message shows no secret that the redacted
//! URL hides (errors say no more than the redacted URL).
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_discovery::fuzzing::{parse_redis_url, redact_redis_url};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every "#pw" of the URL then ends a secret.
    if text.contains("#pw") || text.matches('\0').count() > 100 {
        return;
    }
    let mut secrets = Vec::new();
    let url: String = text
        .split('\0')
        .enumerate()
        .flat_map(|(n, part)| {
            let secret = (n > 0).then(|| format!("Hunter{:02}#pw", n - 1));
            secrets.extend(secret.clone());
            [secret.unwrap_or_default(), part.to_owned()]
        })
        .collect();
    let redacted = redact_redis_url(&url);
    assert_eq!(redact_redis_url(&redacted), redacted, "not idempotent");
    let hidden = |secret: &String| !redacted.contains(secret.as_str());
    match parse_redis_url(&url) {
        Ok(parsed) => {
            for secret in &secrets {
                if parsed.passwords.iter().any(|p| p.contains(secret.as_str())) {
                    assert!(hidden(secret), "{secret} in {redacted:?}");
                    assert!(!parsed.debug.contains(secret.as_str()), "{parsed:?}");
                }
            }
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            for secret in secrets.iter().filter(|s| hidden(s)) {
                assert!(!shown.contains(secret.as_str()), "{url:?} -> {shown}");
            }
        }
    }
});
