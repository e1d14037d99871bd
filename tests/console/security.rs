//! The console's actions refuse what they must, before touching Redis, and
//! its token never shows.

use std::process::{Command, Stdio};

use http::Method;
use serde_json::json;

use crate::support::cli::{stderr, stdout, wait_exit, BIN};
use crate::support::console::{action_path, register, start_console, Console, TOKEN};
use crate::support::{eventually, registry, RedisServer};

const ACTIONS: [&str; 4] = ["drain", "undrain", "weight", "deregister"];
const ADDR: &str = "127.0.0.1:7001";

/// What the actions may change in Redis: the overrides and the entries.
fn state(redis: &RedisServer) -> (Vec<(String, String)>, Vec<String>) {
    (
        Console::overrides(redis, "orders"),
        Console::entries(redis, "orders"),
    )
}

/// The body each action takes.
fn body(action: &str) -> &'static str {
    if action == "weight" {
        r#"{"weight":5}"#
    } else {
        ""
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_without_the_right_token_or_from_another_site_change_nothing() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = register(&registry, "orders", ADDR, 10, &[]).await;
    let console = start_console(&redis, &["--token", TOKEN]);
    let before = state(&redis);
    assert_eq!(before.1, [ADDR]);
    let wrong = format!("{TOKEN}x");
    let origin = console.base.clone();

    for action in ACTIONS {
        let path = action_path("orders", ADDR, action);
        let body = body(action);

        let reply = console.post(&path, None, body).await;
        assert_eq!(reply.status, 401, "{action} without a token: {reply:?}");
        assert_eq!(reply.error(), "this action needs the console's token");
        let challenge = reply
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or_default());
        assert!(
            challenge.is_some_and(|v| v.starts_with("Bearer")),
            "{reply:?}"
        );

        let reply = console.post(&path, Some(&wrong), body).await;
        assert_eq!(reply.status, 403, "{action} with a wrong token: {reply:?}");
        assert_eq!(reply.error(), "wrong token");

        // Another site's page: refused whether it has the token or not.
        let bearer = format!("Bearer {TOKEN}");
        for headers in [
            vec![("origin", "http://evil.example")],
            vec![
                ("origin", "http://evil.example"),
                ("authorization", bearer.as_str()),
            ],
            vec![
                ("sec-fetch-site", "cross-site"),
                ("authorization", bearer.as_str()),
            ],
            vec![("origin", "null"), ("authorization", bearer.as_str())],
        ] {
            let reply = console.request(Method::POST, &path, &headers, body).await;
            assert_eq!(reply.status, 403, "{action} {headers:?}: {reply:?}");
            assert_eq!(reply.error(), "cross-site request refused", "{headers:?}");
        }

        let reply = console.get(&path).await;
        assert_eq!(reply.status, 405, "GET {path}: {reply:?}");

        // DNS rebinding: a page of evil.example that resolves to loopback.
        let headers = [("host", "evil.example"), ("authorization", bearer.as_str())];
        let reply = console.request(Method::POST, &path, &headers, body).await;
        assert_eq!(
            reply.status, 403,
            "{action} with Host: evil.example: {reply:?}"
        );

        assert_eq!(
            state(&redis),
            before,
            "{action}: Redis changed by a refused action"
        );
    }

    let reply = console
        .request(Method::GET, "/api/info", &[("host", "evil.example")], "")
        .await;
    assert_eq!(
        reply.status, 403,
        "GET /api/info with Host: evil.example: {reply:?}"
    );
    for host in [
        "localhost",
        "127.0.0.1",
        "[::1]:8500",
        &console.addr.to_string(),
    ] {
        let reply = console
            .request(Method::GET, "/api/info", &[("host", host)], "")
            .await;
        assert_eq!(reply.status, 200, "Host: {host}: {reply:?}");
    }

    // The page's own requests (same origin, with the token) are served.
    let drain = action_path("orders", ADDR, "drain");
    let bearer = format!("Bearer {TOKEN}");
    let headers = [
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
        ("authorization", &bearer),
    ];
    let reply = console.request(Method::POST, &drain, &headers, "").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), json!({"ok": true, "registered": true}));
    assert_eq!(
        Console::overrides(&redis, "orders"),
        [(ADDR.to_owned(), r#"{"weight":0}"#.to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_unknown_instances_are_refused_with_reasons() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = register(&registry, "orders", ADDR, 10, &[]).await;
    let console = start_console(&redis, &["--token", TOKEN]);
    let before = state(&redis);
    let weight = action_path("orders", ADDR, "weight");
    for bad in ["", "nonsense", r#"{"weight":-1}"#, r#"{"weight":"5"}"#] {
        let reply = console.post(&weight, Some(TOKEN), bad).await;
        assert_eq!(reply.status, 400, "weight {bad:?}: {reply:?}");
        assert!(!reply.error().is_empty(), "{reply:?}");
    }
    let reply = console
        .post(
            &action_path("orders", "127.0.0.1:7999", "deregister"),
            Some(TOKEN),
            "",
        )
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.error().contains("is not registered in"), "{reply:?}");
    assert_eq!(state(&redis), before);

    // An override for an address not registered yet waits for it.
    let reply = console
        .post(
            &action_path("orders", "127.0.0.1:7998", "drain"),
            Some(TOKEN),
            "",
        )
        .await;
    assert_eq!(
        reply.json(),
        json!({"ok": true, "registered": false}),
        "{reply:?}"
    );

    // Weights are 0..=u32::MAX, as the CLI and the library take.
    let before = state(&redis);
    let reply = console
        .post(&weight, Some(TOKEN), r#"{"weight":4294967296}"#)
        .await;
    assert_eq!(reply.status, 400, "weight 2^32: {reply:?}");
    assert_eq!(state(&redis), before);
    let reply = console
        .post(&weight, Some(TOKEN), r#"{"weight":4294967295}"#)
        .await;
    assert_eq!(reply.status, 200, "weight u32::MAX: {reply:?}");
    let written: String = redis.cmd(&["HGET", "sd:{orders}:overrides", ADDR]);
    assert_eq!(written, r#"{"weight":4294967295}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_console_refuses_every_action() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = register(&registry, "orders", ADDR, 10, &[]).await;
    // --read-only wins over a token.
    let with_token = ["--read-only", "--token", TOKEN];
    for args in [&[][..], &["--read-only"][..], &with_token[..]] {
        let console = start_console(&redis, args);
        let before = state(&redis);
        for action in ACTIONS {
            let reply = console
                .post(
                    &action_path("orders", ADDR, action),
                    Some(TOKEN),
                    body(action),
                )
                .await;
            assert_eq!(reply.status, 403, "{args:?} {action}: {reply:?}");
            assert!(reply.error().starts_with("read-only console"), "{reply:?}");
            if !args.contains(&"--token") {
                assert_eq!(reply.error(), "read-only console: started without --token");
            }
        }
        assert_eq!(state(&redis), before, "{args:?}: Redis changed");
        assert_eq!(
            console.get_json("/api/info").await["read_only"],
            json!(true)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_without_a_token_refuses_to_start() {
    let redis = RedisServer::start();
    // It must refuse before binding, so 0.0.0.0 is never actually opened.
    let mut child = Command::new(BIN)
        .args(["--redis", &redis.url(), "console", "--listen", "0.0.0.0:0"])
        .env_remove("REDIS_DISCOVERY_CONSOLE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the console");
    let status = tokio::task::block_in_place(|| wait_exit(&mut child));
    let output = child.wait_with_output().expect("its output");
    assert_eq!(status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("--token"), "{}", stderr(&output));
    assert!(
        !stdout(&output).contains("listening"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hertz_schema_lists_instances_and_has_no_overrides() {
    let redis = RedisServer::start();
    let hertz = redis_discovery::RedisRegistry::builder(redis.url())
        .schema(redis_discovery::KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let _a = register(&hertz, "orders", ADDR, 10, &[]).await;
    let console = start_console(&redis, &["--schema", "hertz", "--token", TOKEN]);
    let info = console.get_json("/api/info").await;
    assert_eq!(info["schema"], json!("hertz"), "{info}");
    assert_eq!(info["overrides"], json!(false), "{info}");
    // 404 until the console's first read.
    eventually("the Hertz instance listed", || async {
        let reply = console.get("/api/services/orders").await;
        (reply.status == 200 && reply.json()["instances"][0]["addr"] == json!(ADDR)).then_some(())
    })
    .await;
    for action in ["drain", "undrain", "weight"] {
        let reply = console
            .post(
                &action_path("orders", ADDR, action),
                Some(TOKEN),
                body(action),
            )
            .await;
        assert_eq!(reply.status, 409, "{action}: {reply:?}");
        assert_eq!(reply.error(), "the Hertz schema has no overrides");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_host_adds_a_name_and_refuses_the_others() {
    let redis = RedisServer::start();
    let console = start_console(&redis, &["--allow-host", "console.example"]);
    for (host, status) in [
        ("console.example", 200),
        ("console.example:8500", 200),
        ("localhost:8500", 200),
        ("evil.example", 403),
        ("console.example.evil.example", 403),
        ("evilconsole.example", 403),
    ] {
        let reply = console
            .request(Method::GET, "/api/info", &[("host", host)], "")
            .await;
        assert_eq!(reply.status, status, "Host: {host}: {reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_can_neither_read_the_api_nor_frame_the_page() {
    let redis = RedisServer::start();
    let console = start_console(&redis, &["--token", TOKEN]);
    let evil = [("origin", "http://evil.example")];
    for path in ["/api/info", "/api/services", "/api/events"] {
        let reply = console.request(Method::GET, path, &evil, "").await;
        // No CORS grant: a page of another origin cannot read the answer.
        assert!(
            !reply.headers.contains_key("access-control-allow-origin"),
            "GET {path} from another origin: {reply:?}"
        );
    }
    let preflight = [
        ("origin", "http://evil.example"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "authorization"),
    ];
    let drain = action_path("orders", ADDR, "drain");
    let reply = console
        .request(Method::OPTIONS, &drain, &preflight, "")
        .await;
    assert!(
        !reply.headers.contains_key("access-control-allow-origin"),
        "a preflight granted: {reply:?}"
    );
    // The page holds the token and its buttons act: no other site may
    // frame it (clickjacking).
    let page = console.get("/").await;
    let csp = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let frame_options = page
        .headers
        .get("x-frame-options")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        csp.contains("frame-ancestors 'none'") || frame_options.eq_ignore_ascii_case("deny"),
        "the page can be framed: {:?}",
        page.headers
    );
}
