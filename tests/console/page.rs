//! The console's page in headless chromium: what it lists, how fast it
//! follows the registry, leases running out, the events feed, and that
//! registry data stays text.
//! Each scenario saves screenshots (see `support::browser::SCREENSHOTS`).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::hooks::{event_item, instance, service_row};
use crate::support::browser::{testid, Browser};
use crate::support::cli::{lines, spawn, wait_for_line};
use crate::support::console::{register, start_console, Console, TOKEN};
use crate::support::{eventually, registry, RedisServer};

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

    // The filter keeps the matching rows; a column header sorts by it.
    browser.type_into(&testid("services-filter"), "pay").await;
    eventually("only payments shown", || async {
        (shown_services(&browser).await == ["payments"]).then_some(())
    })
    .await;
    browser.type_into(&testid("services-filter"), "").await;
    let all = eventually("every service shown again", || async {
        let shown = shown_services(&browser).await;
        (shown.len() == 5).then_some(shown)
    })
    .await;
    assert_eq!(
        all,
        ["billing", "inventory", "orders", "payments", "shipping"],
        "by name first"
    );
    browser.click(r#"th[data-sort="weight"]"#).await;
    let by_weight = eventually("the rows sorted by weight", || async {
        let shown = shown_services(&browser).await;
        let ends = (shown.first()?.clone(), shown.last()?.clone());
        let sorted = ends == ("orders".into(), "payments".into())
            || ends == ("payments".into(), "orders".into());
        sorted.then_some(shown)
    })
    .await;
    println!("sorted by weight: {by_weight:?}");
    browser.screenshot("services-sorted").await;
    // The issue's target is 1 s. The median of three is asserted: a busy
    // machine may stall one measurement, a design that waits for the
    // re-read (a minute here) fails all three.
    latencies.sort();
    assert!(
        latencies[1] <= Duration::from_secs(1),
        "a new service took {latencies:?} to show (median over 1 s)"
    );
    browser.close().await;
}

/// The services of the rows shown (not filtered out), in order.
async fn shown_services(browser: &Browser) -> Vec<String> {
    let shown = browser
        .js(
            "return Array.from(document.querySelectorAll(arguments[0]))
                 .filter(r => r.getClientRects().length > 0)
                 .map(r => r.dataset.service);",
            vec![json!(format!(
                "{} tr[data-service]",
                testid("services-table")
            ))],
        )
        .await;
    serde_json::from_value(shown).unwrap_or_default()
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
    let event = |kind: &str| event_item(kind, "billing", addr);
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
    browser.click(&testid("nav-services")).await;
    browser
        .wait_present("the services view", &testid("services-table"))
        .await;
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
    // Read-only: no action can be clicked.
    let clickable = browser
        .js(
            "return Array.from(document.querySelectorAll('[data-testid^=\"action-\"]'))
                 .filter(b => b.tagName === 'BUTTON' && !b.disabled && b.getClientRects().length > 0)
                 .length;",
            vec![],
        )
        .await;
    assert_eq!(
        clickable,
        json!(0),
        "action buttons usable on a read-only console"
    );

    // The probe (support::browser) replaces alert() and records calls.
    let probe = browser.probe().await;
    assert_eq!(probe["dialogs"], json!([]), "a dialog opened: {probe}");
    assert_eq!(browser.alert().await, None, "a dialog is open");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_to_a_restarted_console_and_catches_up() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _orders = register(&registry, "orders", "127.0.0.1:7001", 10, &[]).await;
    let console = start_console(&redis, &[]);
    let listen = console.addr.to_string();
    let browser = Browser::start().await;
    browser.goto(&console.url("/#/")).await;
    browser.wait_present("orders", &service_row("orders")).await;
    let status = testid("connection-status");
    browser
        .wait_text("the stream live", &status, |t| t == "live")
        .await;

    drop(console);
    let shown = browser
        .wait_text("the page to notice", &status, |t| t != "live")
        .await;
    assert!(
        shown.starts_with("reconnecting"),
        "connection-status: {shown:?}"
    );
    browser.screenshot("reconnecting").await;

    // Registered while the console is down; the page learns of it when
    // the new console says hello.
    let _payments = register(&registry, "payments", "127.0.0.1:7101", 5, &[]).await;
    let _console = tokio::task::block_in_place(|| Console::launch(&redis.url(), &listen, &[], &[]));
    browser
        .wait_text("the stream live again", &status, |t| t == "live")
        .await;
    browser
        .wait_present("payments", &service_row("payments"))
        .await;
    browser.screenshot("reconnected").await;
    browser.close().await;
}
