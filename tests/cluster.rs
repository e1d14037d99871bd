//! Redis Cluster: three private redis-server nodes (tests/support) sharing
//! the slots. The registry and the resolver connect with a
//! `redis+cluster://` URL; each service's keys live on the node of its hash
//! tag, and change events reach the resolver whichever node published them.

mod support;

use std::time::Duration;

use redis_discovery::resolver::{RedisResolver, Resolve};
use redis_discovery::{Instance, KeySchema, RedisRegistry, Registration, ServiceName};
use support::{cached_addrs, eventually, init_tracing, lease_renewed, RedisCluster};

fn instance(addr: &str) -> Instance {
    Instance::new(addr).expect("valid address")
}

async fn registry(cluster: &RedisCluster) -> RedisRegistry {
    RedisRegistry::builder(cluster.url())
        .lease_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(300))
        .connect()
        .await
        .expect("registry connects to the cluster")
}

/// A resolver whose periodic refresh is a minute away: what it sees comes
/// from its first reads and from events.
async fn resolver(cluster: &RedisCluster) -> RedisResolver {
    RedisResolver::builder(cluster.url())
        .refresh_interval(Duration::from_secs(60))
        .connect()
        .await
        .expect("resolver connects to the cluster")
}

/// A registry and a resolver on `cluster`, and a service on node 1 with one
/// registered (and resolved) instance, 10.0.0.1:80.
async fn one_instance_on_node_1(
    cluster: &RedisCluster,
    stem: &str,
) -> (RedisRegistry, RedisResolver, String, Registration) {
    init_tracing();
    let registry = registry(cluster).await;
    let resolver = resolver(cluster).await;
    let name = service_on(cluster, 1, stem);
    let registration = registry
        .register(name.as_str(), instance("10.0.0.1:80"))
        .await
        .unwrap();
    let service = ServiceName::new(name.as_str()).unwrap();
    resolver.resolve(&service).await.unwrap();
    (registry, resolver, name, registration)
}

/// A service name whose keys live on node `node`.
fn service_on(cluster: &RedisCluster, node: usize, stem: &str) -> String {
    (0..1000)
        .map(|i| format!("{stem}-{i}"))
        .find(|name| cluster.node_of(&format!("sd:{{{name}}}:instances")) == node)
        .expect("some name hashes to every node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_on_every_node_register_resolve_and_change() {
    init_tracing();
    let cluster = RedisCluster::start(3);
    let registry = registry(&cluster).await;
    let resolver = resolver(&cluster).await;
    let names: Vec<String> = (0..3)
        .map(|node| service_on(&cluster, node, "svc"))
        .collect();

    let mut registrations = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let reg = registry
            .register(name.as_str(), instance(&format!("10.0.0.{i}:80")))
            .await
            .unwrap();
        registrations.push(reg);
    }
    // Each service's keys are on its own node, in one slot.
    for (node, name) in names.iter().enumerate() {
        let fields: Vec<String> =
            cluster.nodes[node].cmd(&["HKEYS", &format!("sd:{{{name}}}:instances")]);
        assert_eq!(fields.len(), 1, "{name} on node {node}");
    }
    for (i, name) in names.iter().enumerate() {
        let service = ServiceName::new(name.as_str()).unwrap();
        let snapshot = resolver.resolve(&service).await.unwrap();
        assert_eq!(snapshot.instances()[0].addr(), format!("10.0.0.{i}:80"));
    }
    let mut listed = resolver.services().await.unwrap();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // Events from every node reach the one subscription.
    for (i, name) in names.iter().enumerate() {
        let _extra = registry
            .register(name.as_str(), instance(&format!("10.0.1.{i}:80")))
            .await
            .unwrap();
        eventually(
            "the resolver to see a registration on another node",
            || async {
                cached_addrs(&resolver, name)
                    .filter(|a| a.len() == 2)
                    .map(|_| ())
            },
        )
        .await;
        drop(_extra); // deregisters in the background
        eventually("the resolver to see the deregistration", || async {
            cached_addrs(&resolver, name)
                .filter(|a| a.len() == 1)
                .map(|_| ())
        })
        .await;
    }
    for reg in registrations {
        reg.deregister().await.unwrap();
    }
    assert!(resolver.services().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_coming_when_the_subscribed_node_dies() {
    let mut cluster = RedisCluster::start(3);
    let (registry, resolver, name, _a) = one_instance_on_node_1(&cluster, "alive").await;

    // The subscription is on the first seed, node 0: kill it. Node 1 keeps
    // serving its slots (full coverage is not required). Node 0 also holds
    // the services index: registrations and heartbeats go on without it.
    assert_eq!(cluster.node_of("sd:services"), 0);
    cluster.nodes[0].stop();
    let _b = registry
        .register(name.as_str(), instance("10.0.0.2:80"))
        .await
        .expect("node 1 still serves the service's slot");
    eventually(
        "the resolver to resubscribe on another node and see the event",
        || async {
            cached_addrs(&resolver, &name)
                .filter(|a| a.len() == 2)
                .map(|_| ())
        },
    )
    .await;
    // Heartbeats keep renewing the lease on node 1.
    lease_renewed(&cluster.nodes[1], &name, "10.0.0.1:80").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_connection_leaves_a_node_that_left_the_cluster() {
    init_tracing();
    let cluster = RedisCluster::start(3);
    let registry = registry(&cluster).await;
    // Its PING, and the membership check beside it, every second.
    let resolver = RedisResolver::builder(cluster.url())
        .refresh_interval(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let name = service_on(&cluster, 1, "watched");
    let _a = registry
        .register(name.as_str(), instance("10.0.0.1:80"))
        .await
        .unwrap();
    resolver
        .resolve(&ServiceName::new(name.as_str()).unwrap())
        .await
        .unwrap();
    let channel = format!("sd:{{{name}}}:events");
    let subscribers = |node: usize| -> i64 {
        let (_, n): (String, i64) = cluster.nodes[node].cmd(&["PUBSUB", "NUMSUB", &channel]);
        n
    };
    // Found with instances: subscribed (on the first seed) just after.
    eventually("subscribed on the first seed", || async {
        (subscribers(0) == 1).then_some(())
    })
    .await;

    // Node 0 leaves the cluster but stays up: it still answers PING, and
    // would never see another node's events again.
    cluster.nodes[0].flushall();
    cluster.nodes[0].cmd::<()>(&["CLUSTER", "RESET", "HARD"]);
    eventually(
        "the subscription to move to a member of the cluster",
        || async { (subscribers(0) == 0 && subscribers(1) + subscribers(2) == 1).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_over_master_is_followed_to_its_promoted_replica() {
    let mut cluster = RedisCluster::start(3);
    let replica = cluster.add_replica(1);
    let (registry, resolver, name, _a) = one_instance_on_node_1(&cluster, "moving").await;

    // Node 1 dies; after the node timeout the other masters promote its
    // replica, and the cluster connection finds the slot's new owner.
    cluster.nodes[1].stop();
    eventually("the replica to be promoted", || async {
        (cluster.nodes[replica].role() == "master").then_some(())
    })
    .await;
    lease_renewed(&cluster.nodes[replica], &name, "10.0.0.1:80").await;
    let _b = registry
        .register(name.as_str(), instance("10.0.0.2:80"))
        .await
        .expect("registering after the failover reaches the new master");
    eventually("the resolver to see it", || async {
        cached_addrs(&resolver, &name)
            .filter(|a| a.len() == 2)
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_registry_and_resolver_closes_every_connection() {
    let cluster = RedisCluster::start(3);
    {
        let (_registry, _resolver, _name, _a) = one_instance_on_node_1(&cluster, "gone").await;
        assert!(!cluster.nodes[0].clients().is_empty(), "events on node 0");
        assert!(!cluster.nodes[1].clients().is_empty(), "commands on node 1");
    }
    eventually("every connection to close", || async {
        cluster
            .nodes
            .iter()
            .all(|node| node.clients().is_empty())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hertz_service_listing_is_refused_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let resolver = RedisResolver::builder(cluster.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let error = resolver
        .services()
        .await
        .expect_err("needs SCAN on every node");
    assert!(
        error.to_string().contains("not supported on Redis Cluster"),
        "{error}"
    );
    // Resolving by name works: one key, one slot.
    let registry = RedisRegistry::builder(cluster.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let _reg = registry
        .register("hertz.demo", instance("10.0.0.9:8888"))
        .await
        .unwrap();
    let snapshot = resolver
        .resolve(&ServiceName::new("hertz.demo").unwrap())
        .await
        .unwrap();
    assert_eq!(snapshot.instances()[0].addr(), "10.0.0.9:8888");
}

/// PUBLISH reaches every node of a cluster: the events stream, subscribed
/// on one node, sees the changes of services on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_stream_sees_services_on_every_node() {
    use redis_discovery::resolver::{ChangeKind, RegistryEvent};
    init_tracing();
    let cluster = RedisCluster::start(3);
    let registry = registry(&cluster).await;
    let resolver = resolver(&cluster).await;
    let mut events = resolver.events().await.unwrap();
    let mut held = Vec::new();
    for node in 0..3 {
        let name = service_on(&cluster, node, "stream");
        let addr = format!("10.0.40.{}:80", node + 1);
        held.push(
            registry
                .register(name.as_str(), instance(&addr))
                .await
                .unwrap(),
        );
        let event = tokio::time::timeout(support::DEADLINE, events.next())
            .await
            .expect("an event within the deadline");
        match event {
            Some(RegistryEvent::Changed(change)) => assert_eq!(
                (change.kind, change.service.as_str(), change.addr.as_str()),
                (ChangeKind::Register, name.as_str(), addr.as_str())
            ),
            other => panic!("expected the register of {name} on node {node}, got {other:?}"),
        }
    }
    drop(held);
}
