//! Addresses and names against a real, private redis-server and real HTTP
//! servers: poisoned registry entries are never dialed, the allow-list,
//! warnings once per entry, the ACL users the README recommends, and
//! case-insensitive service names (native and Hertz schemas).

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use redis_discovery::resolver::{RedisResolver, Resolve, ResolverBuilder};
use redis_discovery::{
    Instance, KeySchema, RedisRegistry, Registration, ResolveError, ServiceName, ValidationError,
};
use support::{eventually, LogCapture, RedisServer};
use tower::{Layer, ServiceExt};

/// An HTTP server on a free loopback port that answers with its own
/// address; it lives as long as the test's runtime.
async fn http_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: hyper::Request<Incoming>| {
                    let body = Full::new(Bytes::from(addr.to_string()));
                    async move { Ok::<_, Infallible>(hyper::Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `n` HTTP servers registered as `service`.
async fn fleet(redis: &RedisServer, service: &str, n: usize) -> (Vec<String>, Vec<Registration>) {
    let registry = RedisRegistry::connect(redis.url()).await.unwrap();
    let mut addrs = Vec::new();
    let mut registrations = Vec::new();
    for _ in 0..n {
        let addr = http_server().await;
        let instance = Instance::from_socket_addr(addr).unwrap();
        registrations.push(registry.register(service, instance).await.unwrap());
        addrs.push(addr.to_string());
    }
    addrs.sort();
    (addrs, registrations)
}

/// Writes a native-schema entry by hand, as anyone who can write the
/// registry could, with a lease of a minute.
fn write_raw(redis: &RedisServer, service: &str, addr: &str) {
    let (secs, micros): (i64, i64) = redis.cmd(&["TIME"]);
    let deadline = (secs * 1000 + micros / 1000 + 60_000).to_string();
    let json = format!(r#"{{"service_name":"{service}","addr":"{addr}","weight":10,"tags":{{}}}}"#);
    redis.cmd::<()>(&["HSET", &format!("sd:{{{service}}}:instances"), addr, &json]);
    redis.cmd::<()>(&["ZADD", &format!("sd:{{{service}}}:leases"), &deadline, addr]);
}

fn remove_raw(redis: &RedisServer, service: &str, addr: &str) {
    redis.cmd::<()>(&["HDEL", &format!("sd:{{{service}}}:instances"), addr]);
    redis.cmd::<()>(&["ZREM", &format!("sd:{{{service}}}:leases"), addr]);
}

fn reads(redis: &RedisServer) -> u64 {
    redis.calls("evalsha_ro") + redis.calls("eval_ro")
}

/// Waits until the resolver has read the service `n` more times.
async fn more_reads(redis: &RedisServer, n: u64) {
    let before = reads(redis);
    eventually("more periodic reads", || async {
        (reads(redis) >= before + n).then_some(())
    })
    .await;
}

/// `requests` GETs through the layer with no retry allowed: every one must
/// land on a good instance at the first attempt.
async fn all_succeed(resolver: &RedisResolver, service: &str, good: &[String], requests: usize) {
    let client = DiscoveryLayer::builder(resolver.clone())
        .retries(0)
        .build()
        .layer(Client::builder(TokioExecutor::new()).build_http::<String>());
    for i in 0..requests {
        let request = http::Request::get(format!("http://{service}/{i}"))
            .discover()
            .body(String::new())
            .unwrap();
        let response = match client.clone().oneshot(request).await {
            Ok(response) => response,
            Err(e) => panic!("request {i} failed: {e}"),
        };
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let answered = String::from_utf8_lossy(&body).into_owned();
        assert!(good.contains(&answered), "{answered} answered request {i}");
    }
}

fn listed(snapshot: &redis_discovery::Snapshot) -> Vec<String> {
    let mut addrs: Vec<String> = snapshot
        .instances()
        .iter()
        .map(|i| i.addr().to_owned())
        .collect();
    addrs.sort();
    addrs
}

fn warnings_about(logs: &str, addr: &str) -> usize {
    logs.lines()
        .filter(|l| l.contains("refused by the address policy") && l.contains(addr))
        .count()
}

fn builder(redis: &RedisServer) -> ResolverBuilder {
    RedisResolver::builder(redis.url()).refresh_interval(Duration::from_millis(200))
}

const POISONED: [&str; 6] = [
    "169.254.169.254:80",
    "224.0.0.1:80",
    "255.255.255.255:80",
    "[fe80::1]:80",
    "[ff02::1]:80",
    "[::ffff:169.254.0.1]:80",
];

/// Current-thread runtime: every task logs through the test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn poisoned_entries_are_skipped_warned_once_and_never_dialed() {
    let redis = RedisServer::start();
    let (good, _registrations) = fleet(&redis, "orders", 3).await;
    for addr in POISONED {
        write_raw(&redis, "orders", addr);
    }
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber(tracing::Level::WARN, false));
    let resolver = builder(&redis).connect().await.unwrap();

    let snapshot = resolver.resolve(&"orders".parse().unwrap()).await.unwrap();
    assert_eq!(listed(&snapshot), good);
    // An uncached read of a cached service shares the cache's memory (of
    // a service not cached it warns at every call: nothing to remember on).
    let listed_now: Vec<String> = resolver
        .list("orders")
        .await
        .unwrap()
        .iter()
        .map(|l| l.instance.addr().to_owned())
        .collect();
    assert_eq!(listed_now, good);
    all_succeed(&resolver, "orders", &good, 100).await;

    // Several periodic refreshes: still one warning per entry.
    more_reads(&redis, 5).await;
    let text = logs.text();
    for addr in POISONED {
        assert_eq!(warnings_about(&text, addr), 1, "{addr}: {text}");
    }
    assert!(!text.contains("corrupt"), "{text}");

    // An entry that leaves and comes back is warned about again.
    remove_raw(&redis, "orders", POISONED[0]);
    more_reads(&redis, 2).await;
    write_raw(&redis, "orders", POISONED[0]);
    more_reads(&redis, 2).await;
    let text = logs.text();
    assert_eq!(warnings_about(&text, POISONED[0]), 2, "{text}");
    assert_eq!(warnings_about(&text, POISONED[1]), 1, "{text}");
    assert_eq!(listed(&resolver.fetch("orders").await.unwrap()), good);
}

/// Regression: the memory of warned entries used to be one map for the
/// whole resolver, capped at 256 services; past it every read warned about
/// every skipped entry again. It now lives on each cache entry, bounded by
/// the cache cap and freed with the entry.
#[tokio::test(flavor = "current_thread")]
async fn a_bad_entry_in_each_of_many_services_is_warned_about_once() {
    let redis = RedisServer::start();
    let services = 300;
    // A distinct port for each, all of one length: no address is a prefix
    // of another in the logs.
    let bad = |n: usize| format!("169.254.0.1:{}", 10_000 + n);
    for n in 0..services {
        let service = format!("many-{n}");
        write_raw(&redis, &service, "10.0.17.1:80");
        write_raw(&redis, &service, &bad(n));
    }
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber(tracing::Level::WARN, false));
    let resolver = builder(&redis).connect().await.unwrap();
    for n in 0..services {
        let service: ServiceName = format!("many-{n}").parse().unwrap();
        let snapshot = resolver.resolve(&service).await.unwrap();
        assert_eq!(listed(&snapshot), ["10.0.17.1:80"]);
    }
    // Every service read at least twice more (periodic refreshes).
    more_reads(&redis, 2 * services as u64).await;
    let text = logs.text();
    for n in 0..services {
        assert_eq!(warnings_about(&text, &bad(n)), 1, "{}: {text}", bad(n));
    }
}

/// The registry refuses them too: the same policy where instances are made.
#[tokio::test]
async fn the_registry_refuses_what_the_resolver_skips() {
    for addr in POISONED.iter().chain(&["0.0.0.0:80", "[::]:80"]) {
        match Instance::new(addr) {
            Err(ValidationError::Address { reason, .. }) => assert!(reason.is_refusal(), "{addr}"),
            other => panic!("{addr}: {other:?}"),
        }
    }
    // And what was written by hand can still be removed.
    let redis = RedisServer::start();
    write_raw(&redis, "orders", POISONED[0]);
    let registry = RedisRegistry::connect(redis.url()).await.unwrap();
    assert!(registry.deregister("orders", POISONED[0]).await.unwrap());
}

/// Other spellings of an IPv4 address: reqwest and the system resolver
/// dial them as 169.254.169.254, 0.0.0.0 and 8.0.0.1.
const NUMERIC: [&str; 7] = [
    "0xa9fea9fe:80",
    "0xa9.0xfe.0xa9.0xfe:80",
    "169.0xfe.169.254:80",
    "2852039166:80",
    "0251.0376.0251.0376:80",
    "0x0:80",
    "010.0.0.1:80",
];

#[tokio::test(flavor = "current_thread")]
async fn numeric_hosts_other_than_dotted_quads_are_skipped() {
    let redis = RedisServer::start();
    let (good, _registrations) = fleet(&redis, "orders", 2).await;
    for addr in NUMERIC {
        write_raw(&redis, "orders", addr);
    }
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber(tracing::Level::WARN, false));
    let resolver = builder(&redis).connect().await.unwrap();
    all_succeed(&resolver, "orders", &good, 50).await;
    // After the cache's read, so it shares the cache's memory of warnings.
    assert_eq!(listed(&resolver.fetch("orders").await.unwrap()), good);
    let text = logs.text();
    for addr in NUMERIC {
        assert_eq!(warnings_about(&text, addr), 1, "{addr}: {text}");
    }
    assert!(
        text.contains("write the address as a dotted quad"),
        "{text}"
    );
    // Well formed, so removable.
    let registry = RedisRegistry::connect(redis.url()).await.unwrap();
    for addr in NUMERIC {
        assert!(registry.deregister("orders", addr).await.unwrap(), "{addr}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_allow_list_skips_entries_outside_it() {
    let redis = RedisServer::start();
    let (good, _registrations) = fleet(&redis, "orders", 3).await;
    // Allowed by the fixed rules, outside the allow-list.
    let outside = [
        "10.0.0.1:8080",      // another network
        "127.0.0.1:80",       // a port outside the range
        "localhost:8080",     // a host name: cannot be checked
        "[::1]:8080",         // IPv6 loopback, not in 127.0.0.0/8
        "192.168.1.20:40000", // another network
    ];
    for addr in outside {
        write_raw(&redis, "orders", addr);
    }
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber(tracing::Level::WARN, false));
    let resolver = builder(&redis)
        .allow_networks(["127.0.0.0/8"])
        .allow_ports(1024..=65535)
        .connect()
        .await
        .unwrap();
    let snapshot = resolver.resolve(&"orders".parse().unwrap()).await.unwrap();
    assert_eq!(listed(&snapshot), good);
    all_succeed(&resolver, "orders", &good, 100).await;
    more_reads(&redis, 5).await;
    let text = logs.text();
    for addr in outside {
        assert_eq!(warnings_about(&text, addr), 1, "{addr}: {text}");
    }
    assert!(text.contains("outside the allowed networks"), "{text}");
    assert!(text.contains("outside the allowed ports"), "{text}");
    assert!(text.contains("a host name cannot be checked"), "{text}");

    // Without the list, the same registry gives all eight.
    let open = builder(&redis).connect().await.unwrap();
    assert_eq!(open.fetch("orders").await.unwrap().len(), 8);
}

#[tokio::test]
async fn bad_allow_lists_are_refused_before_connecting() {
    // Port 1 on loopback: nothing listens, nothing would be reached.
    let url = "redis://127.0.0.1:1";
    for builder in [
        RedisResolver::builder(url).allow_networks(["10.0.0.0/33"]),
        RedisResolver::builder(url).allow_networks(["10.0.0.0/8", "ten"]),
        RedisResolver::builder(url).allow_ports(0..=10),
    ] {
        match builder.connect().await {
            Err(ResolveError::Invalid(ValidationError::Config(message))) => {
                assert!(message.contains("allowed"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Service names are case-insensitive, like the host names requests reach
/// them by: reqwest lowercases the host, hyper keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_are_case_insensitive_for_every_client() {
    let redis = RedisServer::start();
    let (good, _registrations) = fleet(&redis, "Orders", 2).await;
    // One rule for the native schema: keys hold the lowercase name.
    assert!(redis.keys().contains(&"sd:{orders}:instances".to_owned()));
    assert!(!redis.keys().iter().any(|k| k.contains("Orders")));
    let resolver = RedisResolver::connect(redis.url()).await.unwrap();
    assert_eq!(resolver.services().await.unwrap(), ["orders"]);
    for spelling in ["orders", "Orders", "ORDERS"] {
        let name = ServiceName::new(spelling).unwrap();
        assert_eq!(listed(&resolver.resolve(&name).await.unwrap()), good);
        assert_eq!(listed(&resolver.cached(spelling).unwrap()), good);
    }
    // hyper keeps the host's case.
    for host in ["Orders", "ORDERS", "orders"] {
        all_succeed(&resolver, host, &good, 10).await;
    }
    #[cfg(feature = "reqwest")]
    {
        let http = reqwest::Client::new();
        let client = DiscoveryLayer::builder(resolver.clone())
            .retries(0)
            .build()
            .layer(http.clone());
        for host in ["Orders", "ORDERS", "orders"] {
            for _ in 0..10 {
                let request = http
                    .get(format!("http://{host}/x"))
                    .discover()
                    .build()
                    .unwrap();
                let response = client.clone().oneshot(request).await.unwrap();
                let answered = response.text().await.unwrap();
                assert!(good.contains(&answered), "{host}: {answered}");
            }
        }
    }
}

/// The Hertz schema keeps the case of the key, as Go writes it: a Go
/// service named with capitals is read under the spelling it is first
/// resolved by, and from then on requests reach it whatever their host's
/// case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hertz_keys_keep_the_case_go_wrote() {
    let redis = RedisServer::start();
    let server = http_server().await.to_string();
    // Exactly what Go Hertz writes for a service named `Hertz.Demo`.
    let key = "/hertz/Hertz.Demo/server";
    let json =
        format!(r#"{{"service_name":"Hertz.Demo","addr":"{server}","weight":10,"tags":null}}"#);
    redis.cmd::<()>(&["HSET", key, &server, &json]);
    redis.cmd::<()>(&["EXPIRE", key, "60"]);
    let hertz = || RedisResolver::builder(redis.url()).schema(KeySchema::Hertz);

    let resolver = hertz().connect().await.unwrap();
    assert_eq!(resolver.services().await.unwrap(), ["Hertz.Demo"]);
    // The lowercase spelling names another key, which Go did not write.
    assert!(resolver.fetch("hertz.demo").await.unwrap().is_empty());
    assert_eq!(resolver.fetch("Hertz.Demo").await.unwrap().len(), 1);

    // Resolved once by its Go spelling (watched: it stays cached)…
    let _watch = resolver.watch("Hertz.Demo").await.unwrap();
    // …requests reach it whatever the case of their host.
    let good = [server.clone()];
    for host in ["hertz.demo", "Hertz.Demo", "HERTZ.DEMO"] {
        all_succeed(&resolver, host, &good, 5).await;
    }
    #[cfg(feature = "reqwest")]
    {
        let http = reqwest::Client::new();
        let client = DiscoveryLayer::new(resolver.clone()).layer(http.clone());
        let request = http.get("http://Hertz.Demo/").discover().build().unwrap();
        assert_eq!(request.url().host_str(), Some("hertz.demo"));
        let response = client.oneshot(request).await.unwrap();
        assert_eq!(response.text().await.unwrap(), server);
    }

    // A Rust server in the Hertz schema writes the key as Go would.
    let registry = RedisRegistry::builder(redis.url())
        .schema(KeySchema::Hertz)
        .connect()
        .await
        .unwrap();
    let _registration = registry
        .register("Hertz.Rust", Instance::new("127.0.0.1:8888").unwrap())
        .await
        .unwrap();
    let value: String = redis.cmd(&["HGET", "/hertz/Hertz.Rust/server", "127.0.0.1:8888"]);
    assert!(value.contains(r#""service_name":"Hertz.Rust""#), "{value}");
    let other = hertz().connect().await.unwrap();
    assert_eq!(other.fetch("Hertz.Rust").await.unwrap().len(), 1);
}

/// The ACL users the README recommends: a server user registers, a client
/// user resolves and subscribes but cannot write.
#[tokio::test]
async fn the_readme_acl_users_work_and_the_client_cannot_write() {
    let redis = RedisServer::start();
    for line in acl_lines_from_readme() {
        let args: Vec<&str> = line.split_whitespace().collect();
        redis.cmd::<()>(&args);
    }
    let as_user = |user: &str| {
        redis
            .url()
            .replace("redis://", &format!("redis://{user}:{user}-password@"))
    };
    let registry = RedisRegistry::builder(as_user("sd-server"))
        .lease_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let first = registry
        .register("orders", Instance::new("10.0.0.1:80").unwrap())
        .await
        .unwrap();
    let resolver = RedisResolver::builder(as_user("sd-client"))
        .refresh_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let mut updates = resolver.watch("orders").await.unwrap();
    assert_eq!(updates.borrow_and_update().len(), 1);
    assert_eq!(resolver.services().await.unwrap(), ["orders"]);
    assert_eq!(resolver.list("orders").await.unwrap().len(), 1);
    // A change arrives by event (no refresh within the test): subscribed.
    let second = registry
        .register("orders", Instance::new("10.0.0.2:80").unwrap())
        .await
        .unwrap();
    eventually("the event to reach the client user", || async {
        (resolver.cached("orders")?.len() == 2).then_some(())
    })
    .await;
    // Heartbeats (the server user's script) keep the leases.
    let before = redis.calls("evalsha");
    eventually("heartbeats", || async {
        (redis.calls("evalsha") >= before + 2).then_some(())
    })
    .await;
    second.deregister().await.unwrap();
    first.deregister().await.unwrap();

    // The client user cannot write, in any of the ways the registry does.
    let client = redis::Client::open(as_user("sd-client")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let attempts = [
        redis::cmd("HSET")
            .arg("sd:{orders}:instances")
            .arg("10.9.9.9:80")
            .arg("{}")
            .clone(),
        redis::cmd("ZADD")
            .arg("sd:{orders}:leases")
            .arg(1)
            .arg("x")
            .clone(),
        redis::cmd("EVAL")
            .arg("return redis.call('HSET', KEYS[1], 'x', 'y')")
            .arg(1)
            .arg("sd:{orders}:instances")
            .clone(),
        redis::cmd("EVAL_RO")
            .arg("return redis.call('HSET', KEYS[1], 'x', 'y')")
            .arg(1)
            .arg("sd:{orders}:instances")
            .clone(),
        redis::cmd("PUBLISH")
            .arg("sd:{orders}:events")
            .arg("{}")
            .clone(),
        redis::cmd("SADD").arg("sd:services").arg("x").clone(),
        redis::cmd("DEL").arg("sd:services").clone(),
    ];
    for attempt in attempts {
        let result: redis::RedisResult<redis::Value> = attempt.query_async(&mut conn).await;
        assert!(result.is_err(), "{attempt:?} was allowed: {result:?}");
    }
    // Nor may the server user touch keys outside the registry.
    let server = redis::Client::open(as_user("sd-server")).unwrap();
    let mut conn = server.get_multiplexed_async_connection().await.unwrap();
    let other: redis::RedisResult<()> = redis::cmd("SET")
        .arg("other")
        .arg("x")
        .query_async(&mut conn)
        .await;
    assert!(other.is_err());
}

/// The `ACL SETUSER` lines of the README's threat model section, with the
/// password placeholders filled in.
fn acl_lines_from_readme() -> Vec<String> {
    let readme = include_str!("../README.md");
    let lines: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with("ACL SETUSER sd-"))
        .map(|l| {
            l.replace(">SERVER_PASSWORD", ">sd-server-password")
                .replace(">CLIENT_PASSWORD", ">sd-client-password")
        })
        .collect();
    assert_eq!(lines.len(), 2, "the README shows two ACL users");
    lines
}
