//! The keyspace's names and codes, without Redis.

use super::*;

#[test]
fn prefixes() {
    assert!(Keyspace::new(KeySchema::Native, "sd").is_ok());
    assert!(Keyspace::new(KeySchema::Native, "team-a:sd").is_ok());
    for bad in ["", "a b", "{x}", "a*", &"p".repeat(65)] {
        assert!(Keyspace::new(KeySchema::Native, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn key_names() {
    assert_eq!(native::instances("sd", "orders"), "sd:{orders}:instances");
    assert_eq!(native::leases("sd", "orders"), "sd:{orders}:leases");
    assert_eq!(native::events("sd", "orders"), "sd:{orders}:events");
    assert_eq!(native::overrides("sd", "orders"), "sd:{orders}:overrides");
    assert_eq!(native::services_key("sd"), "sd:services");
    let ks = Keyspace::new(KeySchema::Native, "team:sd").unwrap();
    let channel = ks.events_channel("orders").unwrap();
    assert_eq!(ks.service_of_channel(&channel), Some("orders"));
    assert_eq!(ks.service_of_channel("sd:{orders}:events"), None);
    assert_eq!(ks.service_of_channel("team:sd:{orders}:leases"), None);
    assert_eq!(
        hertz::key("hertz.test.demo"),
        "/hertz/hertz.test.demo/server"
    );
}

#[test]
fn one_upsert_code_per_entry() {
    assert_eq!(
        Upserted::from_codes(vec![0, 1, 2], 3).unwrap(),
        [Upserted::Renewed, Upserted::Created, Upserted::Updated]
    );
    // Another count (a proxy, another script) is an error, not a guess.
    assert!(Upserted::from_codes(vec![1], 2).is_err());
    assert!(Upserted::from_codes(vec![1, 1], 1).is_err());
}

#[test]
fn schema_names() {
    assert_eq!("hertz".parse::<KeySchema>().unwrap(), KeySchema::Hertz);
    assert_eq!(KeySchema::default().to_string(), "native");
    assert!("etcd".parse::<KeySchema>().is_err());
}
