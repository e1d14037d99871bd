//! The resolver while Redis is away: the event connection dropped, an
//! outage, a blackhole (a stopped server), a FLUSHALL, a first read that
//! fails.

use super::*;

#[tokio::test]
async fn after_the_event_connection_drops_it_resubscribes_and_refreshes() {
    init_tracing();
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _one = registry
        .register("resync", instance("10.0.3.1:80"))
        .await
        .unwrap();
    let resolver = no_refresh(&server).connect().await.unwrap();
    resolver.resolve(&name("resync")).await.unwrap();
    let channel = "sd:{resync}:events";
    eventually("subscribed once found with instances", || async {
        (numsub(&server, channel) == 1).then_some(())
    })
    .await;

    // A change whose event is lost: written by hand, nothing published.
    write_raw(
        &server,
        "resync",
        "10.0.3.2:80",
        r#"{"service_name":"resync","addr":"10.0.3.2:80","weight":10,"tags":null}"#,
        60_000,
    );
    let killed: i64 = server.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, 1, "one event connection per resolver");
    // And one registered while it may still be down.
    let _three = registry
        .register("resync", instance("10.0.3.3:80"))
        .await
        .unwrap();
    eventually("both changes after the reconnect", || async {
        let seen = cached_addrs(&resolver, "resync")?;
        (seen == ["10.0.3.1:80", "10.0.3.2:80", "10.0.3.3:80"]).then_some(())
    })
    .await;
    eventually("resubscribed", || async {
        (numsub(&server, channel) == 1).then_some(())
    })
    .await;
    // Events flow again.
    let _four = registry
        .register("resync", instance("10.0.3.4:80"))
        .await
        .unwrap();
    eventually("an event after the reconnect", || async {
        (cached_addrs(&resolver, "resync")?.len() == 4).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_outage_serves_the_last_instances_then_recovers() {
    init_tracing();
    let mut server = RedisServer::start();
    let registry = registry(&server).await;
    let _a = registry
        .register("outage", instance("10.0.4.1:80"))
        .await
        .unwrap();
    let _b = registry
        .register("outage", instance("10.0.4.2:80"))
        .await
        .unwrap();
    let refresh = Duration::from_secs(1);
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(refresh)
        .command_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let service = name("outage");
    let before = resolver.resolve(&service).await.unwrap();
    assert_eq!(addrs(&before), ["10.0.4.1:80", "10.0.4.2:80"]);

    server.stop();
    let stopped = Instant::now();
    // For the whole outage (three refresh intervals) both paths keep
    // answering with the last instances, older and older.
    let mut last_age = Duration::ZERO;
    while stopped.elapsed() < refresh * 3 {
        let cached = resolver.cached("outage").expect("still cached");
        assert_eq!(addrs(&cached), ["10.0.4.1:80", "10.0.4.2:80"]);
        assert!(cached.age() >= last_age);
        last_age = cached.age();
        let resolved = resolver.resolve(&service).await.expect("no error");
        assert_eq!(addrs(&resolved), addrs(&cached));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last_age >= refresh * 2, "age grew to {last_age:?}");
    eprintln!("age after {:?} of outage: {last_age:?}", stopped.elapsed());

    server.restart(); // empty: the registry's heartbeats re-create entries
    let restarted = Instant::now();
    let _c = eventually("the registry reconnects", || async {
        registry
            .register("outage", instance("10.0.4.3:80"))
            .await
            .ok()
    })
    .await;
    eventually("fresh data after the restart", || async {
        let snapshot = resolver.cached("outage")?;
        (addrs(&snapshot) == ["10.0.4.1:80", "10.0.4.2:80", "10.0.4.3:80"]
            && snapshot.read_at() > restarted)
            .then_some(())
    })
    .await;
    eprintln!("fresh again {:?} after the restart", restarted.elapsed());
}

#[tokio::test]
async fn a_miss_during_a_blackhole_fails_fast_instead_of_queueing_behind_refreshes() {
    init_tracing();
    let server = RedisServer::start();
    let command = Duration::from_millis(300);
    // A long connect timeout makes the caller's overall limit (connect +
    // 2 x command = 4.6 s) far longer than one read of its own (at most
    // 2 x command = 0.6 s), so the error says which one ended the wait.
    let connect = Duration::from_secs(4);
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_millis(500))
        .command_timeout(command)
        .connect_timeout(connect)
        .connect()
        .await
        .unwrap();
    // Many cached services: once Redis stops answering, each periodic
    // refresh queues a read per service, each taking a command timeout.
    let services: Vec<ServiceName> = (0..1000).map(|i| name(&format!("svc-{i}"))).collect();
    let reads = services.iter().map(|s| resolver.resolve(s));
    for result in futures_util::future::join_all(reads).await {
        result.expect("resolves while Redis is up");
    }
    let frozen = Frozen::new(&server);
    // Let the refreshes pile up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Cached services still answer at once.
    assert!(resolver.resolve(&services[0]).await.is_ok());
    // A miss gets its own read (subscription wait and read, each bounded
    // by the command timeout) and fails, rather than waiting in line
    // behind hundreds of background reads until the overall limit.
    let asked = Instant::now();
    let cold = tokio::time::timeout(DEADLINE, resolver.resolve(&name("cold")))
        .await
        .expect("an answer, not a hang");
    eprintln!(
        "a miss during the blackhole failed after {:?}: {cold:?}",
        asked.elapsed()
    );
    match cold {
        Err(ResolveError::Timeout { timeout, .. }) => assert_eq!(
            timeout, command,
            "the read's own command timeout, not the caller's overall limit"
        ),
        Err(ResolveError::Redis { .. }) => {}
        other => panic!("expected a failed read, got {other:?}"),
    }
    drop(frozen);
    eventually("Redis answers again", || async {
        resolver.resolve(&name("cold")).await.ok()
    })
    .await;
}

#[tokio::test]
async fn after_a_flushall_instances_stay_until_their_leases_run_out_or_an_event_removes_them() {
    init_tracing();
    let server = RedisServer::start();
    let all = ["10.0.11.1:80", "10.0.11.2:80", "10.0.11.3:80"];
    let value = |addr: &str| {
        format!(r#"{{"service_name":"flush","addr":"{addr}","weight":10,"tags":null}}"#)
    };
    let event = |kind: &str, addr: &str| {
        let message = format!(r#"{{"event":"{kind}","addr":"{addr}"}}"#);
        server.cmd::<i64>(&["PUBLISH", "sd:{flush}:events", &message]);
    };
    // Leases written by hand, so nothing heartbeats them back.
    let lease = Duration::from_secs(6);
    let written = Instant::now();
    for addr in all {
        write_raw(
            &server,
            "flush",
            addr,
            &value(addr),
            lease.as_millis() as i64,
        );
    }
    // No periodic refresh: only events, and the lease deadlines, drive it.
    let resolver = no_refresh(&server).connect().await.unwrap();
    let first = resolver.resolve(&name("flush")).await.unwrap();
    let resolved = Instant::now();
    assert_eq!(addrs(&first), all);
    // The resolver counts a lease from the start of its read, with the
    // time left by the Redis clock: its deadlines are no earlier than
    // this (a margin for clock rounding).
    let leases_last_until = written + lease - (resolved - written) - Duration::from_millis(200);

    // The registry is lost; one instance comes back and says so.
    server.flushall();
    write_raw(&server, "flush", all[0], &value(all[0]), 60_000);
    let published = Instant::now();
    event("register", all[0]);
    let after = eventually("a read after the register event", || async {
        let snapshot = resolver.cached("flush")?;
        (snapshot.read_at() >= published).then_some(snapshot)
    })
    .await;
    assert_eq!(
        addrs(&resolver.fetch("flush").await.unwrap()),
        [all[0]],
        "Redis lists one"
    );
    if Instant::now() < leases_last_until {
        assert_eq!(addrs(&after), all, "the cache keeps the other two");
    }

    // An event removes one of the kept instances at once.
    event("deregister", all[1]);
    let after = eventually("the deregistered instance leaves", || async {
        let seen = cached_addrs(&resolver, "flush")?;
        (!seen.iter().any(|a| a == all[1])).then_some(seen)
    })
    .await;
    if Instant::now() < leases_last_until {
        assert_eq!(after, [all[0], all[2]], "the other one is still kept");
    }

    // The last kept lease runs out: only the live instance is left,
    // without any event or periodic refresh.
    eventually(
        "the kept instance leaves when its lease runs out",
        || async { (cached_addrs(&resolver, "flush")? == [all[0]]).then_some(()) },
    )
    .await;
    assert!(
        Instant::now() >= leases_last_until,
        "an instance left before its last known lease ran out"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_first_read_does_not_claim_to_serve_instances() {
    let mut server = RedisServer::start();
    let resolver = no_refresh(&server)
        .command_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    server.stop();
    let logs = LogCapture::default();
    let subscriber = logs.subscriber(tracing::Level::WARN, false);
    let result = {
        // The read runs on this (current-thread) runtime's thread.
        let _guard = tracing::subscriber::set_default(subscriber);
        resolver.resolve(&name("never-read")).await
    };
    assert!(result.is_err(), "{result:?}");
    let logs = logs.text();
    assert!(
        logs.contains("no instances known yet") && logs.contains("never-read"),
        "{logs}"
    );
    assert!(!logs.contains("serving the last known instances"), "{logs}");
}
