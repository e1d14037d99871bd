use super::wire::{change, escape_glob, pattern};
use super::{ChangeKind, RegistryChange};
use crate::schema::{KeySchema, Keyspace};

fn native(prefix: &str) -> Keyspace {
    Keyspace::new(KeySchema::Native, prefix).unwrap()
}

#[test]
fn the_pattern_matches_the_events_channels_of_the_prefix() {
    assert_eq!(pattern(&native("sd")).as_deref(), Some("sd:{*}:events"));
    assert_eq!(
        pattern(&native("a:b/c.d-e_f")).as_deref(),
        Some("a:b/c.d-e_f:{*}:events")
    );
    assert_eq!(
        pattern(&Keyspace::new(KeySchema::Hertz, "sd").unwrap()),
        None
    );
}

#[test]
fn glob_characters_are_escaped() {
    assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
    assert_eq!(escape_glob("plain:prefix"), "plain:prefix");
}

#[test]
fn every_kind_is_parsed_with_its_service_and_address() {
    let keyspace = native("sd");
    for kind in [
        ChangeKind::Register,
        ChangeKind::Update,
        ChangeKind::Deregister,
        ChangeKind::Expire,
        ChangeKind::Override,
    ] {
        let payload = format!(r#"{{"event":"{kind}","addr":"[::1]:8080"}}"#);
        let parsed = change(&keyspace, "sd:{orders}:events", payload.as_bytes());
        assert_eq!(
            parsed,
            Some(RegistryChange {
                service: crate::ServiceName::new("orders").unwrap(),
                kind,
                addr: "[::1]:8080".into(),
            })
        );
        assert_eq!(ChangeKind::from_wire(kind.as_str()), Some(kind));
    }
}

#[test]
fn what_is_not_a_valid_event_is_skipped() {
    let keyspace = native("sd");
    let ok = br#"{"event":"register","addr":"10.0.0.1:80"}"#;
    assert!(change(&keyspace, "sd:{orders}:events", ok).is_some());
    for (channel, payload) in [
        ("other:{orders}:events", &ok[..]),
        ("sd:{orders}:instances", ok),
        ("sd:{not a name}:events", ok),
        ("sd:{}:events", ok),
        (
            "sd:{orders}:events",
            br#"{"event":"rename","addr":"10.0.0.1:80"}"#,
        ),
        (
            "sd:{orders}:events",
            br#"{"event":"register","addr":"no port"}"#,
        ),
        ("sd:{orders}:events", br#"{"event":"register"}"#),
        ("sd:{orders}:events", b"not json"),
        ("sd:{orders}:events", b"\xff\xfe"),
        ("sd:{orders}:events", b""),
    ] {
        assert_eq!(
            change(&keyspace, channel, payload),
            None,
            "{channel} {payload:?}"
        );
    }
}
