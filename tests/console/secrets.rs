//! The console's secrets never show: the token (from the flag or the
//! environment) and the Redis password, in its output, `--help` or API.

use std::process::Command;

use crate::support::cli::{stderr, stdout, BIN};
use crate::support::console::{action_path, register, Console, TOKEN};
use crate::support::{registry, RedisServer};

const ADDR: &str = "127.0.0.1:7001";

/// The body each action takes.
fn body(action: &str) -> &'static str {
    if action == "weight" {
        r#"{"weight":5}"#
    } else {
        ""
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_shows_in_output_help_or_api() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = register(&registry, "orders", ADDR, 10, &[]).await;
    let console = tokio::task::block_in_place(|| {
        Console::start_with_env(&redis, &["--token", TOKEN], &[("RUST_LOG", "trace")])
    });
    for action in ["drain", "undrain", "weight"] {
        let path = action_path("orders", ADDR, action);
        let reply = console.post(&path, Some(TOKEN), body(action)).await;
        assert_eq!(reply.status, 200, "{action}: {reply:?}");
        console
            .post(&path, Some("not-the-token-at-all"), body(action))
            .await;
        console.post(&path, None, body(action)).await;
    }
    for path in [
        "/api/info",
        "/api/services",
        "/api/services/orders",
        "/api/events",
        "/",
    ] {
        let reply = console.get(path).await;
        assert!(!reply.body.contains(TOKEN), "GET {path} shows the token");
    }
    let output = console.output();
    assert!(output.contains("console listening on"), "{output}");
    assert!(
        !output.contains(TOKEN),
        "the token in the console's output:\n{output}"
    );
    // Nor what a client tried (a near miss may be the real token mistyped).
    assert!(
        !output.contains("not-the-token-at-all"),
        "a tried token in the console's output:\n{output}"
    );

    // `--help` with the token in the environment.
    let help = Command::new(BIN)
        .args(["console", "--help"])
        .env("REDIS_DISCOVERY_CONSOLE_TOKEN", TOKEN)
        .output()
        .expect("run --help");
    let text = format!("{}{}", stdout(&help), stderr(&help));
    assert!(text.contains("--token"), "{text}");
    assert!(!text.contains(TOKEN), "the token in --help:\n{text}");

    // The token from the environment works like --token.
    let from_env = tokio::task::block_in_place(|| {
        Console::start_with_env(&redis, &[], &[("REDIS_DISCOVERY_CONSOLE_TOKEN", TOKEN)])
    });
    let reply = from_env
        .post(&action_path("orders", ADDR, "undrain"), Some(TOKEN), "")
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(!from_env.output().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_is_redacted_from_info_and_output() {
    let redis = RedisServer::start();
    let password = "hunter2-redis-password";
    redis.cmd::<()>(&[
        "ACL",
        "SETUSER",
        "console",
        "on",
        &format!(">{password}"),
        "~*",
        "&*",
        "+@all",
    ]);
    let url = format!("redis://console:{password}@127.0.0.1:{}", redis.port());
    let console = tokio::task::block_in_place(|| {
        Console::launch(
            &url,
            "127.0.0.1:0",
            &["--token", TOKEN],
            &[("RUST_LOG", "debug")],
        )
    });
    let info = console.get_json("/api/info").await;
    let shown = info["redis"].as_str().unwrap_or_default().to_owned();
    assert!(
        !shown.contains(password),
        "the password in /api/info: {shown}"
    );
    assert!(
        shown.contains(&format!("127.0.0.1:{}", redis.port())),
        "{shown}"
    );
    // It works through that user: an action writes.
    let reply = console
        .post(&action_path("orders", ADDR, "drain"), Some(TOKEN), "")
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        !console.output().contains(password),
        "the password in the output:\n{}",
        console.output()
    );
}
