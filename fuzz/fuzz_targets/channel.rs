//! Pub/sub channel names (native schema): which service an event is for.
//!
//! The input is a key prefix, a NUL, then the channel name.
//!
//! Invariants: no panic; a channel read as service `s` is exactly the
//! events channel of `s` under that prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_discovery::fuzzing::{events_channel, service_of_channel};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, channel) = text.split_once('\0').unwrap_or(("sd", text));
    if let Some(service) = service_of_channel(prefix, channel) {
        assert_eq!(events_channel(prefix, &service).as_deref(), Some(channel));
    }
});
