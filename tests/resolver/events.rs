//! `RedisResolver::events`: every change event of the registry, across
//! services, through its own reconnecting connection.

use redis_discovery::resolver::{ChangeKind, RegistryChange, RegistryEvent, RegistryEvents};
use redis_discovery::Override;

use super::*;

/// The next item, within [`DEADLINE`].
async fn next(events: &mut RegistryEvents) -> RegistryEvent {
    tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("an event within the deadline")
        .expect("the stream is open")
}

/// The next change, which must be `kind` of `service` at `addr`.
async fn expect(events: &mut RegistryEvents, kind: ChangeKind, service: &str, addr: &str) {
    match next(events).await {
        RegistryEvent::Changed(change) => assert_eq!(
            (change.kind, change.service.as_str(), change.addr.as_str()),
            (kind, service, addr)
        ),
        other => panic!("expected {kind} {service} {addr}, got {other:?}"),
    }
}

/// Skips items until a change of `service`; returns it.
async fn change_of(events: &mut RegistryEvents, service: &str) -> RegistryChange {
    loop {
        if let RegistryEvent::Changed(change) = next(events).await {
            if change.service.as_str() == service {
                return change;
            }
        }
    }
}

/// Patterns subscribed on the server (by every client).
fn numpat(server: &RedisServer) -> i64 {
    server.cmd(&["PUBSUB", "NUMPAT"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_arrives_with_its_service_and_address() {
    init_tracing();
    let server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let mut events = resolver.events().await.unwrap();
    assert_eq!(numpat(&server), 1, "subscribed when events() returns");
    let registry = registry(&server).await;
    let addr = "10.0.30.1:80";

    let registration = registry.register("orders", instance(addr)).await.unwrap();
    expect(&mut events, ChangeKind::Register, "orders", addr).await;
    registration
        .update(instance(addr).with_weight(5))
        .await
        .unwrap();
    expect(&mut events, ChangeKind::Update, "orders", addr).await;
    registry
        .set_override("orders", addr, Override::drain())
        .await
        .unwrap();
    expect(&mut events, ChangeKind::Override, "orders", addr).await;
    // A sibling whose lease ran out: the next heartbeat prunes it, announced.
    write_raw(
        &server,
        "orders",
        "10.0.30.9:80",
        r#"{"service_name":"orders","addr":"10.0.30.9:80","weight":10,"tags":null}"#,
        -60_000,
    );
    expect(&mut events, ChangeKind::Expire, "orders", "10.0.30.9:80").await;
    registration.deregister().await.unwrap();
    expect(&mut events, ChangeKind::Deregister, "orders", addr).await;
    // Another service, and an IPv6 address.
    let _billing = registry
        .register("Billing", instance("[::1]:8080"))
        .await
        .unwrap();
    expect(&mut events, ChangeKind::Register, "billing", "[::1]:8080").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_first_registered_later_are_seen_and_junk_is_skipped() {
    init_tracing();
    let server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let mut events = resolver.events().await.unwrap();
    let registry = registry(&server).await;
    // Nobody ever asked the resolver for these.
    let mut held = Vec::new();
    for i in 0..20 {
        let service = format!("later-{i}");
        held.push(
            registry
                .register(service.as_str(), instance("10.0.31.1:80"))
                .await
                .unwrap(),
        );
        expect(&mut events, ChangeKind::Register, &service, "10.0.31.1:80").await;
    }
    assert_eq!(resolver.cached_services(), 0);
    // What is not a valid event is skipped; the stream goes on.
    for (channel, payload) in [
        (
            "sd:{later-0}:events",
            r#"{"event":"rename","addr":"10.0.31.1:80"}"#,
        ),
        (
            "sd:{later-0}:events",
            r#"{"event":"register","addr":"no port"}"#,
        ),
        ("sd:{later-0}:events", "not json"),
        (
            "sd:{not a name}:events",
            r#"{"event":"register","addr":"10.0.31.1:80"}"#,
        ),
        (
            "sd:{later-0}:instances",
            r#"{"event":"register","addr":"10.0.31.1:80"}"#,
        ),
    ] {
        server.cmd::<()>(&["PUBLISH", channel, payload]);
    }
    server.cmd::<()>(&[
        "PUBLISH",
        "sd:{by-hand}:events",
        r#"{"event":"expire","addr":"10.0.31.2:80"}"#,
    ]);
    expect(&mut events, ChangeKind::Expire, "by-hand", "10.0.31.2:80").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_sees_its_own_channels_only() {
    init_tracing();
    let server = RedisServer::start();
    let prefixes = ["sd", "sd:sub", "sdx"];
    let mut streams = Vec::new();
    let mut registries = Vec::new();
    for prefix in prefixes {
        let resolver = no_refresh(&server).prefix(prefix).connect().await.unwrap();
        streams.push((resolver.events().await.unwrap(), resolver));
        let registry = RedisRegistry::builder(server.url())
            .prefix(prefix)
            .connect()
            .await
            .unwrap();
        registries.push(registry);
    }
    let mut held = Vec::new();
    for (i, registry) in registries.iter().enumerate() {
        let addr = format!("10.0.32.{}:80", i + 1);
        held.push(registry.register("shared", instance(&addr)).await.unwrap());
    }
    // A glob character on the wire: matched by `sd:{*}:events` as a service
    // name, refused as one.
    server.cmd::<()>(&[
        "PUBLISH",
        "sd:{*}:events",
        r#"{"event":"register","addr":"10.0.32.9:80"}"#,
    ]);
    // Last: each stream's own marker, so anything else would come before.
    for (i, prefix) in prefixes.iter().enumerate() {
        let channel = format!("{prefix}:{{marker}}:events");
        let payload = format!(r#"{{"event":"update","addr":"10.0.33.{}:80"}}"#, i + 1);
        server.cmd::<()>(&["PUBLISH", &channel, &payload]);
    }
    for (i, (events, _)) in streams.iter_mut().enumerate() {
        let own = format!("10.0.32.{}:80", i + 1);
        expect(events, ChangeKind::Register, "shared", &own).await;
        let marker = format!("10.0.33.{}:80", i + 1);
        expect(events, ChangeKind::Update, "marker", &marker).await;
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_stream_says_missed_and_events_flow_again() {
    init_tracing();
    let mut server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let mut events = resolver.events().await.unwrap();
    let registry = registry(&server).await;
    let _a = registry
        .register("outage", instance("10.0.34.1:80"))
        .await
        .unwrap();
    expect(&mut events, ChangeKind::Register, "outage", "10.0.34.1:80").await;

    server.restart();
    assert_eq!(next(&mut events).await, RegistryEvent::Missed);
    assert_eq!(numpat(&server), 1, "subscribed again");
    // The restarted Redis is empty: the heartbeat registers the instance
    // again; a new one comes too.
    let change = change_of(&mut events, "outage").await;
    assert_eq!(change.kind, ChangeKind::Register);
    let _b = registry
        .register("after", instance("10.0.34.2:80"))
        .await
        .unwrap();
    let change = change_of(&mut events, "after").await;
    assert_eq!(
        (change.kind, change.addr.as_str()),
        (ChangeKind::Register, "10.0.34.2:80")
    );
}

/// A current-thread runtime: while the test publishes, the stream's task
/// cannot run, so everything published is waiting for it at once.
#[tokio::test]
async fn a_reader_that_falls_behind_gets_one_missed_and_the_queue_does_not_grow() {
    init_tracing();
    let server = RedisServer::start();
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber(tracing::Level::DEBUG, false));
    let resolver = no_refresh(&server).connect().await.unwrap();
    let mut events = resolver.events().await.unwrap();
    let published = 3000;
    let mut conn = server.conn();
    let mut pipe = redis::pipe();
    for port in 1..=published {
        let payload = format!(r#"{{"event":"update","addr":"10.0.35.1:{port}"}}"#);
        pipe.cmd("PUBLISH")
            .arg("sd:{flood}:events")
            .arg(payload)
            .ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    eventually("the stream's task to drop events", || async {
        logs.text().contains("fell behind").then_some(())
    })
    .await;
    let debug = format!("{events:?}");
    assert!(debug.contains("queued: 1024"), "{debug}");
    let port = |event: RegistryEvent| match event {
        RegistryEvent::Changed(change) => {
            assert_eq!(change.service.as_str(), "flood");
            let (_, port) = change.addr.rsplit_once(':').unwrap();
            port.parse::<u32>().unwrap()
        }
        other => panic!("expected a change, got {other:?}"),
    };
    for expected in 1..=1024 {
        assert_eq!(port(next(&mut events).await), expected);
    }
    assert_eq!(next(&mut events).await, RegistryEvent::Missed);
    // The reader caught up: the rest comes in order, any further gap
    // marked (should the task refill the queue while this reads).
    let marker = || {
        server.cmd::<()>(&[
            "PUBLISH",
            "sd:{flood}:events",
            r#"{"event":"update","addr":"10.0.35.2:1"}"#,
        ])
    };
    marker();
    let (mut last, mut gaps, mut after_missed) = (1024, 0, false);
    loop {
        match next(&mut events).await {
            RegistryEvent::Changed(change) if change.addr == "10.0.35.2:1" => break,
            RegistryEvent::Missed => {
                assert!(!after_missed, "two Missed in a row");
                (gaps, after_missed) = (gaps + 1, true);
                marker(); // it may have been dropped
            }
            event => {
                let now = port(event);
                assert!(now > last && now <= published, "{now} after {last}");
                (last, after_missed) = (now, false);
            }
        }
    }
    let text = logs.text();
    assert_eq!(text.matches("fell behind").count(), 1 + gaps, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_ends_its_task_and_connection() {
    init_tracing();
    let server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let clients = server.clients().len();
    for _ in 0..3 {
        let events = resolver.events().await.unwrap();
        assert_eq!(numpat(&server), 1);
        assert!(metrics.num_alive_tasks() > baseline);
        drop(events);
        eventually("the stream's task and connection to end", || async {
            let ended = metrics.num_alive_tasks() <= baseline
                && numpat(&server) == 0
                && server.clients().len() == clients;
            ended.then_some(())
        })
        .await;
    }
    // A future dropped before it completes leaves nothing either.
    let _ = tokio::time::timeout(Duration::from_micros(1), resolver.events()).await;
    eventually("nothing left by the dropped future", || async {
        let ended = metrics.num_alive_tasks() <= baseline
            && numpat(&server) == 0
            && server.clients().len() == clients;
        ended.then_some(())
    })
    .await;
    // The resolver is unharmed.
    assert!(resolver.resolve(&name("still")).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_or_dropping_the_resolver_ends_the_stream() {
    init_tracing();
    let server = RedisServer::start();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();

    let resolver = no_refresh(&server).connect().await.unwrap();
    let mut events = resolver.events().await.unwrap();
    resolver.shutdown().await;
    let end = tokio::time::timeout(DEADLINE, events.next()).await;
    assert_eq!(end.expect("the stream ends"), None);
    assert!(matches!(
        resolver.events().await,
        Err(ResolveError::Shutdown)
    ));

    let resolver = no_refresh(&server).connect().await.unwrap();
    let mut events = resolver.events().await.unwrap();
    drop(resolver);
    let end = tokio::time::timeout(DEADLINE, events.next()).await;
    assert_eq!(end.expect("the stream ends"), None);

    eventually("every task and connection to end", || async {
        let ended = metrics.num_alive_tasks() <= baseline
            && numpat(&server) == 0
            && server.clients().is_empty();
        ended.then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_hertz_schema_has_no_events() {
    init_tracing();
    let server = RedisServer::start();
    let resolver = RedisResolver::builder(server.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let clients = server.clients().len();
    let error = resolver.events().await.unwrap_err();
    assert!(
        matches!(error, ResolveError::EventsUnsupported),
        "{error:?}"
    );
    assert!(error.to_string().contains("Hertz"), "{error}");
    assert_eq!(server.clients().len(), clients, "no connection opened");
}

#[tokio::test]
async fn events_fail_when_redis_is_unreachable_then() {
    init_tracing();
    let mut server = RedisServer::start();
    let resolver = no_refresh(&server).connect().await.unwrap();
    server.stop();
    let error = resolver.events().await.unwrap_err();
    assert!(matches!(error, ResolveError::Connect { .. }), "{error:?}");
}

/// Redis compares a subscribed pattern literally with the user's channel
/// rules: `&sd:*` lets a user subscribe to every events channel, not
/// `PSUBSCRIBE sd:{*}:events`, as the docs of `events` say.
#[tokio::test]
async fn the_redis_user_needs_psubscribe_and_the_pattern_itself() {
    init_tracing();
    let server = RedisServer::start();
    let broad = read_only_user(&server, "broad", true);
    server.cmd::<()>(&["ACL", "SETUSER", "broad", "+psubscribe"]);
    let resolver = RedisResolver::connect(broad).await.unwrap();
    match resolver.events().await {
        Err(ResolveError::Connect { source, .. }) => {
            assert_eq!(source.code(), Some("NOPERM"), "{source}")
        }
        other => panic!("expected NOPERM, got {other:?}"),
    }
    let narrow = read_only_user(&server, "narrow", true);
    server.cmd::<()>(&["ACL", "SETUSER", "narrow", "+psubscribe", "&sd:{*}:events"]);
    let resolver = RedisResolver::connect(narrow).await.unwrap();
    let mut events = resolver.events().await.unwrap();
    server.cmd::<()>(&[
        "PUBLISH",
        "sd:{acl}:events",
        r#"{"event":"register","addr":"10.0.36.1:80"}"#,
    ]);
    expect(&mut events, ChangeKind::Register, "acl", "10.0.36.1:80").await;
}
