//! Tag filters: parsing, matching and the fallbacks.

use super::*;

fn instance(n: u8, weight: u32, tags: &[(&str, &str)]) -> Instance {
    Instance::new(format!("10.0.0.{n}:80"))
        .and_then(|i| i.with_tags(tags.iter().copied()))
        .expect("valid instance")
        .with_weight(weight)
}

#[test]
fn matching() {
    let a = instance(1, 1, &[("zone", "a"), ("tier", "gold")]);
    let b = instance(2, 1, &[("zone", "b")]);
    let c = instance(3, 1, &[]);
    assert!(TagFilter::new().matches(&c));
    let zone_a = TagFilter::new().with("zone", "a");
    assert!(zone_a.matches(&a) && !zone_a.matches(&b) && !zone_a.matches(&c));
    let both = zone_a.clone().with("tier", "gold");
    assert!(both.matches(&a));
    assert!(!both.with("tier", "silver").matches(&a));
    let collected: TagFilter = [("zone", "a")].into_iter().collect();
    assert_eq!(collected, zone_a);
}

#[test]
fn parse_and_display() {
    let filter: TagFilter = " zone = a ,tier=gold,, ".parse().expect("valid");
    assert_eq!(
        filter,
        TagFilter::new().with("zone", "a").with("tier", "gold")
    );
    assert_eq!(filter.to_string(), "tier=gold,zone=a");
    assert_eq!("".parse::<TagFilter>(), Ok(TagFilter::new()));
    assert_eq!(TagFilter::new().to_string(), "");
    assert_eq!(
        "k=".parse::<TagFilter>(),
        Ok(TagFilter::new().with("k", ""))
    );
    // The value is everything after the first `=`.
    assert_eq!(
        "k=a=b".parse::<TagFilter>(),
        Ok(TagFilter::new().with("k", "a=b"))
    );
    for (bad, expected) in [
        (
            "zone",
            ParseTagFilterError::MissingEquals {
                pair: "zone".into(),
            },
        ),
        (
            "zone=a,=b",
            ParseTagFilterError::EmptyKey { pair: "=b".into() },
        ),
        (
            "zone=a,zone=b",
            ParseTagFilterError::DuplicateKey { key: "zone".into() },
        ),
        (
            "zone=\\a",
            ParseTagFilterError::BadEscape {
                pair: "zone=\\a".into(),
            },
        ),
        (
            "zone=a\\",
            ParseTagFilterError::BadEscape {
                pair: "zone=a\\".into(),
            },
        ),
    ] {
        assert_eq!(bad.parse::<TagFilter>(), Err(expected.clone()), "{bad}");
        assert!(expected.to_string().starts_with("invalid tag filter"));
    }
}

#[test]
fn escapes_round_trip() {
    let filter = TagFilter::new()
        .with("a,b", "c=d")
        .with("back\\slash", "x,=\\y")
        .with("plain", "");
    let text = filter.to_string();
    assert_eq!(text, "a\\,b=c\\=d,back\\\\slash=x\\,\\=\\\\y,plain=");
    assert_eq!(text.parse::<TagFilter>(), Ok(filter));
    assert_eq!(
        "k\\=1=v\\,2".parse::<TagFilter>(),
        Ok(TagFilter::new().with("k=1", "v,2"))
    );
}

#[test]
fn select_with_fallback() {
    let instances = [
        instance(1, 10, &[("zone", "a")]),
        instance(2, 0, &[("zone", "b")]),
        instance(3, 10, &[("zone", "c")]),
    ];
    let pick = |filter: &str, fallback| {
        let filter: TagFilter = filter.parse().expect("valid");
        filter.select(&instances, fallback).map(|s| {
            let borrowed = matches!(s, Cow::Borrowed(_));
            let addrs: Vec<String> = s.iter().map(|i| i.addr().to_owned()).collect();
            (addrs, borrowed)
        })
    };
    let all = (
        vec![
            "10.0.0.1:80".into(),
            "10.0.0.2:80".into(),
            "10.0.0.3:80".into(),
        ],
        true,
    );
    assert_eq!(pick("", Fallback::Fail), Some(all.clone()));
    assert_eq!(
        pick("zone=a", Fallback::Fail),
        Some((vec!["10.0.0.1:80".into()], false))
    );
    // zone=b is drained: no pickable instance matches.
    assert_eq!(pick("zone=b", Fallback::Fail), None);
    assert_eq!(pick("zone=b", Fallback::AllInstances), Some(all.clone()));
    assert_eq!(pick("zone=x", Fallback::Fail), None);
    assert_eq!(pick("zone=x", Fallback::AllInstances), Some(all));
    // Everything matches: borrowed.
    let gold: Vec<Instance> = instances
        .iter()
        .map(|i| i.clone().with_tag("tier", "gold").expect("valid tag"))
        .collect();
    let selected = TagFilter::new()
        .with("tier", "gold")
        .select(&gold, Fallback::Fail);
    assert!(matches!(selected, Some(Cow::Borrowed(s)) if s.len() == 3));
}
