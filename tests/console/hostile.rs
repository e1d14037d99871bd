//! Requests meant to break the console: odd paths, huge bodies and
//! headers, broken encodings. Each gets a 4xx answer and the console
//! goes on serving.

use http::Method;

use crate::support::console::{action_path, register, start_console, Console, TOKEN};
use crate::support::{registry, RedisServer};

const ADDR: &str = "127.0.0.1:7001";

/// A request: method, path, headers, body.
type Case<'a> = (Method, String, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_get_client_errors_and_change_nothing() {
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let _a = register(&registry, "orders", ADDR, 10, &[]).await;
    let mut console = start_console(&redis, &["--token", TOKEN]);
    let before = (
        Console::overrides(&redis, "orders"),
        Console::entries(&redis, "orders"),
    );
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let long_name = "a".repeat(60_000);
    let long_token = format!("Bearer {}", "x".repeat(100_000));
    let big_body = format!(r#"{{"weight":5,"pad":"{}"}}"#, "x".repeat(10 << 20));
    let drain = action_path("orders", ADDR, "drain");
    let weight = action_path("orders", ADDR, "weight");
    let cases: Vec<Case> = vec![
        (Method::GET, "/api/services/%FF%FE".into(), vec![], ""),
        (
            Method::GET,
            format!("/api/services/{long_name}"),
            vec![],
            "",
        ),
        (Method::GET, "/api/services/a%7Db".into(), vec![], ""),
        (Method::GET, "/api/nothing/here".into(), vec![], ""),
        (Method::GET, "/assets/../../etc/passwd".into(), vec![], ""),
        (
            Method::GET,
            "/assets/%2e%2e/%2e%2e/etc/passwd".into(),
            vec![],
            "",
        ),
        (
            Method::POST,
            action_path("a}b", ADDR, "drain"),
            auth.to_vec(),
            "",
        ),
        (
            Method::POST,
            action_path("orders", "not an address", "drain"),
            auth.to_vec(),
            "",
        ),
        (
            Method::POST,
            action_path("orders", ADDR, "explode"),
            auth.to_vec(),
            "",
        ),
        (Method::POST, format!("{drain}/extra"), auth.to_vec(), ""),
        (
            Method::POST,
            weight.clone(),
            auth.to_vec(),
            big_body.as_str(),
        ),
        (
            Method::POST,
            drain.clone(),
            vec![("authorization", long_token.as_str())],
            "",
        ),
        (
            Method::POST,
            drain.clone(),
            vec![("authorization", "Basic dXNlcjpwYXNz")],
            "",
        ),
        (Method::PUT, drain.clone(), auth.to_vec(), ""),
        (Method::DELETE, drain.clone(), auth.to_vec(), ""),
    ];
    for (method, path, headers, body) in &cases {
        let shown = &path[..path.len().min(80)];
        let reply = match console
            .try_request(method.clone(), path, headers, body)
            .await
        {
            Ok(reply) => reply,
            // Refusing a 10 MiB body before reading it all, the server
            // may close the connection while the client still sends.
            Err(e) if body.len() > 1 << 20 => {
                println!("{method} {shown} with {} bytes: {e}", body.len());
                continue;
            }
            Err(e) => panic!("{method} {shown}: {e}"),
        };
        assert!(
            (400..500).contains(&reply.status),
            "{method} {shown}: {} {}",
            reply.status,
            &reply.body[..reply.body.len().min(200)]
        );
        assert!(
            !reply.body.contains("root:"),
            "{method} {shown} served a file"
        );
        assert_eq!(
            (
                Console::overrides(&redis, "orders"),
                Console::entries(&redis, "orders"),
            ),
            before,
            "{method} {shown} changed Redis"
        );
    }
    // The contract leaves these open (a default, or a refusal), never a
    // server error.
    for path in [
        "/api/events?limit=abc",
        "/api/events?limit=-1",
        "/api/events?limit=99999999999999999999",
    ] {
        let reply = console.get(path).await;
        assert!(reply.status < 500, "GET {path}: {reply:?}");
    }
    let health = console.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert!(
        matches!(console.process.try_wait(), Ok(None)),
        "the console exited"
    );
    assert!(
        !console.output().contains("panicked"),
        "{}",
        console.output()
    );
}
