//! The console's read API and its live stream, against a real Redis and
//! registrations made with the library's registry.

use std::time::{Duration, Instant};

use redis_discovery::{Override, RedisRegistry, Registration};
use serde_json::{json, Value};

use crate::support::console::{now_ms, register, start_console, Console};
use crate::support::{eventually, registry, RedisServer, DEADLINE};

/// The one entry of `list` whose `key` is `value`.
fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| v[key] == json!(value))
}

/// A `now_ms` the console stamped: this host's clock, within a minute.
fn assert_now(body: &Value) {
    let now = body["now_ms"].as_u64().expect("now_ms is a number");
    assert!(now.abs_diff(now_ms()) < 60_000, "now_ms {now} is off");
}

/// Registers a new instance of `service` (ports from `port` + 1) every
/// 2 s until the console's feed lists one as the registry's event: the
/// console may subscribe after it says it listens, and hears only what
/// is published after that. The registrations, to keep.
async fn until_subscribed(
    console: &Console,
    registry: &RedisRegistry,
    service: &str,
    mut port: u16,
) -> Vec<Registration> {
    let mut kept = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        port += 1;
        let addr = format!("127.0.0.1:{port}");
        kept.push(register(registry, service, &addr, 10, &[]).await);
        let heard = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                let events = console.get_json("/api/events").await;
                let listed = events["events"].as_array().is_some_and(|list| {
                    list.iter()
                        .any(|e| e["addr"] == json!(addr) && e["source"] == json!("registry"))
                });
                if listed {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if heard.is_ok() {
            return kept;
        }
        assert!(
            Instant::now() < deadline,
            "no registration of {service} in /api/events as the registry's within {DEADLINE:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_describes_the_console_and_its_registry() {
    let redis = RedisServer::start();
    let console = start_console(&redis, &[]);
    let info = console.get_json("/api/info").await;
    assert_eq!(info["version"], json!(env!("CARGO_PKG_VERSION")), "{info}");
    assert_eq!(info["read_only"], json!(true), "no token: read-only");
    assert_eq!(info["schema"], json!("native"));
    assert_eq!(info["prefix"], json!("sd"));
    assert_eq!(info["redis"], json!(redis.url()));
    assert_eq!(info["overrides"], json!(true));
    assert_now(&info);

    let health = console.get("/healthz").await;
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    let page = console.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<html")
            || page.body.contains("<!doctype")
            || page.body.contains("<!DOCTYPE")
    );
    for asset in ["/assets/app.js", "/assets/style.css", "/assets/favicon.svg"] {
        assert_eq!(console.get(asset).await.status, 200, "GET {asset}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_a_service_show_instances_weights_overrides_and_leases() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = register(&registry, "orders", "127.0.0.1:7001", 20, &[("zone", "a")]).await;
    let _b = register(&registry, "orders", "127.0.0.1:7002", 10, &[]).await;
    let _p = register(&registry, "payments", "127.0.0.1:7101", 5, &[]).await;
    registry
        .set_override("orders", "127.0.0.1:7002", Override::drain())
        .await
        .unwrap();
    // An override waiting for its instance.
    registry
        .set_override("orders", "127.0.0.1:7009", Override::Weight(5))
        .await
        .unwrap();
    let console = start_console(&redis, &[]);

    let services = eventually("both services listed", || async {
        let body = console.get_json("/api/services").await;
        (body["services"].as_array()?.len() == 2).then_some(body)
    })
    .await;
    assert_now(&services);
    let names: Vec<&Value> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["service"])
        .collect();
    assert_eq!(
        names,
        [&json!("orders"), &json!("payments")],
        "sorted by name"
    );
    let orders = find(&services["services"], "service", "orders").unwrap();
    assert_eq!(orders["live"], json!(2), "{orders}");
    assert_eq!(orders["drained"], json!(1), "{orders}");
    assert_eq!(orders["total_weight"], json!(20), "{orders}");
    assert!(
        orders["last_change_ms"].is_u64() || orders["last_change_ms"].is_null(),
        "{orders}"
    );

    let detail = console.get_json("/api/services/orders").await;
    assert_now(&detail);
    assert_eq!(detail["service"], json!("orders"));
    let a = find(&detail["instances"], "addr", "127.0.0.1:7001").expect("7001 listed");
    assert_eq!(a["weight"], json!(20), "{a}");
    assert!(
        a["registered_weight"] == json!(20) || a["registered_weight"].is_null(),
        "{a}"
    );
    assert_eq!(a["override"], Value::Null, "{a}");
    assert_eq!(a["tags"], json!({"zone": "a"}), "{a}");
    assert_eq!(a["health"], json!("live"), "{a}");
    // A 3 s lease, renewed every 500 ms.
    let lease = a["lease_expires_ms"].as_u64().expect("a lease deadline");
    let now = detail["now_ms"].as_u64().unwrap();
    assert!(
        lease > now && lease <= now + 3_500,
        "lease {lease}, now {now}"
    );
    let b = find(&detail["instances"], "addr", "127.0.0.1:7002").expect("7002 listed");
    assert_eq!(b["weight"], json!(0), "{b}");
    assert_eq!(b["registered_weight"], json!(10), "{b}");
    assert_eq!(b["override"], json!({"weight": 0}), "{b}");
    assert_eq!(b["health"], json!("drained"), "{b}");
    assert_eq!(
        detail["pending_overrides"],
        json!([{"addr": "127.0.0.1:7009", "override": {"weight": 5}}])
    );

    let unknown = console.get("/api/services/nosuch").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.error(), "unknown service nosuch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_what_the_registry_published_newest_first() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let console = start_console(&redis, &[]);
    let first = until_subscribed(&console, &registry, "inventory", 7200).await;
    let addr = "127.0.0.1:7250";
    let _kept = (first, register(&registry, "inventory", addr, 10, &[]).await);
    registry
        .set_override("inventory", addr, Override::drain())
        .await
        .unwrap();
    let events = eventually("the override in /api/events", || async {
        let body = console.get_json("/api/events").await;
        let newest = body["events"].as_array()?.first()?.clone();
        (newest["event"] == json!("override")).then_some(body)
    })
    .await;
    assert_now(&events);
    let list = events["events"].as_array().unwrap();
    let newest = &list[0];
    assert_eq!(newest["service"], json!("inventory"), "{newest}");
    assert_eq!(newest["addr"], json!(addr), "{newest}");
    assert_eq!(newest["source"], json!("registry"), "{newest}");
    assert!(
        newest["at_ms"].is_u64() && newest["id"].is_u64(),
        "{newest}"
    );
    let register_event = list
        .iter()
        .find(|e| e["event"] == json!("register") && e["addr"] == json!(addr))
        .expect("its registration listed");
    assert!(
        register_event["id"].as_u64() < newest["id"].as_u64(),
        "newest first"
    );
    let ids: Vec<u64> = list.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let one = console.get_json("/api/events?limit=1").await;
    assert_eq!(one["events"].as_array().map(Vec::len), Some(1), "{one}");

    // The stream carries each event as it happens.
    let mut stream = console.stream().await;
    assert_eq!(stream.next().await.name, "hello");
    registry
        .set_override("inventory", addr, Override::Weight(3))
        .await
        .unwrap();
    let event = stream
        .next_matching("registry", |e| e["addr"] == json!(addr))
        .await;
    assert_eq!(event.data["event"], json!("override"), "{:?}", event.data);
    assert_eq!(
        event.data["service"],
        json!("inventory"),
        "{:?}",
        event.data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_says_hello_first_then_tells_of_a_new_service() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let console = start_console(&redis, &[]);
    let mut stream = console.stream().await;
    let hello = stream.next().await;
    assert_eq!(hello.name, "hello", "the first event: {hello:?}");
    assert_eq!(hello.data["read_only"], json!(true), "{hello:?}");
    assert_now(&hello.data);

    // Registered again every 3 s until the summary comes: the console's
    // subscription may not be up the moment the stream answers.
    let (mut services, mut service) = (None, None);
    let mut kept = Vec::new();
    let mut port = 7300;
    let mut next_registration = Instant::now();
    let deadline = Instant::now() + DEADLINE;
    while services.is_none() || service.is_none() {
        assert!(
            Instant::now() < deadline,
            "within {DEADLINE:?}: services event {services:?}, service event {service:?}"
        );
        if services.is_none() && Instant::now() >= next_registration {
            port += 1;
            let addr = format!("127.0.0.1:{port}");
            kept.push(register(&registry, "shipping", &addr, 10, &[]).await);
            next_registration = Instant::now() + Duration::from_secs(3);
        }
        // Cancel-safe: a partly read event stays in the stream's buffer.
        let Ok(event) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await
        else {
            continue;
        };
        match event.name.as_str() {
            "services" if find(&event.data["services"], "service", "shipping").is_some() => {
                services = Some(event)
            }
            "service" if event.data["service"] == json!("shipping") => service = Some(event),
            _ => {}
        }
    }
    let (services, service) = (services.unwrap(), service.unwrap());
    assert_now(&services.data);
    let shipping = find(&services.data["services"], "service", "shipping").unwrap();
    assert!(shipping["live"].as_u64() >= Some(1), "{shipping}");
    // The same body as GET /api/services/shipping.
    assert_now(&service.data);
    let listed = service.data["instances"].as_array().map_or(0, Vec::len);
    assert!(listed >= 1, "{:?}", service.data);
    assert!(
        service.data["pending_overrides"].is_array(),
        "{:?}",
        service.data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_feed_keeps_the_latest_500_and_serves_200_by_default() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let console = start_console(&redis, &[]);
    let first = until_subscribed(&console, &registry, "inventory", 7600).await;
    let addr = "127.0.0.1:7650";
    let _kept = (first, register(&registry, "inventory", addr, 10, &[]).await);
    // 600 overrides, each a change: 600 events.
    for weight in 1..=600 {
        registry
            .set_override("inventory", addr, Override::Weight(weight))
            .await
            .unwrap();
    }
    // Published after the overrides, so heard after them all.
    let last = "127.0.0.1:7651";
    let _last = register(&registry, "inventory", last, 10, &[]).await;
    let all = eventually("the last registration in the feed", || async {
        let body = console.get_json("/api/events?limit=1000").await;
        (body["events"][0]["addr"] == json!(last)).then_some(body)
    })
    .await;
    assert_eq!(
        all["events"].as_array().map(Vec::len),
        Some(500),
        "limit=1000 gives the max"
    );
    let default = console.get_json("/api/events").await;
    assert_eq!(
        default["events"].as_array().map(Vec::len),
        Some(200),
        "the default limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_64_streams_are_served_at_once() {
    let redis = RedisServer::start();
    let console = start_console(&redis, &[]);
    let mut open = Vec::new();
    for _ in 0..64 {
        let mut stream = console.stream().await;
        assert_eq!(stream.next().await.name, "hello");
        open.push(stream);
    }
    let refused = console.try_stream().await.err();
    assert_eq!(refused, Some(503), "the 65th stream");
    // A closed one frees its place.
    drop(open.pop());
    let mut again = eventually("a place for a new stream", || async {
        console.try_stream().await.ok()
    })
    .await;
    assert_eq!(again.next().await.name, "hello");
}
