//! The console's actions with the token, by HTTP: what each writes in
//! Redis, and that the console's reads then show it.

use serde_json::{json, Value};

use crate::support::cli::{lines, spawn, wait_for_line};
use crate::support::console::{action_path, register, start_console, Console, TOKEN};
use crate::support::{eventually, registry, RedisServer};

const A: &str = "127.0.0.1:7001";

/// Waits until the console shows `addr` of `orders` with `check` true.
async fn wait_instance(console: &Console, addr: &str, what: &str, check: impl Fn(&Value) -> bool) {
    eventually(what, || async {
        // 404 until the console has read the service.
        let reply = console.get("/api/services/orders").await;
        let detail = (reply.status == 200).then(|| reply.json())?;
        let instances = detail["instances"].as_array()?.clone();
        let found = instances.into_iter().find(|i| i["addr"] == json!(addr))?;
        check(&found).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_weight_and_undrain_write_overrides_the_reads_then_show() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _kept = [
        register(&registry, "orders", A, 10, &[]).await,
        register(&registry, "orders", "127.0.0.1:7002", 10, &[]).await,
    ];
    let console = start_console(&redis, &["--token", TOKEN]);
    let overrides = || Console::overrides(&redis, "orders");
    let ok = json!({"ok": true, "registered": true});

    let reply = console
        .post(&action_path("orders", A, "drain"), Some(TOKEN), "")
        .await;
    assert_eq!(reply.json(), ok, "{reply:?}");
    assert_eq!(overrides(), [(A.to_owned(), r#"{"weight":0}"#.to_owned())]);
    wait_instance(&console, A, "A drained", |i| {
        i["weight"] == json!(0)
            && i["override"] == json!({"weight": 0})
            && i["health"] == json!("drained")
    })
    .await;
    eventually("the summary to count it drained", || async {
        let services = console.get_json("/api/services").await;
        let orders = &services["services"][0];
        (orders["drained"] == json!(1) && orders["total_weight"] == json!(10)).then_some(())
    })
    .await;

    let path = action_path("orders", A, "weight");
    let reply = console.post(&path, Some(TOKEN), r#"{"weight":7}"#).await;
    assert_eq!(reply.json(), ok, "{reply:?}");
    assert_eq!(overrides(), [(A.to_owned(), r#"{"weight":7}"#.to_owned())]);
    wait_instance(&console, A, "A at weight 7", |i| {
        i["weight"] == json!(7)
            && i["registered_weight"] == json!(10)
            && i["health"] == json!("live")
    })
    .await;

    let reply = console
        .post(&action_path("orders", A, "undrain"), Some(TOKEN), "")
        .await;
    assert_eq!(reply.json(), ok, "{reply:?}");
    assert_eq!(overrides(), []);
    wait_instance(&console, A, "A as registered", |i| {
        i["weight"] == json!(10) && i["override"].is_null()
    })
    .await;

    // The events feed has the overrides, as the registry announced them.
    let events = eventually("three override events", || async {
        let body = console.get_json("/api/events").await;
        let overrides: Vec<Value> = body["events"]
            .as_array()?
            .iter()
            .filter(|e| e["event"] == json!("override") && e["addr"] == json!(A))
            .cloned()
            .collect();
        (overrides.len() >= 3).then_some(overrides)
    })
    .await;
    assert!(
        events.iter().all(|e| e["source"] == json!("registry")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_address_is_one_percent_encoded_segment() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let addr = "[::1]:7002";
    let _kept = register(&registry, "orders", addr, 10, &[]).await;
    let console = start_console(&redis, &["--token", TOKEN]);
    let path = action_path("orders", addr, "drain");
    assert_eq!(
        path,
        "/api/services/orders/instances/%5B%3A%3A1%5D%3A7002/drain"
    );
    let reply = console.post(&path, Some(TOKEN), "").await;
    assert_eq!(
        reply.json(),
        json!({"ok": true, "registered": true}),
        "{reply:?}"
    );
    assert_eq!(
        Console::overrides(&redis, "orders"),
        [(addr.to_owned(), r#"{"weight":0}"#.to_owned())]
    );
    wait_instance(&console, addr, "[::1] drained", |i| i["weight"] == json!(0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_removes_an_ownerless_entry_at_once() {
    let redis = RedisServer::start();
    let console = start_console(&redis, &["--token", TOKEN]);
    // A crashed sidecar: its entry stays for its lease (a minute).
    let addr = "127.0.0.1:7003";
    let args = [
        "register",
        "orders",
        addr,
        "--ttl",
        "60",
        "--heartbeat",
        "20",
    ];
    let mut sidecar = spawn(&redis.url(), &args);
    let out = lines(&mut sidecar);
    tokio::task::block_in_place(|| wait_for_line(&out, "registered"));
    sidecar.kill().expect("SIGKILL the sidecar");
    let _ = sidecar.wait();
    wait_instance(&console, addr, "the entry listed", |_| true).await;

    let path = action_path("orders", addr, "deregister");
    let reply = console.post(&path, Some(TOKEN), "").await;
    assert_eq!(
        (reply.status, &reply.json()["ok"]),
        (200, &json!(true)),
        "{reply:?}"
    );
    assert!(
        Console::entries(&redis, "orders").is_empty(),
        "entry still in Redis"
    );
    eventually("the console to drop it", || async {
        let reply = console.get("/api/services/orders").await;
        let listed = reply.status == 200
            && reply.json()["instances"]
                .as_array()
                .is_some_and(|list| list.iter().any(|i| i["addr"] == json!(addr)));
        (!listed).then_some(())
    })
    .await;
    let again = console.post(&path, Some(TOKEN), "").await;
    assert_eq!(again.status, 404, "a second deregister: {again:?}");
}
