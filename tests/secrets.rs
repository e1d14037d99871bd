//! No password ever shows: not in `Debug`, `Display`, an error or a log
//! line, whatever the URL form and however the connection fails (issue 11,
//! item 5). The CLI's output is checked in tests/cli.rs.

mod support;

use std::error::Error;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

use redis_discovery::{Instance, RedisRegistry, RedisResolver};
use support::{eventually, LogCapture, RedisCluster, RedisServer};

/// The password every test URL carries, in some form.
const SECRET: &str = "hunter2";

/// Fails if `text` shows the password, decoded or percent-encoded.
fn assert_hidden(what: &str, text: &str) {
    for needle in [SECRET, "hun%74er2", "%2Fx@"] {
        assert!(
            !text.contains(needle),
            "{what} shows the password ({needle:?}): {text}"
        );
    }
}

/// `Debug` and `Display` of an error and of every error in its chain.
fn error_text(error: &(dyn Error + 'static)) -> String {
    let mut text = format!("{error:?}\n");
    let mut next = Some(error);
    while let Some(e) = next {
        text.push_str(&format!("{e}\n"));
        next = e.source();
    }
    text
}

/// The URL forms, each with the password somewhere, for a Redis at `port`.
fn urls(port: u16) -> Vec<String> {
    [
        "redis://user:hunter2@127.0.0.1:PORT",
        "redis://:hunter2@127.0.0.1:PORT/0",
        "rediss://user:hunter2@127.0.0.1:PORT",
        // A '/', '?', '@' or '%' in the password; a percent-encoded one.
        "redis://user:hunter2/x@127.0.0.1:PORT",
        "redis://user:hunter2?x@127.0.0.1:PORT",
        "redis://user:hunter2@x@127.0.0.1:PORT",
        "redis://user:hunter2%2Fx@127.0.0.1:PORT",
        "redis://user:hun%74er2@127.0.0.1:PORT",
        "unix:///nonexistent/redis.sock?user=u&pass=hunter2",
        "redis+unix:///nonexistent/redis.sock?pass=hunter2&db=1",
        "redis+sentinel://u:hunter2@127.0.0.1:PORT/mymaster?sentinel_password=hunter2s",
        "redis+sentinel://127.0.0.1:PORT/mymaster?sentinel_username=x&sentinel_password=hunter2",
        "redis+cluster://u:hunter2@127.0.0.1:PORT",
        "rediss+cluster://u:hunter2%2Fx@127.0.0.1:PORT",
    ]
    .iter()
    .map(|url| url.replace("PORT", &port.to_string()))
    .collect()
}

/// URLs that do not parse, each with a password.
const MALFORMED: &[&str] = &[
    "redis://u:hunter2@h:notaport",
    "redis://u:hunter2@h:99999",
    "redis://u:hunter2@",
    "redis://u:hunter2@h/notadb",
    "redis://u:hunter2@[::1",
    "http://u:hunter2@h",
    "unix://?pass=hunter2",
    "redis+sentinel://u:hunter2@h:x/m",
    "redis+sentinel://u:hunter2@h",
    "redis+sentinel://u:hunter2@h/m y",
    "redis+sentinel://h/m?sentinel_pasword=hunter2",
    "redis+sentinel://h/m?sentinel_password=hunter2%ZZ%FF",
    "redis+cluster://u:hunter2@h/1",
    "redis+cluster://u:hunter2@a,,b",
    "redis+cluster://u:hunter2@h:x",
];

/// Every log line of this test binary, at every level, from every thread.
fn logs() -> &'static LogCapture {
    static LOGS: OnceLock<LogCapture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogCapture::default();
        let subscriber = logs.subscriber(tracing::Level::TRACE, true);
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            panic!("another subscriber was set");
        }
        logs
    })
}

fn registry(url: &str) -> redis_discovery::registry::RegistryBuilder {
    RedisRegistry::builder(url)
        .connect_timeout(Duration::from_millis(500))
        .command_timeout(Duration::from_millis(500))
}

fn resolver(url: &str) -> redis_discovery::resolver::ResolverBuilder {
    RedisResolver::builder(url)
        .connect_timeout(Duration::from_millis(500))
        .command_timeout(Duration::from_millis(500))
}

/// Connects a registry and a resolver to `url`, which must fail, and checks
/// the errors and the logs.
async fn refused(url: &str) {
    match registry(url).connect().await {
        Ok(r) => panic!("{url}: connected: {r:?}"),
        Err(e) => assert_hidden(&format!("registry error for {url}"), &error_text(&e)),
    }
    match resolver(url).connect().await {
        Ok(r) => panic!("{url}: connected: {r:?}"),
        Err(e) => assert_hidden(&format!("resolver error for {url}"), &error_text(&e)),
    }
    assert_hidden("the logs", &logs().text());
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

#[test]
fn builders_hide_passwords() {
    for url in urls(6390)
        .iter()
        .map(String::as_str)
        .chain(MALFORMED.iter().copied())
    {
        assert_hidden(url, &format!("{:?}", registry(url)));
        assert_hidden(url, &format!("{:?}", resolver(url)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urls_are_refused_without_their_password() {
    logs();
    for url in MALFORMED {
        refused(url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connections_hide_passwords() {
    logs();
    let port = dead_port();
    for url in urls(port) {
        refused(&url).await;
    }
    // A listener that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = silent.local_addr().expect("its address").port();
    for url in urls(port) {
        refused(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_not_echoed() {
    logs();
    let server = RedisServer::start();
    server.cmd::<()>(&[
        "ACL", "SETUSER", "user", "on", ">right", "~*", "&*", "+@all",
    ]);
    let port = server.port();
    for url in urls(port).iter().filter(|u| u.starts_with("redis://")) {
        refused(url).await;
    }
    // The default user too, through requirepass.
    server.cmd::<()>(&["CONFIG", "SET", "requirepass", "right"]);
    refused(&format!("redis://:hunter2@127.0.0.1:{port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_cluster_with_wrong_passwords() {
    logs();
    let master = RedisServer::start();
    let sentinel = RedisServer::start_sentinel(&master, 0);
    let port = sentinel.port();
    // The Sentinel has no password: sending one fails.
    refused(&format!(
        "redis+sentinel://127.0.0.1:{port}/mymaster?sentinel_password=hunter2"
    ))
    .await;
    // The master refuses the password.
    master.cmd::<()>(&[
        "ACL", "SETUSER", "user", "on", ">right", "~*", "&*", "+@all",
    ]);
    refused(&format!(
        "redis+sentinel://user:hunter2@127.0.0.1:{port}/mymaster"
    ))
    .await;

    let cluster = RedisCluster::start(1);
    cluster.nodes[0].cmd::<()>(&[
        "ACL", "SETUSER", "user", "on", ">right", "~*", "&*", "+@all",
    ]);
    let seed = cluster.url().replace("redis+cluster://", "");
    refused(&format!("redis+cluster://user:hunter2@{seed}")).await;
    refused(&format!("redis+cluster://user:hunter2%2Fx@{seed}")).await;
}

/// Connected types, and what they log and return once Redis goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_types_and_their_failures_hide_passwords() {
    logs();
    let mut server = RedisServer::start();
    server.cmd::<()>(&[
        "ACL",
        "SETUSER",
        "user",
        "on",
        ">hunter2/x",
        "~*",
        "&*",
        "+@all",
    ]);
    let url = format!("redis://user:hunter2%2Fx@127.0.0.1:{}", server.port());
    let registry = registry(&url)
        .lease_ttl(Duration::from_secs(2))
        .heartbeat_interval(Duration::from_millis(500))
        .connect()
        .await
        .expect("the right password");
    let resolver = resolver(&url)
        .refresh_interval(Duration::from_millis(500))
        .connect()
        .await
        .expect("the right password");
    let instance = Instance::new("127.0.0.1:8080").expect("an address");
    let registration = registry.register("orders", instance.clone()).await.unwrap();
    assert_eq!(resolver.fetch("orders").await.unwrap().len(), 1);
    for text in [
        format!("{registry:?}"),
        format!("{resolver:?}"),
        format!("{registration:?}"),
    ] {
        assert_hidden("a connected type", &text);
    }

    server.stop();
    let started = logs().text().len();
    eventually("a heartbeat to fail", || async {
        logs().text()[started..]
            .contains("heartbeat failed")
            .then_some(())
    })
    .await;
    let e = registry.register("billing", instance).await.unwrap_err();
    assert_hidden("a register error", &error_text(&e));
    let e = resolver.fetch("orders").await.unwrap_err();
    assert_hidden("a fetch error", &error_text(&e));
    let e = registration.deregister().await.unwrap_err();
    assert_hidden("a deregister error", &error_text(&e));
    assert_hidden("the logs", &logs().text());
}
