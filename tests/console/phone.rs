//! The page on a phone-width screen: nothing wider than the screen but
//! the tables (which scroll inside their own box), and an action within
//! reach.

use serde_json::json;

use crate::hooks::{event_item, instance, service_row};
use crate::support::browser::{testid, Browser};
use crate::support::console::{register, start_console, TOKEN};
use crate::support::registry;
use crate::support::RedisServer;

/// How much wider than the screen the page itself is (0: it fits).
async fn page_overflow(browser: &Browser) -> i64 {
    let overflow = browser
        .js(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await;
    overflow.as_i64().unwrap_or(i64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_fits_a_phone_and_its_actions_work_there() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let addr = "127.0.0.1:7601";
    let _kept = [
        register(&registry, "orders", addr, 10, &[("zone", "eu-west-1a")]).await,
        register(&registry, "orders", "127.0.0.1:7602", 30, &[]).await,
        register(
            &registry,
            "a-service-with-a-rather-long-name",
            "127.0.0.1:7603",
            5,
            &[],
        )
        .await,
    ];
    let console = start_console(&redis, &["--token", TOKEN]);
    let browser = Browser::start_phone().await;
    browser.goto(&console.url("/#/")).await;
    browser.wait_present("orders", &service_row("orders")).await;
    // The page's viewport is the device's (a page without one is laid
    // out 980 pixels wide and shrunk).
    let width = browser.js("return window.innerWidth;", vec![]).await;
    assert_eq!(width, json!(390), "the phone's width in CSS pixels");
    assert!(
        page_overflow(&browser).await <= 0,
        "the services page is wider than the phone"
    );
    browser.screenshot("phone-services").await;

    browser.goto(&console.url("/#/service/orders")).await;
    let weight = instance(addr, &testid("inst-weight"));
    browser
        .wait_text("the weight", &weight, |t| t == "10")
        .await;
    assert!(
        page_overflow(&browser).await <= 0,
        "the service page is wider than the phone"
    );
    browser.type_into(&testid("token-input"), TOKEN).await;
    browser.click(&testid("token-save")).await;
    browser
        .click(&instance(addr, &testid("action-drain")))
        .await;
    browser.wait_text("drained", &weight, |t| t == "0").await;
    browser.screenshot("phone-service").await;

    browser.goto(&console.url("/#/events")).await;
    browser
        .wait_present(
            "the override event",
            &event_item("override", "orders", addr),
        )
        .await;
    assert!(
        page_overflow(&browser).await <= 0,
        "the events page is wider than the phone"
    );
    browser.screenshot("phone-events").await;
    browser.close().await;
}
