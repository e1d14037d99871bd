//! How changes reach clients: by event, and through `into_discover`.

use super::*;

/// A change reaches a resolver by its event, long before any refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_sees_a_drain_by_event() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = registry
        .register("orders", Instance::new("10.0.0.7:8080").unwrap())
        .await
        .unwrap();
    let resolver = resolver(&redis.url()).await; // refresh: 1 h
    let mut watch = resolver.watch("orders").await.unwrap();
    assert_eq!(watch.borrow_and_update().instances()[0].weight(), 10);
    let started = Instant::now();
    registry
        .set_override("orders", "10.0.0.7:8080", Override::drain())
        .await
        .unwrap();
    tokio::time::timeout(support::DEADLINE, async {
        loop {
            watch.changed().await.unwrap();
            if watch.borrow_and_update().instances()[0].weight() == 0 {
                return;
            }
        }
    })
    .await
    .expect("the drain within the deadline");
    println!("drain seen by the resolver after {:?}", started.elapsed());
}

/// `into_discover` (tower's balancers, the tonic channel): a drain is a
/// remove, an undrain an insert.
#[cfg(feature = "tower-discover")]
#[tokio::test]
async fn a_drain_removes_the_instance_from_a_tower_discover() {
    use futures_util::StreamExt;
    use tower::discover::Change;

    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = registry
        .register("orders", Instance::new("10.0.0.7:8080").unwrap())
        .await
        .unwrap();
    let resolver = resolver(&redis.url()).await;
    let mut discover = resolver
        .changes("orders")
        .await
        .unwrap()
        .into_discover(|instance: Instance| instance.weight());
    macro_rules! next {
        () => {
            tokio::time::timeout(support::DEADLINE, discover.next())
                .await
                .expect("a change within the deadline")
        };
    }
    let Some(Ok(Change::Insert(key, 10))) = next!() else {
        panic!("the first insert");
    };
    registry
        .set_override("orders", "10.0.0.7:8080", Override::drain())
        .await
        .unwrap();
    match next!() {
        Some(Ok(Change::Remove(removed))) => assert_eq!(removed, key),
        _ => panic!("a remove"),
    }
    registry
        .clear_override("orders", "10.0.0.7:8080")
        .await
        .unwrap();
    // The drained instance's own remove (a no-op for a balancer), then the insert.
    loop {
        match next!() {
            Some(Ok(Change::Insert(inserted, weight))) => {
                assert_eq!((inserted, weight), (key, 10));
                break;
            }
            Some(Ok(Change::Remove(_))) => {}
            _ => panic!("an insert"),
        }
    }
}

/// Disabling a service's only instance empties the cached list, yet the
/// service stays subscribed (not a negative entry): the clear comes back
/// by its event, with refresh and negative-cache times of an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_instance_disabled_then_enabled_comes_back_by_event() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = registry
        .register("orders", Instance::new("10.0.0.7:8080").unwrap())
        .await
        .unwrap();
    let resolver = RedisResolver::builder(redis.url())
        .refresh_interval(Duration::from_secs(3600))
        .negative_ttl(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let orders = redis_discovery::ServiceName::new("orders").unwrap();
    assert_eq!(resolver.resolve(&orders).await.unwrap().len(), 1);
    registry
        .set_override("orders", "10.0.0.7:8080", Override::Disabled)
        .await
        .unwrap();
    eventually("the only instance hidden", || async {
        resolver
            .cached("orders")
            .is_some_and(|s| s.instances().is_empty())
            .then_some(())
    })
    .await;
    assert!(registry
        .clear_override("orders", "10.0.0.7:8080")
        .await
        .unwrap());
    eventually("back by the clear's event", || async {
        (cached_weight(&resolver, "10.0.0.7:8080") == Some(10)).then_some(())
    })
    .await;
}
