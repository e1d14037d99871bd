//! `drain`, `undrain`, `weight`, `disable` and `overrides` against a real
//! Redis, with `register` sidecars heartbeating the instances and real
//! HTTP servers behind them.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer, DiscoveryService};
use redis_discovery::{RedisResolver, Resolve};
use support::cli::{cli, lines, sidecar, sigterm, spawn, stderr, stdout, wait_exit, wait_for_line};
use support::http_server::spawn_server;
use support::{eventually, lease, RedisServer, DEADLINE};
use tower::{Layer, ServiceExt};

type HyperClient = DiscoveryService<Client<HttpConnector, String>>;

/// GET `http://orders/` through the layer: the address that answered.
async fn get(client: &HyperClient) -> String {
    let request = http::Request::get("http://orders/")
        .discover()
        .body(String::new())
        .unwrap();
    let response = client.clone().oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    body.split(' ').next().unwrap_or_default().to_owned()
}

/// The CLI, run off the runtime's threads; its output once it succeeded.
async fn run_ok(url: &str, args: &[&str]) -> String {
    let url = url.to_owned();
    let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        cli(&url, &args)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

/// The acceptance test of issue 16: an instance that a live sidecar
/// heartbeats every second, drained, gets no traffic for 3 heartbeats;
/// undrained, it gets traffic again (within 1 s; asserted only against
/// the generous deadline, the time is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_sidecar_instance_gets_no_traffic_until_undrained() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (a, _server_a) = spawn_server().await;
    let (b, _server_b) = spawn_server().await;
    let (a, b) = (a.to_string(), b.to_string());
    let mut sidecars = Vec::new();
    for addr in [&a, &b] {
        let args = ["register", "orders", addr, "--ttl", "3", "--heartbeat", "1"];
        let mut child = spawn(&url, &args);
        let out = lines(&mut child);
        wait_for_line(&out, "registered");
        sidecars.push(child);
    }
    let resolver = RedisResolver::builder(url.as_str())
        .refresh_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let client = DiscoveryLayer::new(resolver.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<String>());
    eventually("both instances to get traffic", || async {
        let mut seen = HashMap::new();
        for _ in 0..50 {
            *seen.entry(get(&client).await).or_insert(0) += 1;
        }
        (seen.len() == 2).then_some(())
    })
    .await;

    let out = run_ok(&url, &["drain", "orders", &a]).await;
    assert_eq!(out.trim(), format!("drained orders {a}"));
    eventually("the drain to reach the resolver", || async {
        let snapshot = resolver.cached("orders")?;
        let drained = snapshot
            .instances()
            .iter()
            .any(|i| i.addr() == a && i.weight() == 0);
        drained.then_some(())
    })
    .await;

    // Requests while the sidecar renews the lease 3 times.
    let mut hits: HashMap<String, usize> = HashMap::new();
    let mut renewals = 0;
    let mut last = lease(&redis, "orders", &a).expect("a lease");
    let deadline = Instant::now() + DEADLINE;
    while renewals < 3 {
        assert!(
            Instant::now() < deadline,
            "3 heartbeats within {DEADLINE:?}"
        );
        *hits.entry(get(&client).await).or_default() += 1;
        let now = lease(&redis, "orders", &a).expect("a lease");
        if now > last {
            renewals += 1;
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        hits.get(&a),
        None,
        "the drained instance got traffic: {hits:?}"
    );
    assert!(hits.get(&b).is_some_and(|&n| n > 0), "{hits:?}");
    println!("3 heartbeats while drained: {hits:?}");

    let started = Instant::now();
    let out = run_ok(&url, &["undrain", "orders", &a]).await;
    let cleared = Instant::now();
    assert_eq!(out.trim(), format!("undrained orders {a}"));
    let deadline = Instant::now() + DEADLINE;
    loop {
        if get(&client).await == a {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no traffic to {a} within {DEADLINE:?} of undrain"
        );
    }
    println!(
        "undrained instance got traffic {:?} after `undrain` returned ({:?} after it started)",
        cleared.elapsed(),
        started.elapsed()
    );

    for mut child in sidecars {
        sigterm(&child);
        assert!(wait_exit(&mut child).success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_are_set_listed_and_removed() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _sidecar = tokio::task::spawn_blocking({
        let url = url.clone();
        move || sidecar(&url, "10.0.0.7:8080")
    })
    .await
    .unwrap();

    let out = run_ok(&url, &["weight", "orders", "10.0.0.7:8080", "5"]).await;
    assert_eq!(out.trim(), "weighted orders 10.0.0.7:8080 weight=5");
    let out = run_ok(&url, &["disable", "orders", "10.0.0.9:8080"]).await;
    assert_eq!(
        out.trim(),
        "disabled orders 10.0.0.9:8080 (not registered now; applies once it is)"
    );
    let out = run_ok(&url, &["overrides"]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "orders 10.0.0.7:8080 weight=5",
            "orders 10.0.0.9:8080 disabled"
        ]
    );
    let out = run_ok(&url, &["overrides", "orders", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([
            {"service": "orders", "addr": "10.0.0.7:8080", "weight": 5},
            {"service": "orders", "addr": "10.0.0.9:8080", "disabled": true},
        ])
    );
    // `list` serves the override and tells the registered weight.
    let out = run_ok(&url, &["list", "orders"]).await;
    let row = out
        .lines()
        .find(|l| l.starts_with("10.0.0.7:8080"))
        .unwrap();
    assert!(row.contains("(override; registered 10)"), "{out}");
    assert!(row.split_whitespace().nth(1) == Some("5"), "{out}");

    let out = run_ok(&url, &["undrain", "orders", "10.0.0.7:8080"]).await;
    assert_eq!(out.trim(), "undrained orders 10.0.0.7:8080");
    let out = run_ok(&url, &["undrain", "orders", "10.0.0.7:8080"]).await;
    assert_eq!(
        out.trim(),
        "undrained orders 10.0.0.7:8080 (no override was set)"
    );
    run_ok(&url, &["undrain", "orders", "10.0.0.9:8080"]).await;
    let output = cli(&url, &["overrides"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("no overrides"),
        "{}",
        stderr(&output)
    );

    // Refused input: a one-line error, nothing written.
    let output = cli(&url, &["drain", "orders", "10.0.0.7"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid address"),
        "{}",
        stderr(&output)
    );
    let output = cli(&url, &["weight", "orders", "10.0.0.7:8080", "-1"]);
    assert!(!output.status.success());
    assert!(redis
        .cmd::<Vec<String>>(&["KEYS", "sd:{orders}:overrides"])
        .is_empty());
}

/// The Hertz schema refuses, with the library's words, before connecting.
#[test]
fn the_hertz_schema_refuses_overrides() {
    let redis = RedisServer::start();
    // Nothing listens there: refused before connecting all the same.
    let nowhere = format!("redis://127.0.0.1:{}", support::free_port());
    for url in [redis.url(), nowhere] {
        for args in [
            &["drain", "orders", "10.0.0.7:8080"][..],
            &["undrain", "orders", "10.0.0.7:8080"],
            &["weight", "orders", "10.0.0.7:8080", "3"],
            &["disable", "orders", "10.0.0.7:8080"],
            &["overrides"],
        ] {
            let mut all = vec!["--schema", "hertz"];
            all.extend_from_slice(args);
            let output = cli(&url, &all);
            assert!(!output.status.success(), "{args:?}");
            let text = stderr(&output);
            assert!(
                text.contains("the Hertz schema has no room for operator overrides"),
                "{args:?}: {text}"
            );
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }
    assert!(redis.keys().is_empty());
}
