//! Redis behind Sentinel: a master, a replica and a Sentinel, all private
//! redis-server processes (tests/support). The registry and the resolver
//! connect with a `redis+sentinel://` URL and must follow the master when
//! the Sentinel fails over, whether the old master is demoted (it answers
//! `READONLY`) or killed.

mod support;

use std::time::Duration;

use redis_discovery::resolver::{RedisResolver, Resolve};
use redis_discovery::{Instance, RedisRegistry, Registration, ServiceName};
use support::{
    cached_addrs, eventually, init_tracing, lease_renewed, RedisServer, SENTINEL_MASTER,
};

const SERVICE: &str = "orders";

/// A master with one replica, and a Sentinel watching them.
struct Fleet {
    master: RedisServer,
    replica: RedisServer,
    sentinel: RedisServer,
}

impl Fleet {
    fn start() -> Fleet {
        init_tracing();
        let master = RedisServer::start();
        let replica = RedisServer::start_replica_of(&master);
        let sentinel = RedisServer::start_sentinel(&master, 1);
        Fleet {
            master,
            replica,
            sentinel,
        }
    }

    async fn registry(&self) -> RedisRegistry {
        RedisRegistry::builder(self.sentinel.sentinel_url())
            .lease_ttl(Duration::from_secs(3))
            .heartbeat_interval(Duration::from_millis(300))
            .connect()
            .await
            .expect("registry connects through the Sentinel")
    }

    async fn resolver(&self) -> RedisResolver {
        RedisResolver::builder(self.sentinel.sentinel_url())
            .refresh_interval(Duration::from_secs(60))
            .connect()
            .await
            .expect("resolver connects through the Sentinel")
    }

    /// Registers the first instance, 10.0.0.1:80, and waits until the
    /// replica has it too.
    async fn register_first(&self, registry: &RedisRegistry) -> Registration {
        let registration = registry
            .register(SERVICE, instance("10.0.0.1:80"))
            .await
            .unwrap();
        eventually("the entry to replicate", || async {
            lease(&self.replica, "10.0.0.1:80").map(|_| ())
        })
        .await;
        registration
    }

    /// Waits until the Sentinel names the replica as master.
    async fn wait_for_promotion(&self) {
        let port = self.replica.port().to_string();
        eventually("the Sentinel to name the replica master", || async {
            let addr: Vec<String> =
                self.sentinel
                    .cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER]);
            (addr.get(1) == Some(&port) && self.replica.role() == "master").then_some(())
        })
        .await;
    }
}

fn instance(addr: &str) -> Instance {
    Instance::new(addr).expect("valid address")
}

fn addrs(resolver: &RedisResolver) -> Option<Vec<String>> {
    cached_addrs(resolver, SERVICE)
}

fn lease(server: &RedisServer, addr: &str) -> Option<f64> {
    support::lease(server, SERVICE, addr)
}

/// After a failover: heartbeats renew the first instance on the new
/// master, and a new registration lands there.
async fn writes_reach_new_master(fleet: &Fleet, registry: &RedisRegistry) -> Registration {
    lease_renewed(&fleet.replica, SERVICE, "10.0.0.1:80").await;
    let registration = registry
        .register(SERVICE, instance("10.0.0.2:80"))
        .await
        .expect("a registration after the failover reaches the new master");
    assert!(lease(&fleet.replica, "10.0.0.2:80").is_some());
    registration
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_master_is_left_for_the_new_one() {
    let fleet = Fleet::start();
    let registry = fleet.registry().await;
    let resolver = fleet.resolver().await;
    let name = ServiceName::new(SERVICE).unwrap();
    let _a = fleet.register_first(&registry).await;
    assert!(lease(&fleet.master, "10.0.0.1:80").is_some());
    let first = resolver.resolve(&name).await.unwrap();
    assert_eq!(first.instances().len(), 1);

    // A manual failover: the old master stays up as a replica and refuses
    // writes; Sentinel closes its clients' connections.
    // Sentinel refuses (NOGOODSLAVE) until it has fresh INFO of the replica.
    eventually("the Sentinel to accept a failover", || async {
        fleet
            .sentinel
            .try_cmd::<()>(&["SENTINEL", "FAILOVER", SENTINEL_MASTER])
            .ok()
    })
    .await;
    fleet.wait_for_promotion().await;

    // Heartbeats, new registrations and deregistrations go to the new master
    // (found on the old one's READONLY, its dropped connection, or the
    // periodic check, whichever comes first).
    let b = writes_reach_new_master(&fleet, &registry).await;

    // The resolver's event connection moved too: the registration's event
    // arrives (its periodic refresh is a minute away).
    eventually("the resolver to see the new instance", || async {
        addrs(&resolver).filter(|a| a.len() == 2).map(|_| ())
    })
    .await;
    b.deregister().await.unwrap();
    assert!(lease(&fleet.replica, "10.0.0.2:80").is_none());
    eventually("the resolver to see the deregistration", || async {
        addrs(&resolver)
            .filter(|a| a == &["10.0.0.1:80"])
            .map(|_| ())
    })
    .await;
    // Reads go to the new master as well.
    let fresh = resolver.resolve(&name).await.unwrap();
    assert_eq!(fresh.instances().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_the_promoted_replica() {
    let mut fleet = Fleet::start();
    let registry = fleet.registry().await;
    let resolver = fleet.resolver().await;
    let name = ServiceName::new(SERVICE).unwrap();
    let _a = fleet.register_first(&registry).await;
    resolver.resolve(&name).await.unwrap();

    fleet.master.stop();
    // While no master is named, the last known list keeps being served.
    let stale = resolver.resolve(&name).await.unwrap();
    assert_eq!(stale.instances().len(), 1);
    fleet.wait_for_promotion().await;

    let _b = writes_reach_new_master(&fleet, &registry).await;
    eventually("the resolver to see the new instance", || async {
        addrs(&resolver).filter(|a| a.len() == 2).map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_is_left_for_the_promoted_replica() {
    let fleet = Fleet::start();
    let registry = fleet.registry().await;
    let _a = fleet.register_first(&registry).await;
    // The master stops answering but keeps its connections open: commands
    // time out instead of failing fast.
    fleet.master.freeze();
    fleet.wait_for_promotion().await;
    let _b = writes_reach_new_master(&fleet, &registry).await;
    fleet.master.thaw();
}

/// Connections of the crate (not the Sentinel's own, not replication).
fn ours(server: &RedisServer) -> usize {
    server
        .clients()
        .iter()
        .filter(|c| !c.contains("name=sentinel") && !c.contains("flags=S"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_registry_and_resolver_closes_every_connection() {
    let fleet = Fleet::start();
    {
        let registry = fleet.registry().await;
        let resolver = fleet.resolver().await;
        let _a = fleet.register_first(&registry).await;
        resolver
            .resolve(&ServiceName::new(SERVICE).unwrap())
            .await
            .unwrap();
        assert!(ours(&fleet.master) >= 3, "commands, events, registry");
    }
    // The drop's deregister runs in the background, then everything closes:
    // no connection to the master or the Sentinel is left behind.
    eventually("every connection to close", || async {
        (ours(&fleet.master) == 0 && ours(&fleet.sentinel) == 0).then_some(())
    })
    .await;
    assert!(lease(&fleet.master, "10.0.0.1:80").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_that_name_no_such_master_fail_clearly() {
    let fleet = Fleet::start();
    let url = format!(
        "redis+sentinel://127.0.0.1:{}/no-such-master",
        fleet.sentinel.port()
    );
    let error = RedisRegistry::builder(url.clone())
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("no master by that name");
    eprintln!("{error}");
    assert!(error.to_string().contains("no-such-master"), "{error}");
    let error = RedisResolver::connect(url)
        .await
        .expect_err("no master by that name");
    eprintln!("{error}");
    assert!(error.to_string().contains("no-such-master"), "{error}");
    drop(fleet.master);
}
