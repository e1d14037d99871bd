//! The console's page in headless chromium: what it lists, how fast it
//! follows the registry, its actions, and that registry data stays text.
//! Each scenario saves screenshots (see `support::browser::SCREENSHOTS`).

use std::time::{Duration, Instant};

use redis_discovery::balance::{Balance, Pick, WeightedRandom};
use redis_discovery::{RedisRegistry, RedisResolver, Resolve, ServiceName};
use serde_json::json;

use crate::support::browser::{testid, Browser};
use crate::support::cli::{lines, spawn, wait_for_line};
use crate::support::console::{register, start_console, Console, TOKEN};
use crate::support::{eventually, registry, RedisServer};

/// The row of `service` in the services table.
fn service_row(service: &str) -> String {
    format!(
        r#"{} tr[data-service="{service}"]"#,
        testid("services-table")
    )
}

/// The row of `addr` in the instances table, or a cell/button in it.
fn instance(addr: &str, inner: &str) -> String {
    format!(
        r#"{} tr[data-addr="{addr}"] {inner}"#,
        testid("instances-table")
    )
    .trim_end()
    .to_owned()
}

/// Seconds in a lease text like `12s` (`1m 5s` and `65 s` read too).
fn seconds(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'm' | 's' | 'h' if !number.is_empty() => {
                let n: u64 = number.parse().ok()?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
                any = true;
            }
            _ => {}
        }
    }
    any.then_some(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_page_lists_services_and_shows_a_new_one_within_a_second() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let mut kept = vec![
        register(&registry, "orders", "127.0.0.1:7001", 10, &[]).await,
        register(&registry, "orders", "127.0.0.1:7002", 20, &[]).await,
        register(&registry, "payments", "127.0.0.1:7101", 5, &[]).await,
    ];
    // Re-reads once a minute only: a new service must come by its event.
    let console = start_console(&redis, &["--refresh", "60s"]);
    let browser = Browser::start().await;
    browser.goto(&console.url("/#/")).await;
    // Gone if the page reloads: the new services must come without one.
    browser.js("window.__loaded_once = true;", vec![]).await;
    for service in ["orders", "payments"] {
        browser.wait_present(service, &service_row(service)).await;
    }
    let live = format!("{} {}", service_row("orders"), testid("svc-live"));
    browser
        .wait_text("orders: 2 live", &live, |t| t == "2")
        .await;
    let weight = format!("{} {}", service_row("orders"), testid("svc-weight"));
    browser
        .wait_text("orders: weight 30", &weight, |t| t == "30")
        .await;
    let status = testid("connection-status");
    browser
        .wait_text("the stream live", &status, |t| t == "live")
        .await;
    assert!(
        browser.visible(&testid("read-only-banner")).await,
        "no token: read-only banner"
    );
    let banner = browser
        .text(&testid("read-only-banner"))
        .await
        .unwrap_or_default();
    assert!(banner.contains("Read-only"), "banner: {banner:?}");
    browser.screenshot("services").await;

    // From the registration's completion to the row on the open page.
    let mut latencies = Vec::new();
    for service in ["inventory", "shipping", "billing"] {
        kept.push(register(&registry, service, "127.0.0.1:7201", 10, &[]).await);
        let registered = Instant::now();
        browser
            .wait_present(&format!("{service} live"), &service_row(service))
            .await;
        latencies.push(registered.elapsed());
    }
    browser.screenshot("services-live").await;
    let same_page = browser
        .js("return window.__loaded_once === true;", vec![])
        .await;
    assert_eq!(same_page, json!(true), "the page reloaded");
    println!("new service to row on the page: {latencies:?}");
    // The issue's target is 1 s. The median of three is asserted: a busy
    // machine may stall one measurement, a design that waits for the
    // re-read (a minute here) fails all three.
    latencies.sort();
    assert!(
        latencies[1] <= Duration::from_secs(1),
        "a new service took {latencies:?} to show (median over 1 s)"
    );
    assert_eq!(browser.alert().await, None);
    browser.close().await;
}

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
async fn a_killed_sidecar_leaves_the_page_after_its_lease_and_the_events_tell_it() {
    let redis = RedisServer::start();
    let addr = "127.0.0.1:7401";
    let console = start_console(&redis, &["--token", TOKEN, "--refresh", "500ms"]);
    let browser = Browser::start().await;
    browser.goto(&console.url("/#/events")).await;
    browser
        .wait_text("the stream live", &testid("connection-status"), |t| {
            t == "live"
        })
        .await;

    let mut sidecar = spawn(
        &redis.url(),
        &[
            "register",
            "billing",
            addr,
            "--ttl",
            "2",
            "--heartbeat",
            "1",
        ],
    );
    let out = lines(&mut sidecar);
    tokio::task::block_in_place(|| wait_for_line(&out, "registered"));
    browser.goto(&console.url("/#/service/billing")).await;
    browser
        .wait_present("the sidecar's instance", &instance(addr, ""))
        .await;
    let drain = console
        .post(
            &crate::support::console::action_path("billing", addr, "drain"),
            Some(TOKEN),
            "",
        )
        .await;
    assert_eq!(
        drain.json(),
        json!({"ok": true, "registered": true}),
        "{drain:?}"
    );
    let weight = instance(addr, &testid("inst-weight"));
    browser
        .wait_text("the drain on the page", &weight, |t| t == "0")
        .await;
    browser.screenshot("sidecar-drained").await;

    // A crash: no deregistration, the lease runs out.
    sidecar.kill().expect("SIGKILL the sidecar");
    let killed = Instant::now();
    browser
        .wait_gone("the crashed instance to go", &instance(addr, ""))
        .await;
    println!(
        "killed sidecar (2 s lease) gone from the page after {:?}",
        killed.elapsed()
    );
    browser.screenshot("sidecar-expired").await;

    browser.click(&testid("nav-events")).await;
    let event = |kind: &str| {
        format!(
            r#"{} li[data-event="{kind}"][data-service="billing"][data-addr="{addr}"]"#,
            testid("events-list")
        )
    };
    for kind in ["register", "override"] {
        browser
            .wait_present(&format!("a {kind} event"), &event(kind))
            .await;
    }
    let gone = format!("{}, {}", event("expire"), event("deregister"));
    browser
        .wait_present("an expire or deregister event", &gone)
        .await;
    browser.screenshot("events").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_data_is_shown_as_text_never_run() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let script = "<script>alert(1)</script>";
    let image = r#"<img src=x onerror="window.__xss=1">"#;
    let addr = "127.0.0.1:7501";
    let _kept = register(
        &registry,
        "web",
        addr,
        10,
        &[("note", script), ("pic", image)],
    )
    .await;
    let console = start_console(&redis, &[]);
    let browser = Browser::start().await;
    browser.goto(&console.url("/#/service/web")).await;
    let tags = instance(addr, &format!("{} span.tag", testid("inst-tags")));
    browser.wait_count("both tags", &tags, |n| n == 2).await;
    let shown = browser.texts(&tags).await;
    assert!(shown.contains(&format!("note={script}")), "tags: {shown:?}");
    assert!(shown.contains(&format!("pic={image}")), "tags: {shown:?}");
    browser.screenshot("tags-as-text").await;

    assert_eq!(browser.alert().await, None, "an alert opened");
    let injected = browser
        .js(
            "return {
                xss: window.__xss === undefined ? null : window.__xss,
                scripts: Array.from(document.scripts).filter(s => s.textContent.includes('alert(1)')).length,
                images: document.querySelectorAll('img[src=\"x\"]').length,
            };",
            vec![],
        )
        .await;
    assert_eq!(
        injected,
        json!({"xss": null, "scripts": 0, "images": 0}),
        "markup injected"
    );
    browser.close().await;
}

/// The lease texts the page prints read as seconds.
#[test]
fn lease_texts_read_as_seconds() {
    assert_eq!(seconds("12s"), Some(12));
    assert_eq!(seconds("1m 5s"), Some(65));
    assert_eq!(seconds("expired"), None);
}
