//! Tag filters (`TagFilter`'s `FromStr`, `Display`, `matches`, `select`).
//!
//! The input is a filter, a NUL, then instance tags as another filter string
//! (so the fuzzer shapes both).
//!
//! Invariants: no panic; a parsed filter prints to a string that parses back
//! equal; an instance carrying exactly the filter's pairs matches it; with
//! `Fallback::Fail`, `select` yields only matching instances.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_discovery::balance::{Fallback, TagFilter};
use redis_discovery::Instance;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (filter_text, tags_text) = text.split_once('\0').unwrap_or((text, ""));
    let Ok(filter) = filter_text.parse::<TagFilter>() else {
        return;
    };
    let printed = filter.to_string();
    assert_eq!(
        printed.parse::<TagFilter>().as_ref(),
        Ok(&filter),
        "{printed:?}"
    );
    assert_eq!(filter.is_empty(), printed.is_empty());

    let base = Instance::new("10.0.0.1:80").expect("valid");
    // Instance tags have limits (count, length) that filters have not.
    if let Ok(exact) = base.clone().with_tags(filter.iter()) {
        assert!(filter.matches(&exact), "{filter:?} vs {exact:?}");
    }
    let mut instances = vec![base.clone(), base.clone().with_weight(0)];
    if let Ok(tags) = tags_text.parse::<TagFilter>() {
        if let Ok(tagged) = base.clone().with_tags(tags.iter()) {
            instances.push(tagged.clone());
            instances.push(tagged.with_weight(0));
        }
    }
    if let Some(selected) = filter.select(&instances, Fallback::Fail) {
        assert!(selected.iter().all(|i| filter.matches(i)));
        assert!(selected.iter().any(|i| i.weight() > 0));
    }
    let all = filter.select(&instances, Fallback::AllInstances);
    assert!(all.is_some_and(|s| !s.is_empty()));
});
