//! A slow instance: `LeastLoaded` sends it a small share.

use redis_discovery::balance::LeastLoaded;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_sends_little_to_a_slow_instance() {
    let slow = Fault::Slow(Duration::from_millis(50));
    let fleet = Fleet::start(&[slow, Fault::Healthy, Fault::Healthy]).await;
    let layer = fleet.builder().balance(LeastLoaded::new()).build();
    let results = get_many(&client(&layer), 600, 8).await;
    assert_eq!(successes(&results), 600);
    let served = fleet.served();
    let share = served[0] as f64 / served.iter().sum::<u64>() as f64;
    // Weighted random would give it a third.
    assert!(
        share < 0.15,
        "the slow instance took {share:.3}: {served:?}"
    );
}

/// Weight 0, tag filters and the fallback work with `LeastLoaded` as with
/// the other balancers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_keeps_weights_filters_and_fallback() {
    use redis_discovery::balance::{Fallback, TagFilter};
    use redis_discovery::resolver::StaticResolver;

    let servers = [
        FaultServer::start(Fault::Healthy).await.unwrap(),
        FaultServer::start(Fault::Healthy).await.unwrap(),
        FaultServer::start(Fault::Healthy).await.unwrap(),
    ];
    let instance = |i: usize, zone: &str, weight: u32| {
        Instance::from_socket_addr(servers[i].addr())
            .unwrap()
            .with_weight(weight)
            .with_tag("zone", zone)
            .unwrap()
    };
    let resolver = StaticResolver::new()
        .with_service(
            "orders",
            [
                instance(0, "a", 0),
                instance(1, "a", 10),
                instance(2, "b", 10),
            ],
        )
        .unwrap();
    let layer = |filter: &str, fallback| {
        DiscoveryLayer::builder(resolver.clone())
            .balance(LeastLoaded::new())
            .tag_filter(filter.parse::<TagFilter>().unwrap())
            .fallback(fallback)
            .build()
    };
    let served = || {
        servers
            .iter()
            .map(FaultServer::requests)
            .collect::<Vec<_>>()
    };

    // zone=a: the drained instance 0 never, so all to instance 1.
    let results = get_many(&client(&layer("zone=a", Fallback::Fail)), 100, 4).await;
    assert_eq!(successes(&results), 100);
    assert_eq!(served(), [0, 100, 0]);

    // No instance in zone c: fails, or (fallback) goes to any usable one.
    let failing = client(&layer("zone=c", Fallback::Fail));
    assert!(get(&failing).await.is_err());
    let results = get_many(&client(&layer("zone=c", Fallback::AllInstances)), 100, 4).await;
    assert_eq!(successes(&results), 100);
    let after = served();
    assert_eq!(after[0], 0, "weight 0 is never picked: {after:?}");
    assert!(
        after[1] > 100 && after[2] > 0,
        "both usable ones: {after:?}"
    );
}
