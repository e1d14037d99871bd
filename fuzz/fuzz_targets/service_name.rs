//! Service names (`ServiceName::new` and its conversions).
//!
//! Invariants: no panic; the ways to build a name agree; an accepted name is
//! 1 to 255 bytes, the input up to ASCII case, and usable as the host of a
//! request URI (`http://NAME/`), which is how the layer meets it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_discovery::ServiceName;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = ServiceName::new(text);
    assert_eq!(ServiceName::try_from(text.to_owned()), name);
    assert_eq!(text.parse::<ServiceName>(), name);
    assert_eq!(ServiceName::validate(text).is_ok(), name.is_ok());
    let Ok(name) = name else {
        return;
    };
    let s = name.as_str();
    assert!((1..=ServiceName::MAX_LEN).contains(&s.len()));
    assert!(s.eq_ignore_ascii_case(text), "{s:?} from {text:?}");
    assert_eq!(name.to_string(), s);
    assert_eq!(ServiceName::new(s).as_ref(), Ok(&name));
    let uri: http::Uri = format!("http://{s}/x")
        .parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a URI host: {e}"));
    assert!(
        uri.host().is_some_and(|h| h.eq_ignore_ascii_case(s)),
        "{s:?} -> {uri:?}"
    );
});
