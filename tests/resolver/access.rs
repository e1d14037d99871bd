//! Who may read: ACL users that may not subscribe, read-only users, and
//! the read-only script fallback per server.

use super::*;

#[tokio::test]
async fn a_user_that_may_not_subscribe_is_told_once_and_served_by_refresh() {
    init_tracing();
    let server = RedisServer::start();
    // Reads allowed, but no event channel.
    let url = read_only_user(&server, "quiet", false);
    let registry = registry(&server).await;
    let _a = registry
        .register("quiet", instance("10.0.8.1:80"))
        .await
        .unwrap();
    let logs = LogCapture::default();
    // A current-thread runtime: every task logs through this subscriber.
    let _guard = tracing::subscriber::set_default(logs.subscriber(tracing::Level::WARN, false));
    let resolver = RedisResolver::builder(url)
        .refresh_interval(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let snapshot = resolver.resolve(&name("quiet")).await.unwrap();
    assert_eq!(addrs(&snapshot), ["10.0.8.1:80"]);
    let _b = registry
        .register("quiet", instance("10.0.8.2:80"))
        .await
        .unwrap();
    eventually("the periodic refresh to bring the new instance", || async {
        (cached_addrs(&resolver, "quiet")?.len() == 2).then_some(())
    })
    .await;
    let text = logs.text();
    assert_eq!(text.matches("may not subscribe").count(), 1, "{text}");
    assert!(text.contains("&sd:*"), "{text}");
    assert!(!text.contains("event connection lost"), "{text}");
}

#[tokio::test]
async fn a_read_only_user_is_enough() {
    init_tracing();
    let server = RedisServer::start();
    let url = read_only_user(&server, "reader", true);
    let registry = registry(&server).await;
    let _a = registry
        .register("ro", instance("10.0.9.1:80"))
        .await
        .unwrap();
    let resolver = RedisResolver::builder(url.as_str())
        .refresh_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let snapshot = resolver.resolve(&name("ro")).await.unwrap();
    assert_eq!(addrs(&snapshot), ["10.0.9.1:80"]);
    assert_eq!(resolver.services().await.unwrap(), ["ro"]);
    assert_eq!(resolver.list("ro").await.unwrap().len(), 1);
    let _b = registry
        .register("ro", instance("10.0.9.2:80"))
        .await
        .unwrap();
    eventually("events reach the read-only user", || async {
        (cached_addrs(&resolver, "ro")?.len() == 2).then_some(())
    })
    .await;
    // And it really cannot write.
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let write: redis::RedisResult<()> = redis::cmd("HSET")
        .arg("sd:{ro}:instances")
        .arg("x")
        .arg("y")
        .query_async(&mut conn)
        .await;
    assert!(write.is_err());
}

/// Regression (issue 11, item 9): one server without read-only scripts
/// (Redis 6, or `EVALSHA_RO` renamed away) used to switch every connection
/// in the process to `EVALSHA`, which a read-only ACL user on Redis 7 may
/// not run. The fallback is decided per server.
#[tokio::test]
async fn the_read_only_script_fallback_is_decided_per_server() {
    init_tracing();
    let old = RedisServer::start_with(&[
        "--rename-command",
        "EVALSHA_RO",
        "",
        "--rename-command",
        "EVAL_RO",
        "",
    ]);
    let current = RedisServer::start();
    for server in [&old, &current] {
        // By hand: a registry's heartbeats would run EVALSHA.
        let entry = r#"{"service_name":"ro","addr":"10.0.13.1:80","weight":10,"tags":null}"#;
        write_raw(server, "ro", "10.0.13.1:80", entry, 600_000);
    }
    let reader = read_only_user(&current, "reader", true);
    let on_old = no_refresh(&old).connect().await.unwrap();
    let on_current = RedisResolver::builder(reader.as_str())
        .refresh_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    for _ in 0..2 {
        let fetched = on_old
            .fetch("ro")
            .await
            .expect("plain EVALSHA on the old server");
        assert_eq!(addrs(&fetched), ["10.0.13.1:80"]);
        let fetched = on_current
            .fetch("ro")
            .await
            .expect("EVALSHA_RO for the read-only user on the current server");
        assert_eq!(addrs(&fetched), ["10.0.13.1:80"]);
    }
    assert!(old.calls("evalsha") + old.calls("eval") >= 2);
    assert_eq!(
        current.calls("evalsha"),
        0,
        "never tried on the current server"
    );
    // A read refused for another reason is reported with its kind.
    current.cmd::<()>(&["ACL", "SETUSER", "reader", "-evalsha_ro", "-eval_ro"]);
    match on_current.fetch("ro").await {
        Err(ResolveError::Redis {
            service,
            source: error,
        }) => {
            assert_eq!(service, "ro");
            assert_eq!(error.code(), Some("NOPERM"), "{error}");
        }
        other => panic!("expected a NOPERM Redis error, got {other:?}"),
    }
}
