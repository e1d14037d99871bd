//! What the resolver refuses: corrupt entries (skipped, logged), bad
//! options (before connecting), snapshots older than `max_staleness`.

use super::*;

#[tokio::test(flavor = "current_thread")]
async fn corrupt_entries_are_skipped_and_logged() {
    let server = RedisServer::start();
    let registry = registry(&server).await;
    let _good = registry
        .register("messy", instance("10.0.6.1:80").with_weight(5))
        .await
        .unwrap();
    let huge = format!(
        r#"{{"service_name":"messy","addr":"10.0.6.5:80","weight":1,"tags":{{"x":"{}"}}}}"#,
        "a".repeat(1 << 20)
    );
    let corrupt = [
        ("10.0.6.2:80", "not json".to_owned()),
        (
            "bad-address",
            r#"{"service_name":"messy","addr":"bad-address","weight":1}"#.to_owned(),
        ),
        (
            "10.0.6.3:80",
            r#"{"service_name":"messy","addr":"10.0.6.3:80","weight":-1}"#.to_owned(),
        ),
        (
            "10.0.6.4:80",
            r#"{"service_name":"messy","addr":"10.0.6.4:80","weight":"heavy"}"#.to_owned(),
        ),
        ("10.0.6.5:80", huge),
    ];
    for (field, value) in &corrupt {
        write_raw(&server, "messy", field, value, 60_000);
    }
    let resolver = no_refresh(&server).connect().await.unwrap();

    let logs = LogCapture::default();
    let subscriber = logs.subscriber(tracing::Level::WARN, false);
    let snapshot = {
        // The read runs on this (current-thread) runtime's thread.
        let _guard = tracing::subscriber::set_default(subscriber);
        resolver.resolve(&name("messy")).await.unwrap()
    };
    assert_eq!(addrs(&snapshot), ["10.0.6.1:80"]);
    assert_eq!(snapshot.instances()[0].weight(), 5);

    let logs = logs.text();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("skipping a corrupt registry entry"))
        .collect();
    assert_eq!(warnings.len(), corrupt.len(), "{logs}");
    for (field, _) in &corrupt {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(field) && w.contains("service=messy")),
            "no warning for {field}: {logs}"
        );
    }
    assert!(logs.len() < 10_000, "the 1 MiB value is not logged");
}

#[tokio::test]
async fn too_old_snapshots_are_refused_with_max_staleness() {
    init_tracing();
    let mut server = RedisServer::start();
    let registry = registry(&server).await;
    let _a = registry
        .register("stale", instance("10.0.8.1:80"))
        .await
        .unwrap();
    let resolver = RedisResolver::builder(server.url())
        .refresh_interval(Duration::from_millis(500))
        .max_staleness(Duration::from_secs(1))
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let service = name("stale");
    resolver.resolve(&service).await.unwrap();
    server.stop();
    eventually("the snapshot goes stale", || async {
        resolver.cached("stale").is_none().then_some(())
    })
    .await;
    match resolver.resolve(&service).await {
        Err(ResolveError::Stale { service, age, max }) => {
            assert_eq!(service, "stale");
            assert!(age > max, "{age:?} {max:?}");
            assert_eq!(max, Duration::from_secs(1));
        }
        other => panic!("expected Stale, got {other:?}"),
    }
    server.restart();
    eventually("fresh again", || async {
        let s = resolver.resolve(&service).await.ok()?;
        (addrs(&s) == ["10.0.8.1:80"]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_options_are_refused_before_connecting() {
    // Nothing listens on port 1: a connection attempt would fail with
    // Connect, so Invalid proves nothing was tried.
    let b = || RedisResolver::builder("redis://127.0.0.1:1");
    for (builder, what) in [
        (b().refresh_interval(Duration::ZERO), "refresh interval"),
        (b().idle_expiry(Duration::ZERO), "idle expiry"),
        (b().max_staleness(Duration::from_secs(5)), "max staleness"),
        (b().command_timeout(Duration::ZERO), "command timeout"),
        (b().prefix("has space"), "prefix"),
        // Too long to add to an instant: refused, not a panic in a task.
        (b().refresh_interval(Duration::MAX), "refresh interval"),
        (
            b().refresh_interval(Duration::from_secs(2 * 24 * 3600)),
            "at most",
        ),
        (b().idle_expiry(Duration::MAX), "idle expiry"),
        (b().max_staleness(Duration::MAX), "max staleness"),
        (b().connect_timeout(Duration::MAX), "connect timeout"),
        (b().negative_ttl(Duration::ZERO), "negative TTL"),
        (b().negative_ttl(Duration::MAX), "negative TTL"),
        (b().max_services(0), "max services"),
        (b().max_services(usize::MAX), "max services"),
        (
            b().command_timeout(Duration::from_secs(2 * 3600)),
            "command timeout",
        ),
    ] {
        match builder.connect().await {
            Err(ResolveError::Invalid(ValidationError::Config(message))) => {
                assert!(message.contains(what), "{message}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(matches!(
        RedisResolver::connect("http://127.0.0.1").await,
        Err(ResolveError::Invalid(ValidationError::RedisUrl { .. }))
    ));
    match b()
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
    {
        Err(e @ ResolveError::Connect { .. }) => {
            assert!(e.to_string().contains("127.0.0.1:1"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
