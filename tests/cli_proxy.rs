//! `redis-discovery proxy`: curl-style requests reach the instances by
//! weight, a killed instance fails no GET, and errors, headers, `/healthz` and the connection limit are as documented.
#![cfg(feature = "cli")]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::http_server::RefusingPort;
use support::proxy::{
    raw, read, register, start_proxy, wait_routed, Proxy, ProxyConnection, Upstream,
};
use support::{eventually, RedisServer, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_and_absolute_form_requests_reach_instances_by_weight() {
    let redis = RedisServer::start();
    let upstreams = [
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    ];
    let weights = [1u32, 3, 6];
    let mut registrations = Vec::new();
    for (u, w) in upstreams.iter().zip(weights) {
        registrations.push(register(&redis, "orders", u.addr(), w).await);
    }
    let proxy = start_proxy(&redis, &[]);
    wait_routed(proxy.addr, "orders", 3).await;
    for u in &upstreams {
        u.take_seen();
    }

    const PER_FORM: usize = 1500;
    let counts: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    // Two connections per form: `curl -H 'Host: orders' PROXY/v1/items`
    // and `curl -x PROXY http://orders/v1/items`.
    for (uri, host) in [
        ("/v1/items", Some("orders")),
        ("/v1/items", Some("orders")),
        ("http://orders/v1/items", None),
        ("http://orders/v1/items", None),
    ] {
        let (addr, counts) = (proxy.addr, counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = ProxyConnection::open(addr).await;
            for _ in 0..PER_FORM / 2 {
                let (status, body) = read(client.get(uri, host).await.unwrap()).await;
                assert_eq!(status, 200, "{body}");
                *counts.lock().unwrap().entry(body).or_default() += 1;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counts = counts.lock().unwrap().clone();
    let n = (2 * PER_FORM) as f64;
    for (u, w) in upstreams.iter().zip(weights) {
        let p = f64::from(w) / 10.0;
        let got = counts.get(&u.addr().to_string()).copied().unwrap_or(0) as f64;
        let sd = (n * p * (1.0 - p)).sqrt();
        assert!(
            (got - n * p).abs() <= 5.0 * sd,
            "weight {w}: {got} of {n}, expected {} ± {}",
            n * p,
            5.0 * sd
        );
    }
    // The instances saw the requests in origin-form, with `Host: orders`.
    for u in &upstreams {
        for seen in u.take_seen() {
            assert_eq!(seen.uri, "/v1/items");
            assert_eq!(seen.headers["host"], "orders");
        }
    }
    drop(registrations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_fails_no_get() {
    let redis = RedisServer::start();
    let mut upstreams = vec![
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    ];
    let mut registrations = Vec::new();
    for u in &upstreams {
        registrations.push(register(&redis, "orders", u.addr(), 10).await);
    }
    let proxy = start_proxy(&redis, &[]);
    wait_routed(proxy.addr, "orders", 3).await;

    let (ok, failed, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (ok, failed, stop, addr) = (ok.clone(), failed.clone(), stop.clone(), proxy.addr);
        tasks.push(tokio::spawn(async move {
            let mut client = ProxyConnection::open(addr).await;
            while !stop.load(Ordering::SeqCst) {
                match client.get("/v1/items", Some("orders")).await {
                    Ok(response) if response.status() == 200 => {
                        read(response).await;
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        eprintln!("failed GET: {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                        client = ProxyConnection::open(addr).await;
                    }
                }
            }
        }));
    }
    eventually("GETs before the kill", || {
        let ok = ok.load(Ordering::SeqCst);
        async move { (ok >= 200).then_some(()) }
    })
    .await;
    // Killed, not deregistered: its entry stays until its lease ends.
    let mut killed = upstreams.remove(0);
    killed.crash().await;
    let after = ok.load(Ordering::SeqCst);
    eventually("GETs after the kill", || {
        let ok = ok.load(Ordering::SeqCst);
        async move { (ok >= after + 1000).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let log = proxy.log();
    let failures: Vec<_> = log.iter().filter(|l| !l.contains("status=200")).collect();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "{failures:#?}");
    drop(registrations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_and_forwarding_headers_added() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &[]);
    wait_routed(proxy.addr, "orders", 1).await;
    upstream.take_seen();

    let answer = raw(
        proxy.addr,
        "GET http://orders/hop?x=1 HTTP/1.1\r\nHost: orders\r\n\
         Connection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\n\
         Upgrade: websocket\r\nX-Forwarded-For: 10.9.8.7\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    let (head, _) = answer.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nx-kept: yes"), "{head}");
    for stripped in ["x-secret", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(
            !head.contains(&format!("\r\n{stripped}:")),
            "{stripped} in {head}"
        );
    }

    let seen = upstream.take_seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.uri, "/hop?x=1");
    let h = &seen.headers;
    for stripped in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            !h.contains_key(stripped),
            "{stripped} reached the instance: {h:?}"
        );
    }
    assert_eq!(h["host"], "orders");
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["x-forwarded-for"], "10.9.8.7, 127.0.0.1");
    assert_eq!(h["forwarded"], "for=127.0.0.1;proto=http;host=orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_http_answers() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let refusing = RefusingPort::new();
    let _slow = register(&redis, "slow", upstream.addr(), 10).await;
    // A known service with no instance that may be picked.
    let _drained = register(&redis, "drained", upstream.addr(), 0).await;
    let _refusing = register(&redis, "refusing", refusing.addr(), 10).await;
    let proxy = start_proxy(&redis, &["--attempt-timeout", "300ms"]);
    let mut client = ProxyConnection::open(proxy.addr).await;

    let response = client.get("/", Some("drained")).await.unwrap();
    assert_eq!(response.headers()["retry-after"], "5");
    let (status, body) = read(response).await;
    assert_eq!(
        (status, body.as_str()),
        (503, "no live instance of service drained\n")
    );

    let (status, body) = read(client.get("/", Some("refusing")).await.unwrap()).await;
    assert_eq!(
        (status, body.as_str()),
        (502, "no instance of service refusing answered\n")
    );

    let (status, body) = read(client.get("/hang", Some("slow")).await.unwrap()).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body, "no instance of service slow answered within 300ms\n");

    let answer = raw(proxy.addr, "GET /v1 HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw(
        proxy.addr,
        "CONNECT orders:80 HTTP/1.1\r\nHost: orders:80\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let answer = raw(
        proxy.addr,
        "GET https://slow/ HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_post_whose_connection_is_refused_goes_to_another_instance() {
    use http_body_util::BodyExt;
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let refusing = RefusingPort::new();
    // Nearly every first pick is the refusing port.
    let _refusing = register(&redis, "orders", refusing.addr(), 100).await;
    let _orders = register(&redis, "orders", upstream.addr(), 1).await;
    let proxy = start_proxy(&redis, &[]);
    // No warm-up GET: it would get the refusing port ejected first.
    let mut client = ProxyConnection::open(proxy.addr).await;
    // A body with a length up to 64 KiB is held, so it can be sent again.
    for bytes in [1, 1000, 64 * 1024] {
        for _ in 0..10 {
            let request = http::Request::post("/upload")
                .header("host", "orders")
                .body(support::proxy::Generated(bytes).boxed_unsync())
                .unwrap();
            let (status, body) = read(client.send(request).await.unwrap()).await;
            assert_eq!((status, body), (200, bytes.to_string()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_post_whose_connect_hangs_goes_to_another_instance() {
    use http_body_util::BodyExt;
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    // A port whose accept queue is full: SYNs to it are dropped, so a
    // connect hangs (as to a host that is gone).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let _queued = tokio::net::TcpStream::connect(full.local_addr().unwrap())
        .await
        .unwrap();
    let _hanging = register(&redis, "orders", full.local_addr().unwrap(), 100).await;
    let _orders = register(&redis, "orders", upstream.addr(), 1).await;
    let proxy = start_proxy(&redis, &[]);
    let mut client = ProxyConnection::open(proxy.addr).await;
    for _ in 0..3 {
        let request = http::Request::post("/upload")
            .header("host", "orders")
            .body(support::proxy::Generated(100).boxed_unsync())
            .unwrap();
        let (status, body) = read(client.send(request).await.unwrap()).await;
        assert_eq!((status, body.as_str()), (200, "100"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_that_never_arrives_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &["--idle-timeout", "300ms"]);
    wait_routed(proxy.addr, "orders", 1).await;
    let before = upstream.requests();
    // 3 of 10 bytes, then nothing: a slow client holds no instance.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: orders\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("no answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(upstream.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_for_the_proxy_itself_only() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = start_proxy(&redis, &[]);
    let own = proxy.addr.to_string();
    for host in [None, Some(own.as_str()), Some("localhost")] {
        let mut client = ProxyConnection::open(proxy.addr).await;
        let (status, body) = read(client.get("/healthz", host).await.unwrap()).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{host:?}");
    }
    // `Host: orders`: the service's own /healthz.
    let mut client = ProxyConnection::open(proxy.addr).await;
    let (status, body) = read(client.get("/healthz", Some("orders")).await.unwrap()).await;
    assert_eq!((status, body), (200, upstream.addr().to_string()));
    assert_eq!(upstream.take_seen()[0].uri, "/healthz");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_the_next_connection_waits() {
    let redis = RedisServer::start();
    let proxy = start_proxy(&redis, &["--max-connections", "2"]);
    // Two connections, each proven accepted by an answer.
    let mut first = ProxyConnection::open(proxy.addr).await;
    let mut second = ProxyConnection::open(proxy.addr).await;
    for client in [&mut first, &mut second] {
        let (status, _) = read(client.get("/healthz", None).await.unwrap()).await;
        assert_eq!(status, 200);
    }
    // The third waits in the backlog: no answer while both are open.
    let third = tokio::spawn(async move {
        let mut client = ProxyConnection::open(proxy.addr).await;
        read(client.get("/healthz", None).await.unwrap()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "a third connection was served");
    drop(first);
    let (status, _) = tokio::time::timeout(DEADLINE, third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_does_not_stall_requests() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let _orders = register(&redis, "orders", upstream.addr(), 10).await;
    let proxy = tokio::task::block_in_place(|| Proxy::start_stderr_unread(&redis.url(), &[]));
    wait_routed(proxy.addr, "orders", 1).await;
    // Each access line is over 100 bytes: 2000 fill a 64 KiB pipe three
    // times over. Written in line, the log would block the proxy.
    let mut client = ProxyConnection::open(proxy.addr).await;
    for i in 0..2000 {
        let answer = tokio::time::timeout(DEADLINE, client.get("/v1/items", Some("orders")))
            .await
            .unwrap_or_else(|_| panic!("request {i} stalled"));
        let (status, _) = read(answer.unwrap()).await;
        assert_eq!(status, 200);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_open_file_limit_is_raised_for_max_connections() {
    let redis = RedisServer::start();
    // Started with a soft limit of 256, as `ulimit -Sn 256` would.
    let script = format!(
        "ulimit -Sn 256 && exec {} --redis {} proxy --listen 127.0.0.1:0",
        support::cli::BIN,
        redis.url()
    );
    let mut process = support::cli::Running::from(
        std::process::Command::new("sh")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = support::cli::lines(&mut process);
    support::cli::wait_for_line(&out, "proxy listening on ");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", process.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (soft, hard) = (numbers[0], numbers[1]);
    // 2 per connection of the default 1024, and 64, as far as allowed.
    assert_eq!(soft, hard.min(2 * 1024 + 64), "{line}");
}

#[test]
fn flags_are_validated() {
    let redis = "redis://127.0.0.1:1";
    for (args, error) in [
        (&["--max-connections", "0"][..], "--max-connections 0"),
        (&["--attempt-timeout", "0s"][..], "--attempt-timeout"),
        (&["--drain-timeout", "2h"][..], "--drain-timeout"),
        (&["--idle-timeout", "0s"][..], "--idle-timeout"),
        (&["--tag", "zone"][..], "--tag \"zone\""),
        (&["--balance", "fastest"][..], "fastest"),
    ] {
        let mut all = vec!["proxy"];
        all.extend_from_slice(args);
        let out = support::cli::cli(redis, &all);
        assert!(!out.status.success(), "{args:?}");
        let stderr = support::cli::stderr(&out);
        assert!(stderr.contains(error), "{args:?}: {stderr}");
    }
    let help = support::cli::cli(redis, &["proxy", "--help"]);
    assert!(help.status.success());
    assert!(support::cli::stdout(&help).contains("--max-connections"));
}
