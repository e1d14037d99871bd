//! `register --check URL` / `--check-tcp HOST:PORT`: the sidecar keeps its
//! instance in Redis only while a real health endpoint says it is healthy.
#![cfg(feature = "cli")]

mod support;

use std::time::Instant;

use support::cli::{cli, lines, sigterm, spawn, stderr, stdout, wait_exit, wait_for_line};
use support::faults::{Fault, FaultServer};
use support::http_server::RefusingPort;
use support::{eventually_sync, RedisServer};

/// The addresses `list orders --json` shows; none once the service is gone.
fn listed(url: &str) -> Vec<String> {
    let out = cli(url, &["list", "orders", "--json"]);
    if !out.status.success() {
        // Deregistering the last instance may forget the service.
        assert!(stderr(&out).contains("unknown service"), "{}", stderr(&out));
        return Vec::new();
    }
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    rows.iter()
        .filter_map(|r| r["addr"].as_str().map(str::to_owned))
        .collect()
}

/// The sidecar's line once it is in Redis ("deregistered" contains
/// "registered").
const REGISTERED: &str = "heartbeating until";

fn wait_listed(url: &str, addr: &str, present: bool) {
    let what = format!("{addr} {} orders", if present { "in" } else { "out of" });
    eventually_sync(&what, || {
        (listed(url).iter().any(|a| a == addr) == present).then_some(())
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn http_check_moves_the_instance_in_and_out_of_rotation() {
    let redis = RedisServer::start();
    let url = redis.url();
    let rt = runtime();
    // Unhealthy at first: the first registration waits for a passing check.
    let server = rt.block_on(FaultServer::start(Fault::Failing)).unwrap();
    let addr = server.addr().to_string();
    let check = format!("http://{addr}/health");
    let mut sidecar = spawn(
        &url,
        &[
            "register",
            "orders",
            &addr,
            "--check",
            &check,
            "--check-interval",
            "200ms",
            "--check-timeout",
            "200ms",
        ],
    );
    let out = lines(&mut sidecar);
    // A check may also time out on a busy machine: match any reason.
    let first = wait_for_line(&out, "): not registering");
    assert!(
        first == "check failed (status 503): not registering" || first.contains("timed out"),
        "{first}"
    );
    assert!(listed(&url).is_empty());

    server.set_fault(Fault::Healthy);
    wait_for_line(&out, "check passed: registering");
    wait_for_line(&out, REGISTERED);
    wait_listed(&url, &addr, true);

    // Out of rotation within about one interval (20 s allowed for a busy
    // machine; the time is printed to see the real figure).
    server.set_fault(Fault::Failing);
    let failed = Instant::now();
    wait_for_line(&out, "): deregistering");
    wait_for_line(&out, "deregistered");
    wait_listed(&url, &addr, false);
    eprintln!(
        "out of rotation {:?} after the endpoint failed",
        failed.elapsed()
    );

    server.set_fault(Fault::Healthy);
    wait_for_line(&out, "check passed: registering");
    wait_for_line(&out, REGISTERED);
    wait_listed(&url, &addr, true);

    sigterm(&sidecar);
    wait_for_line(&out, "deregistered");
    assert!(wait_exit(&mut sidecar).success());
    assert!(listed(&url).is_empty());
}

#[test]
fn tcp_check_registers_only_an_open_port() {
    let redis = RedisServer::start();
    let url = redis.url();
    let rt = runtime();
    let _guard = rt.enter();
    let open = rt.block_on(FaultServer::start(Fault::Healthy)).unwrap();
    let closed = RefusingPort::new();
    let (open_addr, closed_addr) = (open.addr().to_string(), closed.addr().to_string());
    let sidecar = |addr: &str| {
        spawn(
            &url,
            &[
                "register",
                "orders",
                addr,
                "--check-tcp",
                addr,
                "--check-interval",
                "200ms",
            ],
        )
    };
    let mut refused = sidecar(&closed_addr);
    let refused_out = lines(&mut refused);
    wait_for_line(&refused_out, "check failed");
    let mut accepted = sidecar(&open_addr);
    let accepted_out = lines(&mut accepted);
    wait_for_line(&accepted_out, "check passed: registering");
    wait_for_line(&accepted_out, REGISTERED);
    wait_listed(&url, &open_addr, true);
    // Both have checked by now; only the open port is in.
    assert_eq!(listed(&url), vec![open_addr.clone()]);

    sigterm(&accepted);
    wait_for_line(&accepted_out, "deregistered");
    assert!(wait_exit(&mut accepted).success());
    sigterm(&refused);
    assert!(wait_exit(&mut refused).success());
    // The output ends when the process does: the refused one never
    // registered, so it has nothing to deregister.
    let rest: Vec<String> = refused_out.iter().collect();
    assert!(!rest.iter().any(|l| l.contains("registered")), "{rest:?}");
    assert!(listed(&url).is_empty());
}

#[test]
fn bad_check_flags_are_one_clear_error_line() {
    let redis = RedisServer::start();
    let url = redis.url();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--check", "https://127.0.0.1:1/health"],
            "https:// is not supported",
        ),
        (&["--check", "127.0.0.1:1/health"], "http://"),
        (&["--check-tcp", "no-port"], "--check-tcp"),
        (
            &[
                "--check",
                "http://127.0.0.1:1/",
                "--check-tcp",
                "127.0.0.1:1",
            ],
            "cannot be used with",
        ),
        (
            &["--check-tcp", "127.0.0.1:1", "--check-interval", "5x"],
            "not a duration",
        ),
        (
            &["--check-tcp", "127.0.0.1:1", "--check-interval", "50ms"],
            "minimum of 100ms",
        ),
        (
            &["--check-tcp", "127.0.0.1:1", "--check-timeout", "0s"],
            "--check-timeout",
        ),
        (
            &[
                "--check-tcp",
                "127.0.0.1:1",
                "--check-interval",
                "1s",
                "--check-timeout",
                "2s",
            ],
            "at most --check-interval",
        ),
        (&["--check-interval", "1s"], "--check"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["register", "orders", "127.0.0.1:1"];
        args.extend_from_slice(flags);
        let out = cli(&url, &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{flags:?} was accepted");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{flags:?}: {err}");
        assert!(
            errors[0].contains(expected) || err.contains(expected),
            "{flags:?}: {err}"
        );
    }
    assert!(
        redis.keys().is_empty(),
        "a refused flag registered something"
    );
}
