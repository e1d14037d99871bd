//! The resolver's life: drop and shutdown end its tasks, connections and
//! watchers; idle services leave; watches, resolves, events and evictions
//! never deadlock; a read dropped with its runtime still answers.

use super::*;

#[tokio::test]
async fn dropping_the_resolver_ends_its_tasks_and_closes_its_connections() {
    init_tracing();
    let server = RedisServer::start();
    eventually("no other client", || async {
        server.clients().is_empty().then_some(())
    })
    .await;
    let resolver = no_refresh(&server).connect().await.unwrap();
    let watcher = resolver.clone();
    let mut updates = watcher.watch("dropped").await.unwrap();
    assert!(updates.borrow_and_update().is_empty());
    eventually("two connections: reads and events (subscribed)", || async {
        let clients = server.clients();
        let subscribed = clients.iter().filter(|c| c.contains("sub=1")).count();
        (clients.len() == 2 && subscribed == 1).then_some(())
    })
    .await;
    drop(resolver);
    assert_eq!(numsub(&server, "sd:{dropped}:events"), 1, "a clone lives");
    drop(watcher);
    eventually("the connections close", || async {
        server.clients().is_empty().then_some(())
    })
    .await;
    assert!(
        updates.changed().await.is_err(),
        "watchers see the end of the resolver"
    );
}

#[tokio::test]
async fn shutdown_stops_every_clone() {
    let server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let clone = resolver.clone();
    resolver.resolve(&name("x")).await.unwrap();
    resolver.shutdown().await;
    assert!(clone.cached("x").is_none());
    assert!(matches!(
        clone.resolve(&name("x")).await,
        Err(ResolveError::Shutdown)
    ));
    eventually("the connections close", || async {
        server.clients().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_watchers_while_a_clone_lives() {
    let server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let clone = resolver.clone();
    let mut updates = resolver.watch("watched").await.unwrap();
    resolver.shutdown().await;
    let changed = tokio::time::timeout(DEADLINE, updates.changed()).await;
    assert!(
        matches!(changed, Ok(Err(_))),
        "watchers see the shutdown at once, not when the last clone goes"
    );
    drop(clone);
}

#[tokio::test]
async fn idle_services_are_dropped_and_unsubscribed_unless_watched() {
    init_tracing();
    let server = RedisServer::start();
    // Long enough that a stalled test thread does not see "idle" dropped
    // before it checked the subscription.
    let resolver = no_refresh(&server)
        .idle_expiry(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let registry = registry(&server).await;
    let _idle = registry
        .register("idle", instance("10.0.7.9:80"))
        .await
        .unwrap();
    resolver.resolve(&name("idle")).await.unwrap();
    // Watched with no instance: subscribed all the same.
    let mut watched = resolver.watch("watched").await.unwrap();
    eventually("both subscribed", || async {
        let both = numsub(&server, "sd:{idle}:events") + numsub(&server, "sd:{watched}:events");
        (both == 2).then_some(())
    })
    .await;
    eventually("the idle service is dropped and unsubscribed", || async {
        (resolver.cached_services() == 1 && numsub(&server, "sd:{idle}:events") == 0).then_some(())
    })
    .await;
    assert_eq!(numsub(&server, "sd:{watched}:events"), 1);
    // The watched one stays, and keeps getting changes.
    let _w = registry
        .register("watched", instance("10.0.7.1:80"))
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, watched.changed())
        .await
        .expect("a change within the deadline")
        .unwrap();
    assert_eq!(addrs(&watched.borrow_and_update()), ["10.0.7.1:80"]);
    drop(watched);
    eventually("dropped once unwatched", || async {
        (resolver.cached_services() == 0 && numsub(&server, "sd:{watched}:events") == 0)
            .then_some(())
    })
    .await;
    // Asked for again: cached and subscribed again.
    let again = resolver.resolve(&name("watched")).await.unwrap();
    assert_eq!(addrs(&again), ["10.0.7.1:80"]);
    eventually("subscribed again", || async {
        (numsub(&server, "sd:{watched}:events") == 1).then_some(())
    })
    .await;
}

#[test]
fn a_read_dropped_with_its_runtime_answers_its_callers() {
    init_tracing();
    let server = RedisServer::start();
    // The resolver's background tasks and reads run on the runtime it was
    // created on; that runtime goes away while the resolver lives on.
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resolver = first
        .block_on(no_refresh(&server).connect())
        .expect("connects");
    drop(first);
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        for attempt in 0..2 {
            // Used to wait forever: the read task was dropped unpolled and
            // the service stayed marked as being read.
            let result = tokio::time::timeout(DEADLINE, resolver.resolve(&name("orphan")))
                .await
                .expect("an answer, not a hang");
            assert!(
                matches!(result, Err(ResolveError::Interrupted { ref service }) if service == "orphan"),
                "attempt {attempt}: {result:?}"
            );
        }
    });
}

/// Regression (deadlock): subscribing an entry held its shard lock and
/// then took the entry's read state, while completing a read of the same
/// entry holds its read state and then takes the shard lock to publish a
/// changed list. Subscribes now run on live entries (after a read found
/// instances, and from `watch`), so watches, resolves, refreshes, events
/// and evictions on the same services at once could hang the resolver,
/// and with it every task touching that shard.
///
/// Runs on a runtime of its own in a thread of its own, so a deadlock
/// (threads blocked on locks, timers included) fails the test instead of
/// hanging it.
#[test]
fn concurrent_watches_resolves_events_and_evictions_never_deadlock() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    init_tracing();
    let server = RedisServer::start();
    let services: Vec<String> = (0..32).map(|n| format!("busy-{n}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Changes every service's list all the time, with events: every read
    // finds a new list, so its completion publishes a new snapshot.
    let writer = std::thread::spawn({
        let (stop, services) = (stop.clone(), services.clone());
        let mut conn = server.conn();
        let lease = redis_now_ms(&server) + 600_000;
        move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for service in &services {
                    n += 1;
                    let addr = format!("10.0.16.{}:{}", n % 200 + 1, 1000 + n % 50_000);
                    let entry = format!(
                        r#"{{"service_name":"{service}","addr":"{addr}","weight":10,"tags":null}}"#
                    );
                    let event = format!(r#"{{"event":"register","addr":"{addr}"}}"#);
                    let _: redis::RedisResult<()> = redis::pipe()
                        .hset(format!("sd:{{{service}}}:instances"), &addr, entry)
                        .ignore()
                        .zadd(format!("sd:{{{service}}}:leases"), &addr, lease)
                        .ignore()
                        .publish(format!("sd:{{{service}}}:events"), event)
                        .ignore()
                        .query(&mut conn);
                }
            }
        }
    });
    let (done, finished) = std::sync::mpsc::channel();
    let url = server.url();
    let stress = std::thread::spawn(move || {
        // More threads than cores: a thread is preempted between two
        // steps more often, which is what opens the window.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(8)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            // A small cap: services are evicted and inserted again, so
            // each is subscribed for the first time again and again.
            let resolver = RedisResolver::builder(url)
                .refresh_interval(Duration::from_millis(20))
                .max_services(8)
                .connect()
                .await
                .unwrap();
            let until = Instant::now() + Duration::from_secs(6);
            let tasks: Vec<_> = (0..64)
                .map(|task| {
                    let (resolver, services) = (resolver.clone(), services.clone());
                    tokio::spawn(async move {
                        let mut round = task;
                        while Instant::now() < until {
                            round += 1;
                            let service = &services[round % services.len()];
                            if round % 3 == 0 {
                                let watched = resolver.watch(service.as_str()).await;
                                tokio::task::yield_now().await;
                                drop(watched);
                            } else {
                                let _ = resolver.resolve(&name(service)).await;
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            // Still answering.
            let answered = resolver.resolve(&name("busy-0")).await.unwrap();
            assert!(!answered.is_empty());
        });
        let _ = done.send(());
    });
    let outcome = finished.recv_timeout(Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    match outcome {
        Ok(()) => stress.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(stress.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the resolver deadlocked (or is hopelessly slow)")
        }
    }
}
