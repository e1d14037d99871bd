//! The console through a Redis outage: it keeps answering (never hangs),
//! and follows the registry again once Redis is back.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::console::{register, start_console};
use crate::support::{eventually, registry, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_answers_through_an_outage_and_catches_up_after() {
    let mut redis = RedisServer::start();
    let first = registry(&redis).await;
    let _orders = register(&first, "orders", "127.0.0.1:7001", 10, &[]).await;
    let console = start_console(&redis, &["--refresh", "200ms"]);
    eventually("orders listed", || async {
        let body = console.get_json("/api/services").await;
        (body["services"][0]["service"] == json!("orders")).then_some(())
    })
    .await;
    let mut stream = console.stream().await;
    assert_eq!(stream.next().await.name, "hello");

    redis.stop();
    // Several re-reads fail meanwhile; every answer comes promptly.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(1) {
        for path in [
            "/healthz",
            "/api/info",
            "/api/services",
            "/api/services/orders",
            "/api/events",
        ] {
            let asked = Instant::now();
            let reply = console.get(path).await;
            assert!(reply.status < 600, "{path}: {reply:?}");
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "{path} took {:?} with Redis down",
                asked.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(console.get("/healthz").await.status, 200);

    redis.restart();
    // Empty after the restart: a new registration must show up.
    let again = registry(&redis).await;
    let _payments = register(&again, "payments", "127.0.0.1:7101", 5, &[]).await;
    eventually("payments listed after the outage", || async {
        let body = console.get_json("/api/services").await;
        let listed = body["services"]
            .as_array()?
            .iter()
            .any(|s| s["service"] == json!("payments"));
        listed.then_some(())
    })
    .await;
    // The open stream carries it too (or told the reader to resync).
    let event = stream
        .next_matching("services", |d| {
            d["services"]
                .as_array()
                .is_some_and(|list| list.iter().any(|s| s["service"] == json!("payments")))
        })
        .await;
    assert_eq!(event.name, "services");
}
