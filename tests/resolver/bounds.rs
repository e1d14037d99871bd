//! Bounds under floods and cancellation: unknown names, the cache cap,
//! dropped resolves, reads queued while Redis stalls.

use super::*;

/// Regression (issue 11, item 7): every distinct unknown name used to cost
/// a cache entry and a pub/sub channel, both kept for the idle expiry, so
/// request input (a layer with `discover_all`) grew memory and Redis
/// subscriptions without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_are_remembered_briefly_unsubscribed_and_the_cache_is_capped() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _real = registry
        .register("real", instance("10.0.12.1:80"))
        .await
        .unwrap();
    let max_services = 500;
    let resolver = no_refresh(&server)
        .negative_ttl(Duration::from_secs(1))
        .max_services(max_services)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        addrs(&resolver.resolve(&name("real")).await.unwrap()),
        ["10.0.12.1:80"]
    );
    eventually("the real service subscribed", || async {
        (numsub(&server, "sd:{real}:events") == 1).then_some(())
    })
    .await;

    // 3000 distinct names nobody registered, 100 at a time.
    for batch in 0..30 {
        let lookups = (0..100).map(|i| {
            let resolver = resolver.clone();
            let service = name(&format!("unknown-{}", batch * 100 + i));
            async move { resolver.resolve(&service).await }
        });
        for found in futures_util::future::join_all(lookups).await {
            assert!(found.unwrap().is_empty());
        }
        let cached = resolver.cached_services();
        assert!(cached <= max_services, "{cached} cached services");
    }
    let channels = subscribed_channels(&server);
    assert!(
        channels.len() < 100,
        "{} channels subscribed",
        channels.len()
    );
    assert_eq!(
        channels,
        ["sd:{real}:events"],
        "only the service with instances"
    );
    assert_eq!(
        cached_addrs(&resolver, "real").as_deref(),
        Some(&["10.0.12.1:80".to_owned()][..]),
        "unknown names evicted first: the real service stays"
    );

    // Negative entries are served from memory for the negative TTL only.
    let late = name("unknown-2999");
    assert!(resolver.resolve(&late).await.unwrap().is_empty());
    let _late = registry
        .register("unknown-2999", instance("10.0.12.2:80"))
        .await
        .unwrap();
    eventually(
        "an instance registered later is found after the negative TTL",
        || async {
            let snapshot = resolver.resolve(&late).await.ok()?;
            (addrs(&snapshot) == ["10.0.12.2:80"]).then_some(())
        },
    )
    .await;
    // Found with instances: subscribed from then on.
    eventually("the late service subscribed", || async {
        (numsub(&server, "sd:{unknown-2999}:events") == 1).then_some(())
    })
    .await;
    eventually("negative entries expire", || async {
        (resolver.cached_services() == 2).then_some(())
    })
    .await;
    assert_eq!(subscribed_channels(&server).len(), 2);
}

/// Past `max_services` the least recently used services are evicted, and
/// unsubscribed: neither the cache nor the subscriptions outgrow the cap,
/// and a service in use stays.
#[tokio::test]
async fn past_the_cap_the_least_recently_used_services_are_evicted_and_unsubscribed() {
    init_tracing();
    let server = RedisServer::start();
    for n in 0..40 {
        write_instance(&server, &format!("svc-{n}"), "10.0.14.1:80");
    }
    let max_services = 16;
    let resolver = no_refresh(&server)
        .max_services(max_services)
        .connect()
        .await
        .unwrap();
    for n in 0..40 {
        let snapshot = resolver.resolve(&name(&format!("svc-{n}"))).await.unwrap();
        assert_eq!(snapshot.len(), 1);
        assert!(
            resolver.cached("svc-0").is_some(),
            "the service in use stays ({n}, {})",
            resolver.cached_services()
        );
        assert!(resolver.cached_services() <= max_services);
    }
    let channels = eventually("evicted services unsubscribed", || async {
        let channels = subscribed_channels(&server);
        (channels.len() == resolver.cached_services()).then_some(channels)
    })
    .await;
    assert!(channels.len() <= max_services, "{channels:?}");
    assert!(channels.contains(&"sd:{svc-0}:events".to_owned()));
    assert!(channels.contains(&"sd:{svc-39}:events".to_owned()));
    // An evicted service is read again when asked for.
    let again = resolver.resolve(&name("svc-1")).await.unwrap();
    assert_eq!(addrs(&again), ["10.0.14.1:80"]);
}

/// Cancel safety of `resolve`: a caller that gives up only stops waiting.
/// The read it started goes on, for the callers that joined it and, with
/// none left, to fill the cache.
#[tokio::test]
async fn a_dropped_resolve_leaves_its_read_to_the_others_and_the_cache() {
    init_tracing();
    let server = RedisServer::start();
    write_instance(&server, "shared", "10.0.15.1:80");
    write_instance(&server, "alone", "10.0.15.2:80");
    let resolver = no_refresh(&server)
        .command_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    server.freeze();
    let (shared, alone) = (name("shared"), name("alone"));
    let give_up = Duration::from_millis(100);
    let dropped = tokio::time::timeout(give_up, resolver.resolve(&shared)).await;
    assert!(dropped.is_err(), "Redis is frozen");
    let dropped = tokio::time::timeout(give_up, resolver.resolve(&alone)).await;
    assert!(dropped.is_err(), "Redis is frozen");
    let joined = tokio::spawn({
        let resolver = resolver.clone();
        async move { resolver.resolve(&shared).await }
    });
    server.thaw();
    let snapshot = tokio::time::timeout(DEADLINE, joined)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(addrs(&snapshot), ["10.0.15.1:80"]);
    eventually("the abandoned read fills the cache", || async {
        (cached_addrs(&resolver, "alone")? == ["10.0.15.2:80"]).then_some(())
    })
    .await;
}

/// Freezes `server`, then resolves `names` distinct names (`PREFIX-N`) at
/// once, each caller giving up quickly; leaves the server frozen. Returns
/// the count of reads before the flood.
async fn flood_while_frozen(
    server: &RedisServer,
    resolver: &RedisResolver,
    prefix: &str,
    names: usize,
) -> u64 {
    resolver.fetch("warm.up").await.unwrap(); // script loaded: one call a read
    let before = read_calls(server);
    server.freeze();
    let lookups = (0..names).map(|n| {
        let resolver = resolver.clone();
        let service = name(&format!("{prefix}-{n}"));
        async move {
            let give_up = Duration::from_millis(50);
            tokio::time::timeout(give_up, resolver.resolve(&service)).await
        }
    });
    for gave_up in futures_util::future::join_all(lookups).await {
        assert!(gave_up.is_err(), "Redis is frozen");
    }
    before
}

/// Reads queue for a permit while Redis is slow. One queued for a service
/// that has since been evicted, and that no caller waits for any more, is
/// dropped instead of sent: a flood of names while Redis hangs does not
/// turn into a flood of reads, one per name, once it answers.
#[tokio::test]
async fn queued_reads_that_no_one_waits_for_and_no_cache_keeps_are_dropped() {
    init_tracing();
    let server = RedisServer::start();
    let max_services = 16;
    let resolver = no_refresh(&server)
        .max_services(max_services)
        .command_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let names = 300;
    let before = flood_while_frozen(&server, &resolver, "flood", names).await;
    server.thaw();
    // A read queued behind all of them: once it is done, they have been
    // sent (those that had a permit, and those of the services still
    // cached) or dropped.
    let last = resolver.resolve(&name("last")).await.unwrap();
    assert!(last.is_empty());
    let reads = read_calls(&server) - before;
    assert!(reads < 100, "{reads} reads for {names} abandoned names");
}

/// Regression: a queued read was dropped only if no caller waited *and*
/// its service had been evicted. During a Redis stall, the first reads of
/// thousands of unknown names whose callers gave up stayed queued while
/// the cache still held the names, and once Redis answered a real
/// service's first resolve waited behind one read per name. A first read
/// nobody waits for is now dropped at its permit, cached or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_first_reads_that_no_one_waits_for_are_dropped_even_while_cached() {
    init_tracing();
    let server = RedisServer::start();
    write_instance(&server, "real", "10.0.18.1:80");
    let resolver = no_refresh(&server)
        .command_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let names = 1000;
    let before = flood_while_frozen(&server, &resolver, "stalled", names).await;
    assert!(
        resolver.cached_services() >= names,
        "the names are still cached: {}",
        resolver.cached_services()
    );
    server.thaw();
    let real = tokio::time::timeout(DEADLINE, resolver.resolve(&name("real")))
        .await
        .expect("the real service answers")
        .unwrap();
    assert_eq!(addrs(&real), ["10.0.18.1:80"]);
    // Only the reads that had a permit when Redis froze were sent.
    let reads = read_calls(&server) - before;
    assert!(reads < 100, "{reads} reads for {names} abandoned names");
    // An abandoned name is read again when asked for.
    let again = resolver.resolve(&name("stalled-7")).await.unwrap();
    assert!(again.is_empty());
}

/// Regression (item 7: no queue fed by request input is unbounded): a
/// queued first read whose callers all gave up was only dropped once it
/// got a permit. While Redis stalls, the permits are held by hung reads,
/// so every distinct unknown name kept a task (and, through it, its
/// entry, evicted or not) until Redis answered: memory grew with the
/// request rate times the stall. Such a read is now abandoned as soon as
/// its last caller gives up.
#[tokio::test]
async fn queued_reads_end_when_their_callers_give_up_while_redis_stalls() {
    init_tracing();
    let server = RedisServer::start();
    write_instance(&server, "real", "10.0.19.1:80");
    let max_services = 16;
    let resolver = no_refresh(&server)
        .max_services(max_services)
        .command_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let names = 1000;
    flood_while_frozen(&server, &resolver, "stall", names).await;
    // Left: the reads holding a permit (32), hung on the frozen Redis.
    let bound = baseline + 32 + 8;
    eventually(
        "the queued reads end while Redis is still frozen",
        || async {
            let alive = metrics.num_alive_tasks();
            let cached = resolver.cached_services();
            (alive <= bound && cached <= max_services).then_some(())
        },
    )
    .await;
    server.thaw();
    let real = tokio::time::timeout(DEADLINE, resolver.resolve(&name("real")))
        .await
        .expect("the real service answers")
        .unwrap();
    assert_eq!(addrs(&real), ["10.0.19.1:80"]);
}
