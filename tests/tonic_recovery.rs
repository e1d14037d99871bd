//! `GrpcChannel` recovering by itself, between calls: instances connected
//! and removed while no call comes, waits that start over after an idle
//! gap, and a server that accepts connections only to drop them. Real
//! tonic servers and a real, private redis-server (tests/support).

mod support;

use std::time::{Duration, Instant};

use redis_discovery::Instance;
use support::grpc::{ClosingPort, GrpcServer};
use support::grpc_channel::{call, endpoint, resolver, two_servers, TwoServers, SERVICE};
use support::http_server::RefusingPort;
use support::{eventually, init_tracing, registry, RedisServer};
use tonic::Code;

/// Scenario: no instance up for long enough that calls fail; then one is
/// listed and up while no call comes. The channel connects it by itself:
/// the next call succeeds (before, it failed at once, the balancer moving
/// only while a call waited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_up_after_an_outage_takes_the_next_call() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let refusing = RefusingPort::new();
    let down = Instance::new(refusing.addr().to_string()).unwrap();
    let reg_down = registry.register(SERVICE, down).await.unwrap();
    let resolver = resolver(&redis).await;
    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();
    let status = call(&channel).await.expect_err("no instance is up");
    assert_eq!(status.code(), Code::Unavailable, "{status}");

    let a = GrpcServer::start("a").await;
    let _reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    assert!(reg_down.deregister().await.unwrap());
    eventually("the channel connects to a without a call", || async {
        (a.connections() == 1).then_some(())
    })
    .await;
    assert_eq!(call(&channel).await.expect("the first call succeeds"), "a");
}

/// A caller gave up; much later a call finds no instance ready: it waits
/// the whole period before failing (before, a timer left armed by the
/// first call failed it at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_an_idle_gap_waits_the_whole_period() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let refusing = RefusingPort::new();
    let down = Instance::new(refusing.addr().to_string()).unwrap();
    let _reg = registry.register(SERVICE, down).await.unwrap();
    let resolver = resolver(&redis).await;
    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();

    let gave_up = tokio::time::timeout(Duration::from_secs(1), call(&channel)).await;
    assert!(gave_up.is_err(), "no instance: the call waits");
    // The idle gap under test (past the 5 s a first call waits).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let started = Instant::now();
    let status = call(&channel).await.expect_err("no instance is up");
    let took = started.elapsed();
    eprintln!("the call after the gap failed after {took:?}: {status}");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(took >= Duration::from_secs(4), "failed after only {took:?}");
}

/// An instance deregistered while no call comes: its connection closes
/// without waiting for a call (before, at the next call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_closes_the_connection_without_a_call() {
    let TwoServers {
        redis: _redis,
        registry: _registry,
        a,
        b,
        reg_a,
        reg_b: _reg_b,
        resolver: _resolver,
        channel,
    } = two_servers().await;

    assert!(reg_a.deregister().await.unwrap());
    eventually("a's connection closes, no call made", || async {
        (a.connections() == 0).then_some(())
    })
    .await;
    assert_eq!(b.connections(), 1, "b's stays");
    assert_eq!(call(&channel).await.unwrap(), "b");
}

/// One good server, one port that accepts and drops every connection:
/// the bad one is connected to with a backoff (a connect is only TCP and
/// the HTTP/2 preface, so it "succeeds"), and nearly every call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_drops_its_connections_gets_a_backoff() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let good = GrpcServer::start("good").await;
    let bad = ClosingPort::start().await;
    let _reg_good = registry.register(SERVICE, good.instance()).await.unwrap();
    let _reg_bad = registry.register(SERVICE, bad.instance()).await.unwrap();
    let resolver = resolver(&redis).await;
    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();

    let started = Instant::now();
    let calls = 300;
    let mut failed = 0;
    for _ in 0..calls {
        match call(&channel).await {
            Ok(answer) => assert_eq!(answer, "good"),
            Err(status) => {
                eprintln!("call failed: {status}");
                failed += 1;
            }
        }
    }
    let took = started.elapsed();
    let accepts = bad.accepts();
    eprintln!(
        "{failed} of {calls} calls failed in {took:?}; the bad port accepted {accepts} connections"
    );
    assert!(failed * 20 <= calls, "{failed} of {calls} calls failed");
    // Backoff from 0.1 s doubling: about log2(10 * seconds) connects.
    let bound = 10 + 2 * took.as_secs() as usize;
    assert!(accepts <= bound, "{accepts} connects in {took:?}");
}
