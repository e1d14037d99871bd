//! What is stored: inputs checked, the listing, and how long an override
//! lasts (through re-registrations, until the service's keys expire).

use super::*;

/// The override stays through the instance's deregistration and
/// registration again, and its key expires with the service's keys.
#[tokio::test]
async fn an_override_outlives_re_registration_and_expires_with_the_service() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let first = registry
        .register("orders", Instance::new("10.0.0.7:8080").unwrap())
        .await
        .unwrap();
    registry
        .set_override("orders", "10.0.0.7:8080", Override::drain())
        .await
        .unwrap();
    let expiry = |key: &str| -> i64 { redis.cmd(&["PEXPIRETIME", key]) };
    // The heartbeat moves the override's expiry with the others'.
    support::lease_renewed(&redis, "orders", "10.0.0.7:8080").await;
    eventually("the same expiry as the service's keys", || async {
        let leases = expiry("sd:{orders}:leases");
        (expiry("sd:{orders}:overrides") == leases && leases > 0).then_some(())
    })
    .await;
    assert_eq!(
        expiry("sd:{orders}:instances"),
        expiry("sd:{orders}:leases")
    );
    let lease = support::lease(&redis, "orders", "10.0.0.7:8080").unwrap() as i64;
    assert_eq!(
        expiry("sd:{orders}:leases"),
        lease + 60_000,
        "a minute's grace"
    );

    assert!(first.deregister().await.unwrap());
    assert_eq!(
        registry.overrides("orders").await.unwrap(),
        [("10.0.0.7:8080".to_owned(), Override::drain())]
    );
    // Set again with no lease at all: a minute from now.
    registry
        .set_override("orders", "10.0.0.7:8080", Override::drain())
        .await
        .unwrap();
    let ttl: i64 = redis.cmd(&["PTTL", "sd:{orders}:overrides"]);
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    let _again = registry
        .register("orders", Instance::new("10.0.0.7:8080").unwrap())
        .await
        .unwrap();
    let resolver = resolver(&redis.url()).await;
    let listed = resolver.list("orders").await.unwrap();
    assert_eq!(listed[0].instance.weight(), 0, "still drained");
    assert_eq!(listed[0].registered_weight, Some(10));
    assert_eq!(
        expiry("sd:{orders}:overrides"),
        expiry("sd:{orders}:leases"),
        "the registration moved it"
    );
}

#[tokio::test]
async fn inputs_are_checked_and_every_service_is_listed() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let bad_name = registry
        .set_override("no such name", "10.0.0.1:80", Override::drain())
        .await;
    assert!(
        matches!(
            bad_name,
            Err(RegistryError::Invalid(
                ValidationError::ServiceNameCharacter { .. }
            ))
        ),
        "{bad_name:?}"
    );
    for addr in ["10.0.0.1", "", "10.0.0.1:0", "a b:80", "\"x\":80"] {
        let bad = registry
            .set_override("orders", addr, Override::drain())
            .await;
        assert!(
            matches!(
                bad,
                Err(RegistryError::Invalid(ValidationError::Address { .. }))
            ),
            "{addr}: {bad:?}"
        );
        assert!(registry.clear_override("orders", addr).await.is_err());
    }
    assert!(redis.keys().is_empty(), "nothing written");

    let _o = registry
        .register("orders", Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let _p = registry
        .register("payments", Instance::new("10.0.1.1:80").unwrap())
        .await
        .unwrap();
    // Not registered now: written all the same, and said so.
    assert!(!registry
        .set_override("payments", "10.0.1.9:80", Override::Disabled)
        .await
        .unwrap());
    registry
        .set_override("payments", "10.0.1.1:80", Override::Weight(7))
        .await
        .unwrap();
    registry
        .set_override("orders", "10.0.0.1:80", Override::drain())
        .await
        .unwrap();
    // The latest replaces the previous one.
    registry
        .set_override("orders", "10.0.0.1:80", Override::Weight(2))
        .await
        .unwrap();
    let all: Vec<(String, String, Override)> = registry
        .all_overrides()
        .await
        .unwrap()
        .into_iter()
        .map(|(s, a, o)| (s.to_string(), a, o))
        .collect();
    assert_eq!(
        all,
        [
            ("orders".into(), "10.0.0.1:80".into(), Override::Weight(2)),
            ("payments".into(), "10.0.1.1:80".into(), Override::Weight(7)),
            ("payments".into(), "10.0.1.9:80".into(), Override::Disabled),
        ]
    );
    // A value written by hand that this version cannot read is skipped
    // by the listing and ignored by resolvers.
    redis.cmd::<()>(&[
        "HSET",
        "sd:{orders}:overrides",
        "10.0.0.1:80",
        "{\"weight\":\"x\"}",
    ]);
    assert!(registry.overrides("orders").await.unwrap().is_empty());
    let resolver = resolver(&redis.url()).await;
    assert_eq!(
        resolver.fetch("orders").await.unwrap().instances()[0].weight(),
        10
    );
}

/// A set that fails (here: a leases key of another type, written by
/// hand) writes nothing, so it cannot leave an overrides key that never
/// expires (Redis does not roll a failed script back).
#[tokio::test]
async fn a_failed_set_leaves_no_key_without_expiry() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    redis.cmd::<()>(&["SET", "sd:{orders}:leases", "not a sorted set"]);
    let failed = registry
        .set_override("orders", "10.0.0.7:8080", Override::drain())
        .await;
    assert!(
        matches!(failed, Err(RegistryError::Redis { .. })),
        "{failed:?}"
    );
    let exists: i64 = redis.cmd(&["EXISTS", "sd:{orders}:overrides"]);
    assert_eq!(exists, 0, "half an override written");
}

/// A name in the services index that is no service name (written by
/// hand) is skipped, not read: its key may hold anything, and one bad
/// member must not fail the whole listing.
#[tokio::test]
async fn a_junk_name_in_the_index_does_not_fail_the_listing() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _o = registry
        .register("orders", Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    registry
        .set_override("orders", "10.0.0.1:80", Override::drain())
        .await
        .unwrap();
    redis.cmd::<()>(&["SADD", "sd:services", "a}b"]);
    redis.cmd::<()>(&["SET", "sd:{a}b}:overrides", "not a hash"]);
    let all = registry.all_overrides().await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].1, "10.0.0.1:80");
}

/// An owner that drains itself (weight 0: shutting down, not ready) stays
/// drained under an operator's weight; its registered weight back, the
/// operator's weight applies again.
#[tokio::test]
async fn an_owners_own_drain_holds_under_an_operators_weight() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let addr = "10.0.0.7:8080";
    let owned = registry
        .register("orders", Instance::new(addr).unwrap())
        .await
        .unwrap();
    registry
        .set_override("orders", addr, Override::Weight(5))
        .await
        .unwrap();
    owned
        .update(Instance::new(addr).unwrap().with_weight(0))
        .await
        .unwrap();
    let resolver = resolver(&redis.url()).await;
    let fetched = resolver.fetch("orders").await.unwrap();
    assert_eq!(
        fetched.instances()[0].weight(),
        0,
        "the owner's drain holds"
    );
    let listed = resolver.list("orders").await.unwrap();
    assert_eq!(listed[0].instance.weight(), 0);
    assert_eq!(listed[0].registered_weight, None);

    owned
        .update(Instance::new(addr).unwrap().with_weight(10))
        .await
        .unwrap();
    let listed = resolver.list("orders").await.unwrap();
    assert_eq!(listed[0].instance.weight(), 5, "the operator's weight");
    assert_eq!(listed[0].registered_weight, Some(10));
}

/// An overrides key of another type (written by hand) is read as no
/// overrides: the service stays resolvable. The listing fails on it, so
/// an operator sees it.
#[tokio::test]
async fn an_overrides_key_of_another_type_does_not_break_resolving() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = registry
        .register("orders", Instance::new("10.0.0.7:8080").unwrap())
        .await
        .unwrap();
    redis.cmd::<()>(&["SET", "sd:{orders}:overrides", "not a hash"]);
    let resolver = resolver(&redis.url()).await;
    let fetched = resolver.fetch("orders").await.unwrap();
    assert_eq!(fetched.instances()[0].weight(), 10);
    assert!(registry.overrides("orders").await.is_err());
}
