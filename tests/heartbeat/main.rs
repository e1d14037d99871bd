//! The registry's heartbeat against real redis-server processes: one task
//! per registry, one script call per service and round, writes that never
//! race updates or deregistrations, recovery right after an outage, and
//! logs per registry.

#[path = "../support/mod.rs"]
mod support;

mod outage;

use std::time::{Duration, Instant};

use redis_discovery::{Instance, RedisRegistry, Registration};
use support::outage::entries_back;
use support::{eventually, lease_renewed, RedisServer};

async fn registry(server: &RedisServer, ttl: Duration, heartbeat: Duration) -> RedisRegistry {
    RedisRegistry::builder(server.url())
        .lease_ttl(ttl)
        .heartbeat_interval(heartbeat)
        .connect()
        .await
        .expect("connect to test redis")
}

fn instance(port: u16) -> Instance {
    Instance::new(format!("127.0.0.1:{port}")).expect("valid address")
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Registers `services` services (`svc-0`, …) of `per_service` instances
/// each (ports 1, 2, …).
async fn register_many(
    registry: &RedisRegistry,
    services: usize,
    per_service: u16,
) -> Vec<Registration> {
    let mut registrations = Vec::new();
    for svc in 0..services {
        for port in 1..=per_service {
            let name = format!("svc-{svc}");
            registrations.push(
                registry
                    .register(name.as_str(), instance(port))
                    .await
                    .unwrap(),
            );
        }
    }
    registrations
}

/// The number of entries in each of `services` services' instances hashes
/// (one round trip), or `None` if the server does not answer.
fn counts(conn: &mut redis::Connection, services: usize) -> Option<Vec<usize>> {
    let mut pipe = redis::pipe();
    for svc in 0..services {
        pipe.cmd("HLEN").arg(format!("sd:{{svc-{svc}}}:instances"));
    }
    pipe.query(conn).ok()
}

/// Waits until each of `services` services (`svc-0`, …) has
/// `per_service` entries, and returns how long after `since` the last
/// was first seen.
async fn all_back(
    server: &RedisServer,
    services: usize,
    per_service: u16,
    since: Instant,
) -> Duration {
    let url = server.url();
    let mut back = Duration::ZERO;
    for svc in 0..services {
        let service = format!("svc-{svc}");
        let seen = entries_back(&url, &service, usize::from(per_service), since).await;
        back = back.max(seen);
    }
    back
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn script_calls(server: &RedisServer) -> u64 {
    server.calls("evalsha") + server.calls("eval")
}

/// Issue 12, item 4: 1 000 registrations (100 services x 10) make one
/// heartbeat task and one connection, and each round sends one script call
/// per service, not per instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_and_one_script_call_per_service() {
    let server = RedisServer::start();
    let baseline = alive_tasks();
    let heartbeat = Duration::from_millis(500);
    let registry = registry(&server, Duration::from_secs(3), heartbeat).await;
    let (services, per_service) = (100, 10);
    let registrations = register_many(&registry, services, per_service).await;
    let tasks = alive_tasks() - baseline;
    eprintln!("1 000 registrations: {tasks} tasks alive besides the test's");
    assert!(tasks <= 10, "{tasks} tasks for 1 000 registrations");
    assert_eq!(server.clients().len(), 1, "{:?}", server.clients());

    // Count rounds by the renewals of one instance: each round renews
    // every service once.
    lease_renewed(&server, "svc-0", &addr(1)).await;
    let before = script_calls(&server);
    let rounds = 3;
    for _ in 0..rounds {
        lease_renewed(&server, "svc-0", &addr(1)).await;
    }
    let calls = script_calls(&server) - before;
    let per_round = calls as f64 / rounds as f64;
    eprintln!("{calls} script calls in {rounds} rounds: {per_round} per round for {services} services of {per_service} instances");
    // Loose: a round may be half counted at either end.
    assert!(
        calls >= (rounds as u64 - 1) * services as u64
            && calls <= (rounds as u64 + 1) * services as u64,
        "{calls} script calls in {rounds} rounds"
    );
    assert!(alive_tasks() - baseline <= 10);
    registry.shutdown().await.unwrap();
    drop(registrations);
}

/// A service with more instances than one call takes is split into calls
/// of at most 1 000: every instance is renewed, in two calls per round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_service_is_renewed_in_chunks() {
    let server = RedisServer::start();
    let registry = registry(&server, Duration::from_secs(3), Duration::from_millis(500)).await;
    let registrations = register_many(&registry, 1, 1500).await;
    let first = support::lease(&server, "svc-0", &addr(1)).unwrap();
    let last = support::lease(&server, "svc-0", &addr(1500)).unwrap();
    lease_renewed(&server, "svc-0", &addr(1)).await;
    eventually("the last instance renewed too", || async {
        (support::lease(&server, "svc-0", &addr(1500))? > last).then_some(())
    })
    .await;
    assert!(support::lease(&server, "svc-0", &addr(1)).unwrap() > first);
    let mut conn = server.conn();
    assert_eq!(counts(&mut conn, 1), Some(vec![1500]));
    registry.shutdown().await.unwrap();
    drop(registrations);
}

/// Every background task ends after a shutdown, and after the registry and
/// its registrations are dropped without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_ends_after_shutdown_and_after_drop() {
    let server = RedisServer::start();
    let baseline = alive_tasks();
    for shut_down in [true, false] {
        let registry = registry(&server, Duration::from_secs(2), Duration::from_millis(200)).await;
        let registrations = register_many(&registry, 5, 10).await;
        lease_renewed(&server, "svc-0", &addr(1)).await;
        assert!(alive_tasks() > baseline, "the heartbeat runs");
        if shut_down {
            registry.shutdown().await.unwrap();
            drop(registrations);
            drop(registry);
        } else {
            drop(registry);
            drop(registrations);
        }
        eventually("every task of the registry to end", || async {
            (alive_tasks() == baseline).then_some(())
        })
        .await;
        eventually("every instance to be removed", || async {
            let mut conn = server.conn();
            (counts(&mut conn, 5)? == vec![0; 5]).then_some(())
        })
        .await;
    }
}

/// Updates racing heartbeat rounds never leave an older value in Redis,
/// and deregistrations racing them never leave an entry behind (nor see it
/// re-created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deregisters_never_lose_to_a_round() {
    let server = RedisServer::start();
    let heartbeat = Duration::from_millis(100);
    let registry = registry(&server, Duration::from_secs(1), heartbeat).await;
    // Many services make each round long enough to race.
    let mut registrations = register_many(&registry, 50, 10).await;
    let value =
        |port: u16| -> String { server.cmd(&["HGET", "sd:{svc-0}:instances", &addr(port)]) };
    for weight in 1..=40u32 {
        let port = 1 + (weight % 10) as u16;
        let reg = &registrations[usize::from(port) - 1];
        reg.update(instance(port).with_weight(weight))
            .await
            .unwrap();
        let expected = format!(r#""weight":{weight},"#);
        assert!(value(port).contains(&expected), "{}", value(port));
        if weight % 10 == 0 {
            // A whole round later, still the new value.
            lease_renewed(&server, "svc-0", &addr(port)).await;
            assert!(value(port).contains(&expected), "{}", value(port));
        }
    }
    // Deregister every instance of svc-1 while rounds run.
    let svc1: Vec<Registration> = registrations.drain(10..20).collect();
    for (i, reg) in svc1.into_iter().enumerate() {
        assert!(reg.deregister().await.unwrap(), "registration {i}");
        let left: bool = server.cmd(&["HEXISTS", "sd:{svc-1}:instances", &addr(i as u16 + 1)]);
        assert!(!left, "instance {i} is back at once");
    }
    let quiet = Instant::now() + heartbeat * 5;
    while Instant::now() < quiet {
        let left: Vec<String> = server.cmd(&["HKEYS", "sd:{svc-1}:instances"]);
        assert!(left.is_empty(), "re-created: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    registry.shutdown().await.unwrap();
    drop(registrations);
}

/// A round's one script call per service keeps the keyspace contract of
/// one call per instance: expired siblings pruned with an `expire` event,
/// a lost entry re-created with a `register` event each, a value changed
/// behind the registry's back restored with an `update` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_publishes_what_one_call_per_instance_would() {
    let server = RedisServer::start();
    let registry = registry(&server, Duration::from_secs(2), Duration::from_millis(300)).await;
    let mut registrations = Vec::new();
    for port in 1..=3 {
        registrations.push(registry.register("orders", instance(port)).await.unwrap());
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("sd:{orders}:events").await.unwrap();
    let mut messages = pubsub.into_on_message();
    let event = |kind: &str, port: u16| format!(r#"{{"event":"{kind}","addr":"{}"}}"#, addr(port));

    // A crashed sibling (its lease long gone) is pruned by the next round.
    let json = r#"{"service_name":"orders","addr":"127.0.0.1:9","weight":10,"tags":{}}"#;
    server.cmd::<()>(&["HSET", "sd:{orders}:instances", &addr(9), json]);
    server.cmd::<()>(&["ZADD", "sd:{orders}:leases", "1", &addr(9)]);
    assert_eq!(next(&mut messages).await, event("expire", 9));

    // Lost: each instance is registered again, in one call.
    server.flushall();
    let mut registered = vec![
        next(&mut messages).await,
        next(&mut messages).await,
        next(&mut messages).await,
    ];
    registered.sort();
    assert_eq!(
        registered,
        [
            event("register", 1),
            event("register", 2),
            event("register", 3)
        ]
    );

    // Changed behind the registry's back: the round writes its value back.
    let original: String = server.cmd(&["HGET", "sd:{orders}:instances", &addr(2)]);
    let changed = original.replace(r#""weight":10"#, r#""weight":99"#);
    assert_ne!(changed, original);
    server.cmd::<()>(&["HSET", "sd:{orders}:instances", &addr(2), &changed]);
    assert_eq!(next(&mut messages).await, event("update", 2));
    let restored: String = server.cmd(&["HGET", "sd:{orders}:instances", &addr(2)]);
    assert_eq!(restored, original);
    registry.shutdown().await.unwrap();
    drop(registrations);
}

async fn next(messages: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin)) -> String {
    use futures_util::StreamExt;
    let message = tokio::time::timeout(support::DEADLINE, messages.next())
        .await
        .expect("an event within the deadline")
        .expect("the subscription is open");
    message.get_payload::<String>().unwrap()
}

/// The heartbeat ends at shutdown, not when the last handle goes: with
/// every registration still held, no script call reaches Redis after
/// `shutdown` returns, and the heartbeat task is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_ends_at_shutdown_while_registrations_are_held() {
    let server = RedisServer::start();
    let heartbeat = Duration::from_millis(100);
    let registry = registry(&server, Duration::from_secs(1), heartbeat).await;
    let registrations = register_many(&registry, 5, 10).await;
    lease_renewed(&server, "svc-0", &addr(1)).await;
    // The heartbeat and the connection's tasks (which live on with the
    // handles).
    let running = alive_tasks();
    registry.shutdown().await.unwrap();
    let after_shutdown = script_calls(&server);
    eventually("the heartbeat task to end", || async {
        (alive_tasks() == running - 1).then_some(())
    })
    .await;
    // Many intervals without a call: watched, not a synchronisation.
    let quiet = Instant::now() + heartbeat * 10;
    while Instant::now() < quiet {
        assert_eq!(
            script_calls(&server),
            after_shutdown,
            "a call after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(registrations.len(), 50, "every handle still held");
    drop(registrations);
    drop(registry);
}
