//! The operator's actions from the page, in headless chromium: refused
//! without the token, applied with it, and seen by a resolver.

use std::time::Duration;

use redis_discovery::balance::{Balance, Pick, WeightedRandom};
use redis_discovery::{RedisRegistry, RedisResolver, Resolve, ServiceName};
use serde_json::json;

use crate::hooks::{instance, seconds};
use crate::support::browser::{testid, Browser};
use crate::support::cli::{lines, spawn, wait_for_line};
use crate::support::console::{action_path, register, start_console, Console, TOKEN};
use crate::support::{eventually, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_refused_without_the_token_and_with_it_stops_the_resolver_picking() {
    let redis = RedisServer::start();
    // Long leases renewed rarely: the countdown visibly runs between renewals.
    let registry = RedisRegistry::builder(redis.url())
        .lease_ttl(Duration::from_secs(60))
        .heartbeat_interval(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let (a, b) = ("127.0.0.1:7001", "127.0.0.1:7002");
    let _kept = [
        register(&registry, "orders", a, 10, &[("zone", "a")]).await,
        register(&registry, "orders", b, 10, &[]).await,
    ];
    let resolver = RedisResolver::builder(redis.url()).connect().await.unwrap();
    let weights = |snapshot: &redis_discovery::Snapshot| -> Vec<(String, u32)> {
        let mut all: Vec<_> = snapshot
            .instances()
            .iter()
            .map(|i| (i.addr().to_owned(), i.weight()))
            .collect();
        all.sort();
        all
    };
    let orders = ServiceName::new("orders").unwrap();
    let first = resolver.resolve(&orders).await.unwrap();
    assert_eq!(weights(&first), [(a.to_owned(), 10), (b.to_owned(), 10)]);

    let console = start_console(&redis, &["--token", TOKEN]);
    let browser = Browser::start().await;
    browser.goto(&console.url("/#/service/orders")).await;
    browser
        .wait_text("the title", &testid("service-title"), |t| {
            t.contains("orders")
        })
        .await;
    let weight = instance(a, &testid("inst-weight"));
    browser
        .wait_text("a's weight", &weight, |t| t == "10")
        .await;
    let tags = instance(a, &format!("{} span.tag", testid("inst-tags")));
    browser.wait_text("a's tag", &tags, |t| t == "zone=a").await;
    assert!(
        !browser.visible(&testid("read-only-banner")).await,
        "a token: no banner"
    );

    // The lease countdown runs: a later reading is smaller.
    let lease = instance(a, &testid("inst-lease"));
    let start = browser
        .wait_text("a's lease", &lease, |t| seconds(t).is_some())
        .await;
    let before = seconds(&start).unwrap();
    assert!((1..=60).contains(&before), "lease {start:?}");
    browser
        .wait_text("the lease to count down", &lease, |t| {
            seconds(t).is_some_and(|s| s < before)
        })
        .await;
    browser.screenshot("lease-countdown").await;

    // No token in the page: refused, with the reason, nothing written.
    browser.click(&instance(a, &testid("action-drain"))).await;
    let message = testid("action-message");
    let refusal = browser
        .wait_text("the refusal", &message, |t| !t.is_empty())
        .await;
    assert!(refusal.contains("token"), "action-message: {refusal:?}");
    browser.screenshot("drain-refused").await;
    assert_eq!(Console::overrides(&redis, "orders"), []);
    assert_eq!(
        browser.text(&weight).await.as_deref().map(str::trim),
        Some("10")
    );

    // With the token typed in: drained, on the page and for the resolver.
    browser.type_into(&testid("token-input"), TOKEN).await;
    browser.click(&testid("token-save")).await;
    let kept = browser
        .js(
            "const input = document.querySelector(arguments[0]);
             return { type: input.type, local: JSON.stringify(localStorage),
                      session: JSON.stringify(sessionStorage) };",
            vec![json!(testid("token-input"))],
        )
        .await;
    assert_eq!(kept["type"], json!("password"), "{kept}");
    assert!(
        kept["session"].as_str().is_some_and(|s| s.contains(TOKEN)),
        "{kept}"
    );
    assert!(
        !kept["local"].as_str().unwrap_or_default().contains(TOKEN),
        "token in localStorage"
    );
    browser.click(&instance(a, &testid("action-drain"))).await;
    browser
        .wait_text("a's weight 0", &weight, |t| t == "0")
        .await;
    let health = instance(a, &testid("inst-health"));
    browser
        .wait_text("a drained", &health, |t| t.contains("drain"))
        .await;
    browser.screenshot("drained").await;
    assert_eq!(
        Console::overrides(&redis, "orders"),
        [(a.to_owned(), r#"{"weight":0}"#.to_owned())]
    );
    let drained = eventually("the resolver to serve a with weight 0", || async {
        let snapshot = resolver.resolve(&orders).await.ok()?;
        (weights(&snapshot) == [(a.to_owned(), 0), (b.to_owned(), 10)]).then_some(snapshot)
    })
    .await;
    let picker = WeightedRandom::new().build(drained.instances());
    let picked_a = (0..10_000)
        .filter_map(|_| picker.pick(None, 0))
        .filter(|&i| drained.instances()[i].addr() == a)
        .count();
    assert_eq!(picked_a, 0, "a drained instance was picked");
    let message_text = browser.text(&message).await.unwrap_or_default();
    assert!(
        !message_text.contains("Refused"),
        "after the drain: {message_text:?}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_undrain_and_deregister_from_the_page() {
    let redis = RedisServer::start();
    let registry = crate::support::registry(&redis).await;
    let a = "127.0.0.1:7001";
    let _kept = register(&registry, "orders", a, 10, &[]).await;
    // A crashed sidecar: its entry stays for its lease (a minute).
    let gone = "127.0.0.1:7003";
    let args = [
        "register",
        "orders",
        gone,
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

    let console = start_console(&redis, &["--token", TOKEN]);
    let browser = Browser::start().await;
    browser.goto(&console.url("/#/service/orders")).await;
    browser
        .wait_present("the crashed instance", &instance(gone, ""))
        .await;
    let chart = browser
        .js(
            "const c = document.querySelector(arguments[0]);
             return c ? c.tagName.toLowerCase() : null;",
            vec![json!(testid("weight-chart"))],
        )
        .await;
    assert_eq!(chart, json!("svg"), "the weight chart");
    browser.type_into(&testid("token-input"), TOKEN).await;
    browser.click(&testid("token-save")).await;

    let weight = instance(a, &testid("inst-weight"));
    browser.click(&instance(a, &testid("action-weight"))).await;
    browser.type_into(&testid("weight-input"), "7").await;
    browser.click(&testid("weight-apply")).await;
    browser
        .wait_text("a at weight 7", &weight, |t| t == "7")
        .await;
    let shown = browser.text(&instance(a, &testid("inst-override"))).await;
    assert!(
        shown.is_some(),
        "no inst-override beside the overridden weight"
    );
    browser.screenshot("weight-set").await;
    assert_eq!(
        Console::overrides(&redis, "orders"),
        [(a.to_owned(), r#"{"weight":7}"#.to_owned())]
    );

    browser.click(&instance(a, &testid("action-undrain"))).await;
    browser
        .wait_text("a as registered", &weight, |t| t == "10")
        .await;
    assert_eq!(Console::overrides(&redis, "orders"), []);
    assert_eq!(
        browser.count(&instance(a, &testid("inst-override"))).await,
        0
    );

    browser
        .click(&instance(gone, &testid("action-deregister")))
        .await;
    browser.click(&testid("confirm-yes")).await;
    browser
        .wait_gone("the crashed instance to go", &instance(gone, ""))
        .await;
    browser.screenshot("deregistered").await;
    assert_eq!(Console::entries(&redis, "orders"), [a]);
    let message = browser
        .text(&testid("action-message"))
        .await
        .unwrap_or_default();
    assert!(
        !message.is_empty() && !message.contains("Refused"),
        "action-message after the deregister: {message:?}"
    );

    // An override for an address with no instance waits, and says so.
    let waiting = "127.0.0.1:7999";
    let path = action_path("orders", waiting, "drain");
    let reply = console.post(&path, Some(TOKEN), "").await;
    assert_eq!(reply.json()["registered"], json!(false), "{reply:?}");
    let pending = testid("pending-overrides");
    browser
        .wait_text("the pending override", &pending, |t| t.contains(waiting))
        .await;
    browser.screenshot("pending-override").await;
    browser.close().await;
}
