//! Unit tests of names, tags and entries.

mod address;

use std::borrow::Cow;

use super::*;

#[test]
fn service_names() {
    for ok in [
        "a",
        "orders",
        "hertz.test.demo",
        "A-b_c.9",
        &"x".repeat(255),
    ] {
        assert!(ServiceName::new(ok).is_ok(), "{ok}");
    }
    assert_eq!(ServiceName::new(""), Err(ValidationError::EmptyServiceName));
    assert!(matches!(
        ServiceName::new("x".repeat(256)),
        Err(ValidationError::ServiceNameTooLong { len: 256 })
    ));
    for (bad, ch, pos) in [
        ("a b", ' ', 1),
        ("{svc}", '{', 0),
        ("a}", '}', 1),
        ("a:b", ':', 1),
        ("a/b", '/', 1),
        ("a\nb", '\n', 1),
        ("zürich", 'ü', 1),
    ] {
        match ServiceName::new(bad) {
            Err(ValidationError::ServiceNameCharacter {
                character,
                position,
                ..
            }) => assert_eq!((character, position), (ch, pos), "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let err = ServiceName::new("a b").unwrap_err().to_string();
    assert!(err.contains("' '") && err.contains("position 1"), "{err}");
}

#[test]
fn tags_limits() {
    let i = Instance::new("h:1").unwrap();
    assert!(i.clone().with_tag("", "v").is_err());
    assert!(i.clone().with_tag("k".repeat(257), "v").is_err());
    assert!(i.clone().with_tag("k", "v".repeat(257)).is_err());
    assert!(i
        .clone()
        .with_tags((0..65).map(|n| (n.to_string(), "v")))
        .is_err());
    assert!(i.with_tags((0..64).map(|n| (n.to_string(), "v"))).is_ok());
}

#[test]
fn json_round_trip_uses_hertz_field_names() {
    let svc = ServiceName::new("orders").unwrap();
    let i = Instance::new("10.0.0.1:80")
        .unwrap()
        .with_weight(0)
        .with_tag("zone", "a")
        .unwrap();
    let json = i.to_json(&svc).unwrap();
    assert_eq!(
        json,
        r#"{"service_name":"orders","addr":"10.0.0.1:80","weight":0,"tags":{"zone":"a"}}"#
    );
    assert_eq!(Instance::from_json(json.as_bytes()).unwrap(), i);
    let bare = Instance::new("10.0.0.1:80").unwrap();
    assert_eq!(
        bare.to_hertz_json(&svc).unwrap(),
        r#"{"service_name":"orders","addr":"10.0.0.1:80","weight":10,"tags":null}"#
    );
    assert!(bare.to_json(&svc).unwrap().ends_with(r#""tags":{}}"#));
}

#[test]
fn oversized_entry_is_refused() {
    let svc = ServiceName::new("orders").unwrap();
    let big = Instance::new("h:1")
        .unwrap()
        .with_tags((0..64).map(|n| (format!("k{n}"), "v".repeat(256))))
        .unwrap();
    assert!(matches!(
        big.to_json(&svc),
        Err(ValidationError::EntryTooLarge { .. })
    ));
}

#[test]
fn strict_and_hertz_decoding() {
    let e = |s: &str| Instance::from_json(s.as_bytes());
    let h = |s: &str| Instance::from_hertz_json(s.as_bytes());
    assert!(matches!(e("not json"), Err(EntryError::Json(_))));
    assert!(matches!(
        e(r#"{"addr":"h:1","weight":-5}"#),
        Err(EntryError::Weight(-5))
    ));
    assert!(matches!(
        e(r#"{"addr":"h:1"}"#),
        Err(EntryError::Missing("weight"))
    ));
    assert!(matches!(
        e(r#"{"addr":"nope","weight":1}"#),
        Err(EntryError::Invalid(_))
    ));
    assert!(matches!(
        e(r#"{"addr":"h:1","weight":"1"}"#),
        Err(EntryError::Json(_))
    ));
    assert!(e(r#"{"addr":"h:1","weight":1,"tags":null}"#).is_ok());
    assert_eq!(h(r#"{"addr":"h:1","weight":-5}"#).unwrap().weight(), 10);
    assert_eq!(h(r#"{"addr":"h:1","weight":0}"#).unwrap().weight(), 10);
    assert_eq!(h(r#"{"addr":"h:1"}"#).unwrap().weight(), 10);
    assert_eq!(
        h(r#"{"addr":"h:1","weight":7,"tags":null}"#)
            .unwrap()
            .weight(),
        7
    );
    let huge = format!(
        r#"{{"addr":"h:1","weight":1,"x":"{}"}}"#,
        "a".repeat(20_000)
    );
    assert!(matches!(e(&huge), Err(EntryError::TooLarge { .. })));
}

#[test]
fn service_names_are_case_insensitive() {
    let upper = ServiceName::new("Orders").unwrap();
    let lower = ServiceName::new("orders").unwrap();
    assert_eq!(upper, lower);
    assert_eq!(upper.as_str(), "orders");
    assert_eq!(upper.to_string(), "orders");
    assert_eq!(format!("{upper:?}"), "\"orders\"");
    assert_eq!(upper.spelling(), "Orders");
    assert_eq!(lower.spelling(), "orders");
    let hash = |n: &ServiceName| {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        (state.hash_one(n), state.hash_one(n.as_str()))
    };
    let (a, b) = hash(&upper);
    assert_eq!(a, b, "hashes as its lowercase str");
    let mut map = std::collections::HashMap::new();
    map.insert(upper.clone(), 1);
    assert_eq!(map.get("orders"), Some(&1));
    assert_eq!(ServiceName::try_from("ORDERS".to_owned()).unwrap(), lower);
    // Native JSON names the service in lowercase, Hertz's as spelled.
    let i = Instance::new("10.0.0.1:80").unwrap();
    assert!(i
        .to_json(&upper)
        .unwrap()
        .contains(r#""service_name":"orders""#));
    assert!(i
        .to_hertz_json(&upper)
        .unwrap()
        .contains(r#""service_name":"Orders""#));

    assert_eq!(lowercase("Orders.V2"), "orders.v2");
    assert!(matches!(lowercase("orders"), Cow::Borrowed("orders")));
    let long = "X".repeat(300);
    assert!(matches!(lowercase(&long), Cow::Borrowed(s) if s == long));
}

/// The stored entries are a contract: tags encode as the JSON object of
/// the map they hold, and print as that map.
#[test]
fn tags_encode_as_the_map_they_hold() {
    let pairs = [("zone", "a"), ("env", "prod \"eu\"")];
    let tags = Tags::from(pairs);
    let map: std::collections::BTreeMap<_, _> = pairs.into_iter().collect();
    assert_eq!(
        serde_json::to_string(&tags).unwrap(),
        serde_json::to_string(&map).unwrap()
    );
    assert_eq!(format!("{tags:?}"), format!("{map:?}"));
    let back: Tags = serde_json::from_str(r#"{"b":"2","a":"1"}"#).unwrap();
    assert_eq!(back.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
    assert_eq!(back.iter().next_back(), Some(("b", "2")));
    assert_eq!(back.iter().len(), 2);
    assert!(Tags::new().is_empty() && Tags::default() == Tags::new());
}
