//! Registry entries read from Redis: the strict (native) and Hertz JSON
//! decoders and the schema's decode path (which also checks the hash field).
//!
//! Invariants: no panic; an entry that decodes re-encodes (or is refused as
//! too large) and decodes back equal; the strict reading implies the Hertz
//! one, with the same instance except that Hertz reads weight 0 as 10; the
//! native schema accepts exactly the strict entries stored under their own
//! address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_discovery::fuzzing::decode_entry;
use redis_discovery::{Instance, KeySchema, ServiceName, ValidationError};

fuzz_target!(|data: &[u8]| {
    let strict = Instance::from_json(data);
    let hertz = Instance::from_hertz_json(data);

    if let Ok(instance) = &strict {
        round_trips(instance);
        let hertz = hertz.as_ref().expect("a strict entry is a Hertz entry");
        assert_eq!(hertz.addr(), instance.addr());
        assert_eq!(hertz.tags(), instance.tags());
        let weight = match instance.weight() {
            0 => Instance::DEFAULT_WEIGHT,
            w => w,
        };
        assert_eq!(hertz.weight(), weight);
        let native = decode_entry(KeySchema::Native, instance.addr(), data);
        assert_eq!(native.as_ref(), Ok(instance));
    }
    if let Ok(instance) = &hertz {
        round_trips(instance);
        assert!(instance.weight() > 0, "Hertz never reads a drained entry");
    }

    // The schema's own path, with the hash field taken from the input: the
    // native schema wants the field to be the address, Hertz ignores it.
    let field = String::from_utf8_lossy(&data[..data.len().min(32)]);
    let native = decode_entry(KeySchema::Native, &field, data);
    match (&native, &strict) {
        (Ok(n), Ok(s)) => assert!(n == s && n.addr() == field),
        (Ok(_), Err(_)) => panic!("the native schema accepted a non-strict entry"),
        (Err(_), _) => {}
    }
    let by_hertz = decode_entry(KeySchema::Hertz, &field, data);
    assert_eq!(by_hertz, hertz);
});

/// Encodes `instance` both ways and decodes it back.
fn round_trips(instance: &Instance) {
    let service = ServiceName::new("fuzz").expect("a valid name");
    match instance.to_json(&service) {
        Ok(json) => {
            assert!(json.len() <= Instance::MAX_ENTRY_LEN);
            let back = Instance::from_json(json.as_bytes());
            assert_eq!(back.as_ref(), Ok(instance), "{json}");
        }
        Err(ValidationError::EntryTooLarge { .. }) => {}
        Err(e) => panic!("a decoded entry does not encode: {e}"),
    }
    match instance.to_hertz_json(&service) {
        Ok(json) => {
            let back = Instance::from_hertz_json(json.as_bytes()).expect("decodes");
            assert_eq!(back.addr(), instance.addr());
            assert_eq!(back.tags(), instance.tags());
        }
        Err(ValidationError::EntryTooLarge { .. }) => {}
        Err(e) => panic!("a decoded entry does not encode for Hertz: {e}"),
    }
    // The address is one Instance::new accepts as it is.
    let again = Instance::new(instance.addr()).expect("a decoded address is valid");
    assert_eq!(again.addr(), instance.addr());
}
