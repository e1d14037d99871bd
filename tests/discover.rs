//! `RedisResolver::changes` and its `tower::discover` adapter against a
//! real, private redis-server (tests/support), and `tower::balance` over
//! real HTTP servers.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use redis_discovery::discover::{InstanceChange, InstanceChanges};
use redis_discovery::{Instance, RedisResolver};
use support::{eventually, init_tracing, registry, RedisServer, DEADLINE};

/// A resolver whose periodic refresh will not happen during a test: what
/// the streams see comes from events and the first read.
async fn resolver(server: &RedisServer) -> RedisResolver {
    RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_secs(60))
        .idle_expiry(Duration::from_secs(2))
        .connect()
        .await
        .expect("resolver connects")
}

fn instance(addr: &str) -> Instance {
    Instance::new(addr).expect("valid address")
}

/// The next change, within the test deadline.
async fn next(changes: &mut InstanceChanges) -> InstanceChange {
    match tokio::time::timeout(DEADLINE, changes.next()).await {
        Ok(Some(change)) => change,
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no change within {DEADLINE:?}"),
    }
}

/// `+addr/weight` or `-addr/weight`.
fn short(change: &InstanceChange) -> String {
    let sign = if change.is_insert() { '+' } else { '-' };
    let instance = change.instance();
    format!("{sign}{}/{}", instance.addr(), instance.weight())
}

fn numsub(server: &RedisServer, channel: &str) -> i64 {
    let (_, n): (String, i64) = server.cmd(&["PUBSUB", "NUMSUB", channel]);
    n
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn the_list_first_then_inserts_removes_and_replacements() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let a = registry
        .register("orders", instance("10.0.1.1:80"))
        .await
        .unwrap();
    let b = registry
        .register("orders", instance("10.0.1.2:80"))
        .await
        .unwrap();
    let resolver = resolver(&server).await;
    let mut changes = resolver.changes("orders").await.unwrap();
    assert_eq!(changes.service().as_str(), "orders");
    let first = [next(&mut changes).await, next(&mut changes).await];
    assert_eq!(
        first.map(|c| short(&c)),
        ["+10.0.1.1:80/10", "+10.0.1.2:80/10"]
    );

    let _c = registry
        .register("orders", instance("10.0.1.3:80"))
        .await
        .unwrap();
    assert_eq!(short(&next(&mut changes).await), "+10.0.1.3:80/10");

    assert!(b.deregister().await.unwrap());
    assert_eq!(short(&next(&mut changes).await), "-10.0.1.2:80/10");

    a.update(instance("10.0.1.1:80").with_weight(30))
        .await
        .unwrap();
    let replaced = [next(&mut changes).await, next(&mut changes).await];
    assert_eq!(
        replaced.map(|c| short(&c)),
        ["-10.0.1.1:80/10", "+10.0.1.1:80/30"]
    );
}

#[tokio::test]
async fn dropping_the_resolver_ends_the_stream() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _a = registry
        .register("orders", instance("10.0.2.1:80"))
        .await
        .unwrap();
    let resolver = resolver(&server).await;
    let mut changes = resolver.changes("orders").await.unwrap();
    assert!(next(&mut changes).await.is_insert());
    drop(resolver);
    let end = tokio::time::timeout(DEADLINE, changes.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends: {end:?}");
    assert!(changes.next().await.is_none(), "and stays ended");
}

#[tokio::test]
async fn shutdown_ends_the_stream_while_a_clone_lives() {
    let server = RedisServer::start();
    let resolver = resolver(&server).await;
    let clone = resolver.clone();
    let mut changes = resolver.changes("empty").await.unwrap();
    resolver.shutdown().await;
    let end = tokio::time::timeout(DEADLINE, changes.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends: {end:?}");
    drop(clone);
}

#[tokio::test]
async fn streams_of_one_service_share_one_subscription_and_leave_nothing_behind() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _a = registry
        .register("orders", instance("10.0.3.1:80"))
        .await
        .unwrap();
    let resolver = resolver(&server).await;
    // The resolver's own tasks, before any stream.
    let baseline = alive_tasks();
    let mut one = resolver.changes("orders").await.unwrap();
    let mut two = resolver.changes("orders").await.unwrap();
    assert_eq!(short(&next(&mut one).await), "+10.0.3.1:80/10");
    assert_eq!(short(&next(&mut two).await), "+10.0.3.1:80/10");
    eventually("the service subscribed", || async {
        (numsub(&server, "sd:{orders}:events") == 1).then_some(())
    })
    .await;
    assert_eq!(resolver.cached_services(), 1, "one cache entry");
    // The registry's connection, the resolver's reads and its events
    // (eventually: the test's own earlier connections may still be closing).
    eventually("three connections, one subscribed", || async {
        let clients = server.clients();
        let subscribed = clients.iter().filter(|c| c.contains("sub=1")).count();
        (clients.len() == 3 && subscribed == 1).then_some(())
    })
    .await;

    // Both see a change, from the one subscription.
    let _b = registry
        .register("orders", instance("10.0.3.2:80"))
        .await
        .unwrap();
    assert_eq!(short(&next(&mut one).await), "+10.0.3.2:80/10");
    assert_eq!(short(&next(&mut two).await), "+10.0.3.2:80/10");
    assert_eq!(numsub(&server, "sd:{orders}:events"), 1);

    // Dropped: no task of theirs stays, and the service, watched no more,
    // leaves the cache and its channel after the idle expiry.
    drop(one);
    drop(two);
    eventually(
        "the service unwatched, dropped and unsubscribed",
        || async {
            (resolver.cached_services() == 0 && numsub(&server, "sd:{orders}:events") == 0)
                .then_some(())
        },
    )
    .await;
    eventually("no task left beyond the resolver's own", || async {
        (alive_tasks() <= baseline).then_some(())
    })
    .await;
}

#[cfg(feature = "tower-discover")]
mod balance {
    //! `tower::balance::p2c::Balance` over the adapter, with real HTTP
    //! servers registered in a real Redis.

    use std::collections::HashSet;
    use std::net::SocketAddr;

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::balance::p2c::Balance;
    use tower::load::{CompleteOnResponse, PendingRequests};
    use tower::{BoxError, Service, ServiceExt};

    use super::*;
    use support::http_server::spawn_server;

    /// Sends one request through the balancer; returns the address of the
    /// server that answered.
    async fn send<S>(balance: &mut S) -> SocketAddr
    where
        S: Service<&'static str, Response = String, Error = BoxError>,
    {
        let call = balance
            .ready()
            .await
            .expect("a ready instance")
            .call("/hello");
        let answer = tokio::time::timeout(DEADLINE, call)
            .await
            .expect("answered in time")
            .expect("answered");
        // The test server answers `ADDR HOST URI`.
        let addr = answer.split(' ').next().unwrap_or_default();
        addr.parse().unwrap_or_else(|_| panic!("answer {answer:?}"))
    }

    #[tokio::test]
    async fn p2c_balances_over_the_registered_servers_and_follows_the_registry() {
        init_tracing();
        let redis = RedisServer::start();
        let registry = registry(&redis).await;
        let (addr1, _server1) = spawn_server().await;
        let (addr2, _server2) = spawn_server().await;
        let (addr3, _server3) = spawn_server().await;
        let register = |addr: SocketAddr| {
            let registry = &registry;
            async move {
                let instance = Instance::from_socket_addr(addr).unwrap();
                registry.register("web", instance).await.unwrap()
            }
        };
        let first = register(addr1).await;
        let _second = register(addr2).await;
        let resolver = resolver(&redis).await;

        // One HTTP client; one tower service per instance, sending to it.
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let discover =
            resolver
                .changes("web")
                .await
                .unwrap()
                .into_discover(move |instance: Instance| {
                    let client = client.clone();
                    let authority = instance.authority().clone();
                    let service = tower::service_fn(move |path: &'static str| {
                        let uri = format!("http://{authority}{path}").parse();
                        let client = client.clone();
                        async move {
                            let response = client.get(uri?).await?;
                            let body = response.into_body().collect().await?.to_bytes();
                            Ok::<_, BoxError>(String::from_utf8_lossy(&body).into_owned())
                        }
                    });
                    PendingRequests::new(service, CompleteOnResponse::default())
                });
        let mut balance = Balance::new(discover);

        let mut reached = HashSet::new();
        for _ in 0..40 {
            reached.insert(send(&mut balance).await);
        }
        assert_eq!(reached, HashSet::from([addr1, addr2]), "both, only them");

        // A third instance gets requests once registered.
        let _third = register(addr3).await;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while send(&mut balance).await != addr3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the third instance got no request within {DEADLINE:?}"
            );
        }

        // A deregistered one (still running) gets none once removed.
        assert!(first.deregister().await.unwrap());
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut clean = 0;
        while clean < 30 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the deregistered instance still got requests after {DEADLINE:?}"
            );
            clean = if send(&mut balance).await == addr1 {
                0
            } else {
                clean + 1
            };
        }
    }
}
