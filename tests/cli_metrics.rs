//! `--metrics-listen`: the sidecar's and the watcher's metrics for
//! Prometheus, scraped over HTTP from the running binary.
#![cfg(feature = "cli")]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use support::cli::{cli, lines, sigterm, spawn, stderr, wait_exit, wait_for_line};
use support::{eventually_sync, free_port, RedisServer};

/// The endpoint's body, or `None` while it does not answer.
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// Scrapes until a line starts with `prefix`; that line.
fn metric_line(port: u16, prefix: &str) -> String {
    eventually_sync(&format!("a metric line {prefix:?}"), || {
        scrape(port)?
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
    })
}

#[test]
fn sidecar_serves_its_registration_and_heartbeats() {
    let redis = RedisServer::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut sidecar = spawn(
        &redis.url(),
        &[
            "register",
            "orders",
            "127.0.0.1:8080",
            "--heartbeat",
            "1",
            "--metrics-listen",
            &listen,
        ],
    );
    let out = lines(&mut sidecar);
    wait_for_line(&out, "registered 127.0.0.1:8080");
    let line = metric_line(port, "redis_discovery_registrations{");
    assert_eq!(line, r#"redis_discovery_registrations{service="orders"} 1"#);
    // Help texts come from `metrics::describe`.
    let text = scrape(port).expect("the endpoint answers");
    assert!(
        text.contains("# HELP redis_discovery_registrations"),
        "{text}"
    );

    sigterm(&sidecar);
    assert!(wait_exit(&mut sidecar).success());
}

#[test]
fn watcher_serves_its_resolver_metrics() {
    let redis = RedisServer::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut watch = spawn(
        &redis.url(),
        &[
            "watch",
            "orders",
            "--resync",
            "1",
            "--metrics-listen",
            &listen,
        ],
    );
    let out = lines(&mut watch);
    wait_for_line(&out, "watching orders");
    // The periodic re-read is a read of the service from Redis: a
    // histogram with buckets, in seconds.
    metric_line(port, "redis_discovery_resolve_duration_seconds_bucket{");
    metric_line(port, "redis_discovery_snapshot_staleness_seconds{");
    metric_line(port, "redis_discovery_cache_lookups_total{");

    sigterm(&watch);
    assert!(wait_exit(&mut watch).success());
}

#[test]
fn an_address_in_use_is_one_clear_error() {
    let redis = RedisServer::start();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let listen = taken.local_addr().expect("its address").to_string();
    let out = cli(
        &redis.url(),
        &[
            "register",
            "orders",
            "127.0.0.1:8080",
            "--metrics-listen",
            &listen,
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--metrics-listen") && err.contains(&listen),
        "{err}"
    );
    // Nothing was registered.
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
}
