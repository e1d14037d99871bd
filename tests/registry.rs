//! The registry against real redis-server processes.

mod support;

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

/// Issue 2, test 4: every validation rule errors and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_writes_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    let s = Duration::from_secs;
    for (ttl, hb) in [(s(0), s(1)), (s(10), s(0)), (s(9), s(5))] {
        let err = RedisRegistry::builder(url.clone())
            .lease_ttl(ttl)
            .heartbeat_interval(hb)
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::Invalid(ValidationError::Config(_))),
            "{err}"
        );
    }
    for prefix in ["", "a b", "{sd}"] {
        let err = RedisRegistry::builder(url.clone())
            .prefix(prefix)
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
    }
    for bad_url in ["", "http://127.0.0.1:6379", "127.0.0.1:6379"] {
        let err = RedisRegistry::connect(bad_url).await.unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Invalid(ValidationError::RedisUrl { .. })
            ),
            "{err}"
        );
    }
    let err = RedisRegistry::builder(url.clone())
        .command_timeout(Duration::ZERO)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");

    let registry = registry(&server).await;
    for name in [
        "",
        "a b",
        "{orders}",
        "a:b",
        "a/b",
        "zürich",
        &"x".repeat(256),
    ] {
        let err = registry.register(name, instance(1)).await.unwrap_err();
        assert!(matches!(err, RegistryError::Invalid(_)), "{name:?}: {err}");
    }
    let too_big = instance(1)
        .with_tags((0..64).map(|n| (format!("key-{n}"), "v".repeat(256))))
        .unwrap();
    let err = registry.register("orders", too_big).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Invalid(ValidationError::EntryTooLarge { .. })
        ),
        "{err}"
    );
    let err = registry
        .deregister("orders", "not-an-address")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Invalid(ValidationError::Address { .. })),
        "{err}"
    );
    for addr in ["", "host", "host:0", "host:70000", "::1:80", "a b:1"] {
        assert!(Instance::new(addr).is_err(), "{addr:?}");
    }

    let dbsize: i64 = server.cmd(&["DBSIZE"]);
    assert_eq!(dbsize, 0, "keys written: {:?}", server.keys());
    assert_eq!(server.writes(), 0, "{:?}", server.commandstats());
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

/// Issue 2, test 6: Redis down gives a clear error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_an_error_not_a_hang() {
    let mut server = RedisServer::start();
    let url = server.url();
    let registry = RedisRegistry::builder(url.clone())
        .connect_timeout(Duration::from_millis(500))
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    server.stop();

    let started = Instant::now();
    let err = registry.register("orders", instance(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Redis { .. } | RegistryError::Timeout { .. }
        ),
        "{err}"
    );
    eprintln!(
        "register with Redis down failed after {:?}: {err}",
        started.elapsed()
    );
    // Bounded by the timeouts, not a hang (loose: the machine may be busy).
    assert!(started.elapsed() < Duration::from_secs(10));

    let err = RedisRegistry::builder(url.as_str())
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_settings_are_refused() {
    let server = RedisServer::start();
    let err = RedisRegistry::builder(server.url())
        .lease_ttl(Duration::MAX)
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 24 hours"), "{err}");
    let err = RedisRegistry::builder(server.url())
        .heartbeat_interval(Duration::MAX)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
    assert!(Instance::new("0.0.0.0:80").is_err());
    // Weight 0 cannot drain in the Hertz schema: refused, not silently 10.
    let hertz = RedisRegistry::builder(server.url())
        .schema(redis_discovery::KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let err = hertz
        .register("h", instance(1).with_weight(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Hertz schema"), "{err}");
    assert!(server.keys().is_empty());
}

/// Issue 11, item 4: a `deregister()` cut short by a timeout while Redis
/// refuses writes still ends the registration: the registry forgets it, its
/// heartbeat stops, and the instance is gone (removed, or its lease runs
/// out). Cut while the instance is being removed (and the pause outlasts
/// the command timeout), and while another registration in flight makes it
/// wait its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_deregister_still_ends_the_registration() {
    let server = RedisServer::start();
    let heartbeat = Duration::from_secs(1);
    let registry = RedisRegistry::builder(server.url())
        .lease_ttl(Duration::from_secs(2))
        .heartbeat_interval(heartbeat)
        .connect()
        .await
        .unwrap();
    for contended in [false, true] {
        let reg = registry.register("orders", instance(1)).await.unwrap();
        server.cmd::<()>(&["CLIENT", "PAUSE", "5000", "WRITE"]);
        let in_flight = contended.then(|| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.register("orders", instance(2)).await })
        });
        if contended {
            eventually(
                "the registration in flight to be held by the pause",
                || async {
                    let info: String = server.cmd(&["INFO", "clients"]);
                    (!info.contains("blocked_clients:0")).then_some(())
                },
            )
            .await;
        }
        let cut = tokio::time::timeout(Duration::from_millis(200), reg.deregister()).await;
        assert!(
            cut.is_err(),
            "Redis is paused: the deregister cannot finish"
        );
        if contended {
            server.cmd::<()>(&["CLIENT", "UNPAUSE"]);
        } else {
            // The pause runs its course (longer than the command timeout):
            // this write waits for its end.
            server.cmd::<()>(&["SET", "pause-is-over", "1"]);
        }
        if let Some(task) = in_flight {
            // It may have failed on the pause, or gone through after it.
            if let Ok(Ok(other)) = task.await {
                other.deregister().await.unwrap();
            }
        }

        eventually("the registry to forget the registration", || async {
            format!("{registry:?}")
                .contains("registrations: 0")
                .then_some(())
        })
        .await;
        eventually("the instance to be gone", || async {
            (!live(&server, "orders", "127.0.0.1:1")).then_some(())
        })
        .await;
        // No heartbeat brings it back.
        let quiet = Instant::now() + heartbeat * 4;
        while Instant::now() < quiet {
            assert!(
                !live(&server, "orders", "127.0.0.1:1"),
                "contended: {contended}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Issue 11, item 4: `update()`, `deregister()` by address and `shutdown()`
/// cut short while Redis refuses writes still run to their end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_update_deregister_and_shutdown_still_finish() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let cut = Duration::from_millis(200);
    let pause = || server.cmd::<()>(&["CLIENT", "PAUSE", "5000", "WRITE"]);
    let unpause = || server.cmd::<()>(&["CLIENT", "UNPAUSE"]);

    // An update cut short is written, and is what the heartbeat keeps.
    let reg = registry.register("orders", instance(1)).await.unwrap();
    pause();
    let update = tokio::time::timeout(cut, reg.update(instance(1).with_weight(3))).await;
    assert!(update.is_err(), "Redis is paused: the update cannot finish");
    unpause();
    eventually("the cut-short update to reach Redis", || async {
        let json: String = server.cmd(&["HGET", "sd:{orders}:instances", "127.0.0.1:1"]);
        json.contains(r#""weight":3"#).then_some(())
    })
    .await;
    lease_renewed(&server, "orders", "127.0.0.1:1").await;
    assert_eq!(reg.instance().weight(), 3);

    // A deregister by address cut short removes the instance and stops
    // this registry's heartbeat for it.
    pause();
    let removal = tokio::time::timeout(cut, registry.deregister("orders", "127.0.0.1:1")).await;
    assert!(
        removal.is_err(),
        "Redis is paused: the deregister cannot finish"
    );
    unpause();
    eventually("the instance to be removed", || async {
        listed(&server, "orders").is_empty().then_some(())
    })
    .await;
    drop(reg);

    // A shutdown cut short ends every registration.
    let _a = registry.register("orders", instance(2)).await.unwrap();
    let _b = registry.register("billing", instance(3)).await.unwrap();
    pause();
    let shutdown = tokio::time::timeout(cut, registry.shutdown()).await;
    assert!(
        shutdown.is_err(),
        "Redis is paused: the shutdown cannot finish"
    );
    unpause();
    eventually("every instance to be removed", || async {
        (listed(&server, "orders").is_empty() && listed(&server, "billing").is_empty())
            .then_some(())
    })
    .await;
    assert!(format!("{registry:?}").contains("registrations: 0"));
    let before = server.writes();
    tokio::time::sleep(HEARTBEAT * 4).await;
    assert_eq!(server.writes(), before, "{:?}", server.commandstats());
}

/// Whether `addr` holds an unexpired lease in `service` (readers skip an
/// expired one; its entry stays in the hash for a grace period).
fn live(server: &RedisServer, service: &str, addr: &str) -> bool {
    let time: Vec<String> = server.cmd(&["TIME"]);
    let now_ms = time[0].parse::<f64>().unwrap() * 1000.0;
    support::lease(server, service, addr).is_some_and(|deadline| deadline >= now_ms)
}
