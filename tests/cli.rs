//! The `redis-discovery` binary against a private redis-server.
#![cfg(feature = "cli")]

mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};

use support::cli::{
    cli, lines, sidecar, sigterm, spawn, stderr, stdout, wait_exit, wait_for_line, BIN,
};
use support::{RedisCluster, RedisServer};

#[test]
fn sidecar_register_list_watch_and_sigterm() {
    let redis = RedisServer::start();

    let mut watch = spawn(&redis.url(), &["watch", "orders", "--resync", "1"]);
    let watch_lines = lines(&mut watch);
    wait_for_line(&watch_lines, "watching orders: 0 instances");

    let mut sidecar = spawn(
        &redis.url(),
        &[
            "register",
            "orders",
            "127.0.0.1:8080",
            "--weight",
            "7",
            "--tag",
            "zone=a",
            "--ttl",
            "3",
            "--heartbeat",
            "1",
        ],
    );
    let sidecar_lines = lines(&mut sidecar);
    wait_for_line(&sidecar_lines, "registered 127.0.0.1:8080");
    let added = wait_for_line(&watch_lines, "127.0.0.1:8080");
    assert_eq!(added, "+ 127.0.0.1:8080 weight=7 tags=zone=a");

    let list = cli(&redis.url(), &["list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(
        stdout(&list)
            .lines()
            .any(|l| l.starts_with("orders") && l.ends_with(" 1")),
        "{}",
        stdout(&list)
    );

    let list = cli(&redis.url(), &["list", "orders"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let text = stdout(&list);
    let row = text
        .lines()
        .find(|l| l.starts_with("127.0.0.1:8080"))
        .expect("a row for the instance");
    assert!(row.contains(" 7 ") && row.ends_with("zone=a"), "{row}");

    let json = cli(&redis.url(), &["list", "orders", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    assert_eq!(rows[0]["addr"], "127.0.0.1:8080");
    assert_eq!(rows[0]["weight"], 7);
    assert_eq!(rows[0]["tags"]["zone"], "a");
    let lease = rows[0]["lease_left_ms"].as_u64().expect("a lease");
    assert!(lease > 0 && lease <= 3000, "{lease}");
    let json = cli(&redis.url(), &["list", "--json"]);
    let services: serde_json::Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    assert_eq!(
        services,
        serde_json::json!([{"service": "orders", "instances": 1}])
    );

    // SIGTERM: the sidecar deregisters and exits 0; the watcher sees it.
    sigterm(&sidecar);
    assert!(wait_exit(&mut sidecar).success());
    wait_for_line(&sidecar_lines, "deregistered 127.0.0.1:8080");
    assert_eq!(
        wait_for_line(&watch_lines, "127.0.0.1:8080"),
        "- 127.0.0.1:8080"
    );
    let json = cli(&redis.url(), &["list", "orders", "--json"]);
    assert!(
        !json.status.success(),
        "the service is gone: {}",
        stdout(&json)
    );

    sigterm(&watch);
    assert!(wait_exit(&mut watch).success());
}

#[test]
fn deregister_command() {
    let redis = RedisServer::start();
    let mut sidecar = sidecar(&redis.url(), "127.0.0.1:9000");
    let out = cli(&redis.url(), &["deregister", "orders", "127.0.0.1:9000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("deregistered 127.0.0.1:9000"));
    let out = cli(&redis.url(), &["deregister", "orders", "127.0.0.1:9000"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not registered"), "{}", stderr(&out));
    let _ = sidecar.kill();
    let _ = sidecar.wait();
}

#[test]
fn cluster_and_sentinel_urls_work_like_a_server_url() {
    let cluster = RedisCluster::start(3);
    let master = RedisServer::start();
    let sentinel = RedisServer::start_sentinel(&master, 0);
    for url in [cluster.url(), sentinel.sentinel_url()] {
        let mut sidecar = sidecar(&url, "127.0.0.1:9200");
        let json = cli(&url, &["list", "--json"]);
        assert!(json.status.success(), "{url}: {}", stderr(&json));
        let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
        assert_eq!(
            rows,
            serde_json::json!([{"service": "orders", "instances": 1}])
        );
        let out = cli(&url, &["deregister", "orders", "127.0.0.1:9200"]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        let _ = sidecar.kill();
        let _ = sidecar.wait();
    }
}

#[test]
fn bad_input_exits_non_zero_with_one_clear_line() {
    let redis = RedisServer::start();
    let cases: &[(&[&str], &str)] = &[
        (
            &["register", "bad name", "127.0.0.1:1"],
            "invalid service name",
        ),
        (&["register", "orders", "127.0.0.1"], "invalid address"),
        (&["register", "orders", "127.0.0.1:0"], "invalid address"),
        (
            &["register", "orders", "127.0.0.1:1", "--tag", "novalue"],
            "invalid tag",
        ),
        (
            &[
                "register",
                "orders",
                "127.0.0.1:1",
                "--ttl",
                "1",
                "--heartbeat",
                "1",
            ],
            "two heartbeat intervals",
        ),
        (&["list", "nobody"], "unknown service nobody"),
        (&["list", "a/b"], "invalid service name"),
        (&["deregister", "orders", "nope"], "invalid address"),
        (
            &["register", "orders", "http://127.0.0.1:80"],
            "drop the scheme: write host:port",
        ),
        (&["register", "orders", "169.254.169.254:80"], "link-local"),
        (
            &["list", "orders", "--allow-network", "10.0.0.0/33"],
            "CIDR",
        ),
        (&["--prefix", "{x}", "list"], "invalid configuration"),
    ];
    for (args, message) in cases {
        let out = cli(&redis.url(), args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(
            err.starts_with("error: ") && err.contains(message),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    assert!(
        redis.keys().is_empty(),
        "bad input wrote {:?}",
        redis.keys()
    );

    // Redis unreachable: a clear error, quickly.
    let out = Command::new(BIN)
        .args(["--redis", "redis://127.0.0.1:1", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("error: "), "{}", stderr(&out));
    let out = Command::new(BIN)
        .args(["--redis", "http://x", "list"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("invalid Redis URL"),
        "{}",
        stderr(&out)
    );
}

/// `list` with the allow-list, and names in any case.
#[test]
fn allow_list_and_case_insensitive_names() {
    let redis = RedisServer::start();
    let mut sidecar = spawn(
        &redis.url(),
        &[
            "register",
            "Orders",
            "127.0.0.1:9300",
            "--ttl",
            "30",
            "--heartbeat",
            "10",
        ],
    );
    let out = lines(&mut sidecar);
    wait_for_line(&out, "registered");
    let count = |args: &[&str]| {
        let mut all = vec!["list", "ORDERS", "--json"];
        all.extend(args);
        let out = cli(&redis.url(), &all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        rows.as_array().map_or(0, Vec::len)
    };
    assert_eq!(count(&[]), 1);
    assert_eq!(count(&["--allow-network", "127.0.0.0/8"]), 1);
    assert_eq!(count(&["--allow-network", "10.0.0.0/8"]), 0);
    assert_eq!(
        count(&[
            "--allow-network",
            "10.0.0.0/8",
            "--allow-network",
            "127.0.0.1/32"
        ]),
        1
    );
    assert_eq!(count(&["--allow-ports", "9000-9999"]), 1);
    assert_eq!(count(&["--allow-ports", "80"]), 0);
    let out = cli(&redis.url(), &["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        rows,
        serde_json::json!([{"service": "orders", "instances": 1}])
    );
    let out = cli(&redis.url(), &["list", "--allow-ports", "0-10"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a port from 1 to 65535"),
        "{}",
        stderr(&out)
    );
    let out = cli(&redis.url(), &["deregister", "ORDERS", "127.0.0.1:9300"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = sidecar.kill();
    let _ = sidecar.wait();
}

#[test]
fn help_has_examples() {
    for cmd in [
        &["--help"][..],
        &["list", "--help"],
        &["watch", "--help"],
        &["register", "--help"],
        &["deregister", "--help"],
    ] {
        let out = Command::new(BIN).args(cmd).output().unwrap();
        assert!(out.status.success());
        assert!(stdout(&out).contains("redis-discovery "), "{cmd:?}");
    }
}

/// A closed stdout (`| head -1`) ends the command quietly, not with a panic.
#[test]
fn closed_stdout_is_not_a_panic() {
    let redis = RedisServer::start();
    let mut sidecar = sidecar(&redis.url(), "127.0.0.1:9100");
    let mut list = Command::new(BIN)
        .args(["--redis", &redis.url(), "list", "orders"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(list.stdout.take()); // the reader is gone before anything is written
    let out = list.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
    let _ = sidecar.kill();
    let _ = sidecar.wait();
}

/// The commands that talk to Redis, as run against a Redis that fails.
const REDIS_COMMANDS: &[&[&str]] = &[
    &["list"],
    &["list", "orders"],
    &["watch", "orders"],
    &["register", "orders", "127.0.0.1:8080"],
    &["deregister", "orders", "127.0.0.1:8080"],
];

/// A loopback listener that accepts connections and never answers, until
/// dropped.
fn silent_listener() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let accepting = listener.try_clone().expect("clone the listener");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        // Ends when the test process does.
        for stream in accepting.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    listener
}

/// Issue 11, item 10: every command reports a dead Redis, and one that
/// accepts connections but never answers, the same way: one line naming
/// the Redis by its URL, password hidden.
#[test]
fn redis_problems_are_one_line_naming_the_redacted_url() {
    // Bound but not listening: refuses, and no other test can take it.
    let refusing = support::http_server::RefusingPort::new();
    let dead = refusing.addr().port();
    let silent = silent_listener();
    let silent_port = silent.local_addr().expect("its address").port();
    let cases = [
        ("redis://app:hunter2@127.0.0.1:PORT/0", dead, "refused"),
        (
            "redis+sentinel://app:hunter2@127.0.0.1:PORT/m",
            dead,
            "refused",
        ),
        (
            "redis+cluster://app:hunter2@127.0.0.1:PORT",
            dead,
            "refused",
        ),
        (
            "redis://app:hunter2@127.0.0.1:PORT/0",
            silent_port,
            "timed out",
        ),
    ];
    for (url, port, why) in cases {
        let url = url.replace("PORT", &port.to_string());
        let prefix = format!("error: Redis at {}: ", url.replace("hunter2", "***"));
        for args in REDIS_COMMANDS {
            let out = cli(&url, args);
            assert!(!out.status.success(), "{args:?} succeeded");
            let err = stderr(&out);
            assert!(
                err.starts_with(&prefix) && err.contains(why),
                "{args:?}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
        }
    }
}

/// Issue 11, item 5: no password in the CLI's output, logs at every level
/// included, whatever fails.
#[test]
fn cli_output_never_shows_a_password() {
    let redis = RedisServer::start();
    redis.cmd::<()>(&["ACL", "SETUSER", "app", "on", ">right", "~*", "&*", "+@all"]);
    // Bound but not listening: refuses, and no other test can take it.
    let refusing = support::http_server::RefusingPort::new();
    let dead = refusing.addr().port();
    let urls = [
        // A wrong password.
        format!("redis://app:hunter2@127.0.0.1:{}", redis.port()),
        format!("redis://app:hunter2%2Fx@127.0.0.1:{}", redis.port()),
        format!("redis://app:hunter2@127.0.0.1:{dead}"),
        format!("redis+sentinel://app:hunter2@127.0.0.1:{dead}/m?sentinel_password=hunter2"),
        format!("redis+cluster://app:hunter2@127.0.0.1:{dead}"),
        "unix:///nonexistent.sock?pass=hunter2".to_owned(),
        "redis://app:hunter2@127.0.0.1:notaport".to_owned(),
    ];
    for url in &urls {
        for args in REDIS_COMMANDS {
            let out = Command::new(BIN)
                .args(["--redis", url])
                .args(*args)
                .env("RUST_LOG", "trace")
                .output()
                .expect("run the CLI");
            assert!(!out.status.success(), "{url} {args:?} succeeded");
            let text = format!("{}{}", stdout(&out), stderr(&out));
            assert!(
                !text.contains("hunter2") && !text.contains("%2Fx"),
                "{url} {args:?}: {text}"
            );
        }
    }
    // From the environment too: --help does not show it.
    let out = Command::new(BIN)
        .arg("--help")
        .env("REDIS_URL", &urls[0])
        .output()
        .expect("run the CLI");
    assert!(!stdout(&out).contains("hunter2"), "{}", stdout(&out));
}
