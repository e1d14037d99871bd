//! The registry against real redis-server processes.

#[path = "../support/mod.rs"]
mod support;

mod cancellation;
mod refusals;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redis_discovery::{Instance, RedisRegistry, RegistryError, ValidationError};
use support::{eventually, lease_renewed, RedisServer};

const HEARTBEAT: Duration = Duration::from_millis(500);
const TTL: Duration = Duration::from_secs(2);

async fn registry(server: &RedisServer) -> RedisRegistry {
    RedisRegistry::builder(server.url())
        .lease_ttl(TTL)
        .heartbeat_interval(HEARTBEAT)
        .connect()
        .await
        .expect("connect to test redis")
}

fn instance(port: u16) -> Instance {
    Instance::new(format!("127.0.0.1:{port}")).expect("valid address")
}

/// The addresses listed in the instances hash of `service`.
fn listed(server: &RedisServer, service: &str) -> BTreeSet<String> {
    server
        .cmd::<Vec<String>>(&["HKEYS", &format!("sd:{{{service}}}:instances")])
        .into_iter()
        .collect()
}

fn set(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_writes_the_native_keys() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let reg = registry
        .register(
            "orders",
            instance(8080).with_weight(7).with_tag("zone", "a").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        server.keys(),
        vec!["sd:services", "sd:{orders}:instances", "sd:{orders}:leases"]
    );
    let json: String = server.cmd(&["HGET", "sd:{orders}:instances", "127.0.0.1:8080"]);
    assert_eq!(
        json,
        r#"{"service_name":"orders","addr":"127.0.0.1:8080","weight":7,"tags":{"zone":"a"}}"#
    );
    let members: Vec<String> = server.cmd(&["SMEMBERS", "sd:services"]);
    assert_eq!(members, vec!["orders"]);
    // Lease deadline is in the future, within the TTL; keys expire after it.
    let time: Vec<String> = server.cmd(&["TIME"]);
    let now_ms = time[0].parse::<i64>().unwrap() * 1000;
    let score: f64 = server.cmd(&["ZSCORE", "sd:{orders}:leases", "127.0.0.1:8080"]);
    let left = score as i64 - now_ms;
    assert!(
        left > 0 && left <= TTL.as_millis() as i64 + 1000,
        "lease left {left} ms"
    );
    let pttl: i64 = server.cmd(&["PTTL", "sd:{orders}:instances"]);
    assert!(
        pttl > TTL.as_millis() as i64,
        "keys expire after the last lease: {pttl}"
    );
    assert!(reg.deregister().await.unwrap());
}

/// Issue 2, test 1: a crashed instance (heartbeat stopped, no deregister)
/// disappears after its lease while its siblings stay listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_instance_expires_while_siblings_stay() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _a = registry.register("orders", instance(1)).await.unwrap();
    let _b = registry.register("orders", instance(2)).await.unwrap();

    // The third instance lives on its own runtime, ended the way a crash
    // ends a process: no deregister, no more heartbeats.
    let url = server.url();
    let crashed = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let reg = rt.block_on(async {
            RedisRegistry::builder(url)
                .lease_ttl(TTL)
                .heartbeat_interval(HEARTBEAT)
                .connect()
                .await
                .unwrap()
                .register("orders", instance(3))
                .await
                .unwrap()
        });
        // Leak the handle so its Drop cannot deregister, then kill the runtime.
        std::mem::forget(reg);
        rt.shutdown_background();
    });
    crashed.join().unwrap();
    assert_eq!(
        listed(&server, "orders"),
        set(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])
    );

    eventually("the crashed instance to be pruned", || async {
        (listed(&server, "orders") == set(&["127.0.0.1:1", "127.0.0.1:2"])).then_some(())
    })
    .await;
    // And the live ones keep being renewed well past the crashed lease.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(
        listed(&server, "orders"),
        set(&["127.0.0.1:1", "127.0.0.1:2"])
    );
}

/// Issue 2, test 2: FLUSHALL and a restart lose the entries; the next
/// heartbeat re-creates them with the same JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_come_back_after_flushall_and_restart() {
    let mut server = RedisServer::start();
    let registry = registry(&server).await;
    let mut regs = Vec::new();
    for (svc, port) in [("orders", 1), ("orders", 2), ("billing", 3)] {
        regs.push(
            registry
                .register(svc, instance(port).with_tag("v", "1").unwrap())
                .await
                .unwrap(),
        );
    }
    // Everything the registrations wrote, except the lease scores (time).
    let state = |server: &RedisServer| {
        let mut orders: Vec<(String, String)> = server.cmd(&["HGETALL", "sd:{orders}:instances"]);
        let mut billing: Vec<(String, String)> = server.cmd(&["HGETALL", "sd:{billing}:instances"]);
        let leases: Vec<String> = server.cmd(&["ZRANGE", "sd:{orders}:leases", "0", "-1"]);
        orders.sort();
        billing.sort();
        (server.keys(), orders, billing, leases)
    };
    let before = state(&server);
    assert_eq!(before.1.len(), 2);

    for lose in ["flushall", "restart"] {
        let started = Instant::now();
        match lose {
            "flushall" => server.flushall(),
            _ => server.restart(),
        }
        assert!(server.keys().is_empty());
        eventually(&format!("entries back after {lose}"), || async {
            (state(&server) == before).then_some(())
        })
        .await;
        let elapsed = started.elapsed();
        eprintln!("{lose}: entries back after {elapsed:?} (heartbeat {HEARTBEAT:?})");
        // Within one heartbeat interval plus a margin for a busy machine
        // (after a restart the connection must be re-established first).
        assert!(
            elapsed < HEARTBEAT + Duration::from_secs(5),
            "{lose}: took {elapsed:?}"
        );
    }
}

/// Issue 2, test 3: deregister removes exactly one instance and publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_removes_one_and_publishes() {
    use futures_util::StreamExt;

    let server = RedisServer::start();
    let registry = registry(&server).await;
    let a = registry.register("orders", instance(1)).await.unwrap();
    let _b = registry.register("orders", instance(2)).await.unwrap();
    let _c = registry.register("orders", instance(3)).await.unwrap();

    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("sd:{orders}:events").await.unwrap();
    let mut messages = pubsub.into_on_message();

    assert!(a.deregister().await.unwrap());
    assert_eq!(
        listed(&server, "orders"),
        set(&["127.0.0.1:2", "127.0.0.1:3"])
    );
    assert_eq!(
        server.cmd::<Option<f64>>(&["ZSCORE", "sd:{orders}:leases", "127.0.0.1:1"]),
        None
    );
    let message = tokio::time::timeout(support::DEADLINE, messages.next())
        .await
        .expect("an event within the deadline")
        .expect("the subscription is open");
    let payload: String = message.get_payload().unwrap();
    assert_eq!(payload, r#"{"event":"deregister","addr":"127.0.0.1:1"}"#);
}

async fn next(messages: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin)) -> String {
    use futures_util::StreamExt;
    let m = tokio::time::timeout(support::DEADLINE, messages.next())
        .await
        .expect("an event within the deadline")
        .expect("the subscription is open");
    m.get_payload::<String>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_again_updates_and_publishes() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("sd:{orders}:events").await.unwrap();
    let mut messages = pubsub.into_on_message();

    let old = registry.register("orders", instance(1)).await.unwrap();
    assert_eq!(
        next(&mut messages).await,
        r#"{"event":"register","addr":"127.0.0.1:1"}"#
    );
    let new = registry
        .register("orders", instance(1).with_weight(3))
        .await
        .unwrap();
    assert_eq!(
        next(&mut messages).await,
        r#"{"event":"update","addr":"127.0.0.1:1"}"#
    );
    let json: String = server.cmd(&["HGET", "sd:{orders}:instances", "127.0.0.1:1"]);
    assert!(json.contains(r#""weight":3"#), "{json}");

    // The older handle is detached: dropping it leaves the entry alone.
    drop(old);
    tokio::time::sleep(HEARTBEAT * 2).await;
    assert_eq!(listed(&server, "orders"), set(&["127.0.0.1:1"]));

    // update() drains in place.
    new.update(instance(1).with_weight(0)).await.unwrap();
    assert_eq!(
        next(&mut messages).await,
        r#"{"event":"update","addr":"127.0.0.1:1"}"#
    );
    let json: String = server.cmd(&["HGET", "sd:{orders}:instances", "127.0.0.1:1"]);
    assert!(json.contains(r#""weight":0"#), "{json}");
    assert!(matches!(
        new.update(instance(2)).await,
        Err(RegistryError::Invalid(ValidationError::Config(_)))
    ));
    assert!(new.deregister().await.unwrap());
    // The last instance gone, nothing is left behind.
    assert!(server.keys().is_empty(), "{:?}", server.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_registrations_share_one_registry() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let mut regs = Vec::new();
    for svc in 0..5 {
        for port in 1..=20 {
            regs.push(
                registry
                    .register(format!("svc-{svc}").as_str(), instance(port))
                    .await
                    .unwrap(),
            );
        }
    }
    for svc in 0..5 {
        assert_eq!(listed(&server, &format!("svc-{svc}")).len(), 20);
    }
    // One connection for all of them (plus the test's own).
    let clients: String = server.cmd(&["CLIENT", "LIST"]);
    assert_eq!(clients.lines().count(), 2, "{clients}");
    // Dropping half of one service leaves everything else untouched.
    regs.truncate(90);
    eventually("the dropped registrations to be removed", || async {
        (listed(&server, "svc-4").len() == 10).then_some(())
    })
    .await;
    for svc in 0..4 {
        assert_eq!(listed(&server, &format!("svc-{svc}")).len(), 20);
    }
    registry.shutdown().await.unwrap();
    for svc in 0..5 {
        assert!(listed(&server, &format!("svc-{svc}")).is_empty());
    }
    drop(regs);
}

/// Issue 2, test 5: heartbeats stop after deregister, drop and shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_stop_after_deregister_drop_and_shutdown() {
    let server = RedisServer::start();

    async fn quiet(server: &RedisServer) {
        // No write during four heartbeat intervals means no heartbeat runs.
        let before = server.writes();
        tokio::time::sleep(HEARTBEAT * 4).await;
        assert_eq!(server.writes(), before, "{:?}", server.commandstats());
    }
    async fn wait_removed(server: &RedisServer) {
        eventually("the instance to be removed", || async {
            listed(server, "orders").is_empty().then_some(())
        })
        .await;
    }

    let registry = registry(&server).await;
    let reg = registry.register("orders", instance(1)).await.unwrap();
    let heartbeats = server.calls("evalsha");
    eventually("heartbeats to run", || async {
        (server.calls("evalsha") >= heartbeats + 2).then_some(())
    })
    .await;
    reg.deregister().await.unwrap();
    quiet(&server).await;

    let reg = registry.register("orders", instance(1)).await.unwrap();
    drop(reg);
    wait_removed(&server).await;
    quiet(&server).await;

    let _kept = registry.register("orders", instance(1)).await.unwrap();
    let _kept2 = registry.register("billing", instance(2)).await.unwrap();
    registry.shutdown().await.unwrap();
    wait_removed(&server).await;
    quiet(&server).await;
    assert!(matches!(
        registry.register("orders", instance(1)).await,
        Err(RegistryError::Shutdown)
    ));
}

/// Dropping a registration and at once registering the same address again
/// (a restart in place) must leave the new registration listed: the
/// dropped handle's background deregister cannot remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_then_register_same_address_keeps_the_new_one() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    for round in 0..20 {
        let old = registry
            .register("orders", instance(1).with_weight(round))
            .await
            .unwrap();
        drop(old);
        let new = registry
            .register("orders", instance(1).with_weight(100 + round))
            .await
            .unwrap();
        // Let the dropped handle's background deregister run, if it will.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            listed(&server, "orders"),
            set(&["127.0.0.1:1"]),
            "round {round}"
        );
        let json: String = server.cmd(&["HGET", "sd:{orders}:instances", "127.0.0.1:1"]);
        assert!(
            json.contains(&format!(r#""weight":{}"#, 100 + round)),
            "{json}"
        );
        new.deregister().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_handles_change_nothing() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let old = registry.register("orders", instance(1)).await.unwrap();
    let new = registry
        .register("orders", instance(1).with_weight(5))
        .await
        .unwrap();
    assert!(matches!(
        old.update(instance(1).with_weight(9)).await,
        Err(RegistryError::Detached)
    ));
    assert!(!old.deregister().await.unwrap());
    let json: String = server.cmd(&["HGET", "sd:{orders}:instances", "127.0.0.1:1"]);
    assert!(json.contains(r#""weight":5"#), "{json}");

    // Removed by address: the handle is detached too, and stays removed.
    assert!(registry.deregister("orders", "127.0.0.1:1").await.unwrap());
    assert!(matches!(
        new.update(instance(1).with_weight(7)).await,
        Err(RegistryError::Detached)
    ));
    tokio::time::sleep(HEARTBEAT * 3).await;
    assert!(listed(&server, "orders").is_empty());
    drop(new);
}
