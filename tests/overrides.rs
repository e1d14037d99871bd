//! The operator's overrides against a real Redis and real HTTP servers:
//! weights and drains change what the layer sends, disabled instances are
//! hidden, overrides outlive re-registrations and expire with the
//! service's keys, a read-only user sees them, the Hertz schema refuses.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{DiscoverExt, DiscoveryError, DiscoveryLayer, DiscoveryService};
use redis_discovery::{
    Instance, KeySchema, Override, RedisRegistry, RedisResolver, RegistryError, Resolve,
    ValidationError,
};
use support::http_server::{spawn_server, TestServer};
use support::{eventually, registry, RedisServer};
use tower::{Layer, ServiceExt};

type HyperClient = DiscoveryService<Client<HttpConnector, String>>;

fn client(resolver: &RedisResolver) -> HyperClient {
    DiscoveryLayer::new(resolver.clone()).layer(Client::builder(TokioExecutor::new()).build_http())
}

/// GET `http://orders/` through the layer: the address that answered.
async fn get(client: &HyperClient) -> Result<String, redis_discovery::layer::BoxError> {
    let request = http::Request::get("http://orders/")
        .discover()
        .body(String::new())
        .unwrap();
    let response = client.clone().oneshot(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body);
    Ok(body.split(' ').next().unwrap_or_default().to_owned())
}

/// Hits per answering address over `n` requests.
async fn hits(client: &HyperClient, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts.entry(get(client).await.unwrap()).or_default() += 1;
    }
    counts
}

/// The weight the resolver's cache serves for `addr`; `None` if it does
/// not list it.
fn cached_weight(resolver: &RedisResolver, addr: &str) -> Option<u32> {
    let snapshot = resolver.cached("orders")?;
    let weight = snapshot
        .instances()
        .iter()
        .find(|i| i.addr() == addr)
        .map(Instance::weight);
    weight
}

/// Two HTTP servers registered as `orders`, weight 10 each.
async fn two_servers(
    registry: &RedisRegistry,
) -> (
    Vec<(SocketAddr, TestServer)>,
    Vec<redis_discovery::Registration>,
) {
    let mut servers = Vec::new();
    let mut registrations = Vec::new();
    for _ in 0..2 {
        let (addr, server) = spawn_server().await;
        let instance = Instance::from_socket_addr(addr).unwrap();
        registrations.push(registry.register("orders", instance).await.unwrap());
        servers.push((addr, server));
    }
    (servers, registrations)
}

/// A resolver that reads again only on events (no periodic refresh
/// within a test).
async fn resolver(url: &str) -> RedisResolver {
    RedisResolver::builder(url)
        .refresh_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_override_changes_the_shares_and_undrain_restores_them() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let (servers, _registrations) = two_servers(&registry).await;
    let (a, b) = (servers[0].0.to_string(), servers[1].0.to_string());
    let resolver = resolver(&redis.url()).await;
    let client = client(&resolver);
    get(&client).await.unwrap(); // cached and subscribed

    assert!(registry
        .set_override("orders", &a, Override::Weight(30))
        .await
        .unwrap());
    eventually("the new weight to reach the resolver", || async {
        (cached_weight(&resolver, &a) == Some(30)).then_some(())
    })
    .await;
    let n = 2000;
    let counts = hits(&client, n).await;
    let share = *counts.get(&a).unwrap_or(&0) as f64 / n as f64;
    // 0.75 expected; 5 binomial standard deviations.
    let sd = (0.75 * 0.25 / n as f64).sqrt();
    assert!((share - 0.75).abs() < 5.0 * sd, "{counts:?}");
    // `list` serves the override and tells the registered weight.
    let listed = resolver.list("orders").await.unwrap();
    let row = listed.iter().find(|l| l.instance.addr() == a).unwrap();
    assert_eq!(
        (row.instance.weight(), row.registered_weight),
        (30, Some(10))
    );

    assert!(registry.clear_override("orders", &a).await.unwrap());
    assert!(
        !registry.clear_override("orders", &a).await.unwrap(),
        "gone"
    );
    eventually("the registered weight to come back", || async {
        (cached_weight(&resolver, &a) == Some(10)).then_some(())
    })
    .await;
    let counts = hits(&client, n).await;
    let share = *counts.get(&a).unwrap_or(&0) as f64 / n as f64;
    let sd = (0.5 * 0.5 / n as f64).sqrt();
    assert!((share - 0.5).abs() < 5.0 * sd, "{counts:?}");
    assert!(counts.contains_key(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_instance_gets_nothing_and_all_drained_is_no_instance() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let (servers, _registrations) = two_servers(&registry).await;
    let (a, b) = (servers[0].0.to_string(), servers[1].0.to_string());
    let resolver = resolver(&redis.url()).await;
    let client = client(&resolver);
    get(&client).await.unwrap();

    registry
        .set_override("orders", &a, Override::drain())
        .await
        .unwrap();
    eventually("the drain to reach the resolver", || async {
        (cached_weight(&resolver, &a) == Some(0)).then_some(())
    })
    .await;
    let counts = hits(&client, 200).await;
    assert_eq!(counts.get(&b), Some(&200), "{counts:?}");

    registry
        .set_override("orders", &b, Override::drain())
        .await
        .unwrap();
    eventually("both drained", || async {
        (cached_weight(&resolver, &b) == Some(0)).then_some(())
    })
    .await;
    let error = get(&client).await.unwrap_err();
    let error = error
        .downcast_ref::<DiscoveryError>()
        .expect("a DiscoveryError");
    assert!(
        matches!(error, DiscoveryError::NoInstance { .. }),
        "{error}"
    );
    // Listed all the same: drained is not gone.
    assert_eq!(resolver.list("orders").await.unwrap().len(), 2);

    registry.clear_override("orders", &a).await.unwrap();
    eventually("a undrained", || async {
        (cached_weight(&resolver, &a) == Some(10)).then_some(())
    })
    .await;
    assert_eq!(get(&client).await.unwrap(), a);
}

/// Disabled: absent from resolve, fetch, list and the layer, while its
/// owner's heartbeats renew it; back on undrain. Leases of a minute,
/// longer than the deadline: the cache must hide it at once, not keep it
/// as an instance a read missed until its known lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_instance_is_hidden_while_heartbeated_and_back_after() {
    let redis = RedisServer::start();
    let registry = RedisRegistry::builder(redis.url())
        .lease_ttl(Duration::from_secs(60))
        .heartbeat_interval(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let (servers, _registrations) = two_servers(&registry).await;
    let (a, b) = (servers[0].0.to_string(), servers[1].0.to_string());
    let resolver = resolver(&redis.url()).await;
    let client = client(&resolver);
    get(&client).await.unwrap();

    registry
        .set_override("orders", &a, Override::Disabled)
        .await
        .unwrap();
    eventually("a hidden from the cache", || async {
        (cached_weight(&resolver, &a).is_none()).then_some(())
    })
    .await;
    // Three heartbeats (500 ms each) later, still hidden everywhere.
    for _ in 0..3 {
        support::lease_renewed(&redis, "orders", &a).await;
    }
    assert_eq!(cached_weight(&resolver, &a), None);
    let fetched = resolver.fetch("orders").await.unwrap();
    assert_eq!(fetched.len(), 1);
    let listed = resolver.list("orders").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].instance.addr(), b);
    let counts = hits(&client, 100).await;
    assert_eq!(counts.get(&b), Some(&100), "{counts:?}");
    assert_eq!(
        registry.overrides("orders").await.unwrap(),
        [(a.clone(), Override::Disabled)]
    );

    assert!(registry.clear_override("orders", &a).await.unwrap());
    eventually("a back in the cache", || async {
        (cached_weight(&resolver, &a) == Some(10)).then_some(())
    })
    .await;
    eventually("a gets traffic again", || async {
        (get(&client).await.ok()? == a).then_some(())
    })
    .await;
}

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

/// The README's client user (read-only scripts, `HMGET`, no `HGETALL`)
/// reads the overrides applied, and is pushed their events.
#[tokio::test]
async fn a_read_only_user_sees_the_overrides_applied() {
    let redis = RedisServer::start();
    // The `sd-client` line of the README's threat model section.
    let acl = "ACL SETUSER reader on >pw resetkeys ~sd:* resetchannels &sd:* -@all +evalsha_ro +eval_ro +time +zrangebyscore +hmget +smembers +exists +subscribe +unsubscribe +ping";
    redis.cmd::<()>(&acl.split(' ').collect::<Vec<_>>());
    let registry = registry(&redis).await;
    let _a = registry
        .register("orders", Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let _b = registry
        .register("orders", Instance::new("10.0.0.2:80").unwrap())
        .await
        .unwrap();
    let url = redis.url().replace("redis://", "redis://reader:pw@");
    let reader = resolver(&url).await;
    let orders = redis_discovery::ServiceName::new("orders").unwrap();
    assert_eq!(reader.resolve(&orders).await.unwrap().len(), 2);
    registry
        .set_override("orders", "10.0.0.1:80", Override::Weight(3))
        .await
        .unwrap();
    registry
        .set_override("orders", "10.0.0.2:80", Override::Disabled)
        .await
        .unwrap();
    eventually("both overrides applied for the read-only user", || async {
        let snapshot = reader.cached("orders")?;
        let weights: Vec<_> = snapshot
            .instances()
            .iter()
            .map(|i| (i.addr().to_owned(), i.weight()))
            .collect();
        (weights == [("10.0.0.1:80".to_owned(), 3)]).then_some(())
    })
    .await;
    let listed = reader.list("orders").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].registered_weight, Some(10));
}

#[tokio::test]
async fn the_hertz_schema_refuses_overrides() {
    let redis = RedisServer::start();
    let hertz = RedisRegistry::builder(redis.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let refused = |result: Result<(), RegistryError>| {
        let error = result.unwrap_err();
        assert!(
            matches!(error, RegistryError::OverridesUnsupported),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("the Hertz schema has no room for operator overrides"),
            "{error}"
        );
    };
    refused(
        hertz
            .set_override("orders", "10.0.0.1:80", Override::drain())
            .await
            .map(drop),
    );
    refused(
        hertz
            .clear_override("orders", "10.0.0.1:80")
            .await
            .map(drop),
    );
    refused(hertz.overrides("orders").await.map(drop));
    refused(hertz.all_overrides().await.map(drop));
    assert!(redis.keys().is_empty(), "nothing written");
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

/// On a Redis Cluster: the overrides key shares its service's slot (the
/// scripts' keys), the listing reads every node, and events from every
/// node reach the resolver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_work_on_a_cluster() {
    let cluster = support::RedisCluster::start(3);
    let registry = RedisRegistry::builder(cluster.url())
        .lease_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let resolver = RedisResolver::builder(cluster.url())
        .refresh_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    // One service per node.
    let names: Vec<String> = (0..3)
        .map(|node| {
            (0..1000)
                .map(|i| format!("svc-{i}"))
                .find(|n| cluster.node_of(&format!("sd:{{{n}}}:instances")) == node)
                .unwrap()
        })
        .collect();
    let mut registrations = Vec::new();
    for name in &names {
        let instance = Instance::new("10.0.0.1:80").unwrap();
        registrations.push(registry.register(name.as_str(), instance).await.unwrap());
        let service = redis_discovery::ServiceName::new(name.as_str()).unwrap();
        resolver.resolve(&service).await.unwrap();
        registry
            .set_override(name.as_str(), "10.0.0.1:80", Override::drain())
            .await
            .unwrap();
    }
    for name in &names {
        eventually("the drain by event from its node", || async {
            let snapshot = resolver.cached(name)?;
            (snapshot.instances()[0].weight() == 0).then_some(())
        })
        .await;
    }
    let mut listed: Vec<String> = registry
        .all_overrides()
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _, _)| s.to_string())
        .collect();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);
}

/// The operator user the README's draft names: the server user's write
/// commands plus `HGETALL` and `SMEMBERS` to list.
#[tokio::test]
async fn an_operator_user_with_the_documented_commands_is_enough() {
    let redis = RedisServer::start();
    let acl = "ACL SETUSER operator on >pw resetkeys ~sd:* resetchannels &sd:* -@all +evalsha +eval +time +hget +hset +hdel +zscore +zrevrange +pexpireat +publish +hgetall +smembers +ping";
    redis.cmd::<()>(&acl.split(' ').collect::<Vec<_>>());
    let registry = registry(&redis).await;
    let _a = registry
        .register("orders", Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let url = redis.url().replace("redis://", "redis://operator:pw@");
    let operator = RedisRegistry::connect(url).await.unwrap();
    assert!(operator
        .set_override("orders", "10.0.0.1:80", Override::drain())
        .await
        .unwrap());
    assert_eq!(operator.overrides("orders").await.unwrap().len(), 1);
    assert_eq!(operator.all_overrides().await.unwrap().len(), 1);
    assert!(operator
        .clear_override("orders", "10.0.0.1:80")
        .await
        .unwrap());
}
