//! `RedisResolver::tonic_channel` (`GrpcChannel`) against real tonic
//! servers on loopback ports (tests/support/grpc.rs, no protoc),
//! registered in a real, private redis-server (tests/support).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_discovery::Instance;
use support::grpc::GrpcServer;
use support::grpc_channel::{
    call, call_until, endpoint, resolver, two_servers, TwoServers, SERVICE,
};
use support::http_server::RefusingPort;
use support::{eventually, init_tracing, registry, RedisServer, DEADLINE};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_follows_the_registry() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let b = GrpcServer::start("b").await;
    let c = GrpcServer::start("c").await;
    let reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let _reg_b = registry.register(SERVICE, b.instance()).await.unwrap();

    let resolver = resolver(&redis).await;
    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();

    // Calls spread over both servers.
    call_until(&channel, "calls reach both a and b", || {
        a.calls() > 0 && b.calls() > 0
    })
    .await;
    assert_eq!(c.calls(), 0, "c is not registered yet");

    // A third one registered gets a call, within the (generous) deadline.
    let registered = Instant::now();
    let _reg_c = registry.register(SERVICE, c.instance()).await.unwrap();
    eventually("a call reaches c once registered", || async {
        call(&channel).await.expect("no call fails");
        (c.calls() > 0).then_some(())
    })
    .await;
    let delay = registered.elapsed();
    eprintln!("c got its first call {delay:?} after its registration");
    assert!(delay < DEADLINE, "c got no call within {DEADLINE:?}");

    // `a` deregisters but keeps serving (a graceful exit): no call fails,
    // and once the channel has dropped it none reaches it.
    assert!(reg_a.deregister().await.unwrap());
    let mut seen = a.calls();
    let mut quiet = 0;
    eventually("a gets no more calls", || {
        let (now, quiet_before) = (a.calls(), quiet);
        quiet = if now == seen { quiet_before + 1 } else { 0 };
        seen = now;
        let channel = channel.clone();
        async move {
            for _ in 0..10 {
                call(&channel).await.expect("no call fails");
            }
            // Three rounds of ten calls in a row without `a`.
            (quiet_before >= 3).then_some(())
        }
    })
    .await;
    let before = (a.calls(), b.calls(), c.calls());
    for _ in 0..60 {
        let answer = call(&channel).await.expect("no call fails");
        assert_ne!(answer, a.name, "a call reached the deregistered server");
    }
    assert_eq!(a.calls(), before.0, "a was called after its removal");
    assert!(
        b.calls() > before.1 && c.calls() > before.2,
        "b and c share the calls"
    );
    // Its connection closes once it is removed.
    eventually("a's connection closes", || async {
        (a.connections() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_without_deregistering_keeps_calls_succeeding() {
    // Both stay registered: `a`'s lease is kept alive after it dies.
    let TwoServers {
        redis: _redis,
        registry: _registry,
        mut a,
        b,
        reg_a: _reg_a,
        reg_b: _reg_b,
        resolver,
        channel,
    } = two_servers().await;

    a.kill().await;
    let killed = Instant::now();
    // Right at the kill, a call may still be sent to `a` before its
    // connection is seen closed: count those, until 20 in a row succeed.
    let mut failed = 0;
    let mut in_a_row = 0;
    while in_a_row < 20 {
        assert!(
            killed.elapsed() < DEADLINE,
            "calls keep failing after the kill"
        );
        match call(&channel).await {
            Ok(answer) => {
                assert_eq!(answer, b.name);
                in_a_row += 1;
            }
            Err(status) => {
                eprintln!("call failed right at the kill: {status}");
                failed += 1;
                in_a_row = 0;
            }
        }
    }
    eprintln!(
        "{failed} call(s) failed right at the kill; settled after {:?}",
        killed.elapsed()
    );
    assert!(failed <= 3, "{failed} calls failed at the kill");

    // Settled: every call succeeds, while `a` is still registered.
    for _ in 0..200 {
        assert_eq!(call(&channel).await.expect("no call fails"), b.name);
    }
    let listed = resolver.fetch(SERVICE).await.unwrap();
    assert!(
        listed
            .instances()
            .iter()
            .any(|i| i.addr() == a.addr.to_string()),
        "a is still registered: the channel routed around it by itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_under_concurrent_calls_fails_only_calls_in_flight() {
    let TwoServers {
        redis: _redis,
        registry: _registry,
        mut a,
        b,
        reg_a: _reg_a,
        reg_b: _reg_b,
        resolver: _resolver,
        channel,
    } = two_servers().await;

    // Four callers, each one call at a time, while `a` dies.
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (channel, ok, failed, stop) =
                (channel.clone(), ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match call(&channel).await {
                        Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(status) => {
                            eprintln!("concurrent call failed at the kill: {status}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    let until = |n: usize| {
        let ok = ok.clone();
        async move {
            eventually("calls go on", || async {
                (ok.load(Ordering::SeqCst) >= n).then_some(())
            })
            .await
        }
    };
    until(200).await;
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no call fails before the kill"
    );
    a.kill().await;
    let after = ok.load(Ordering::SeqCst);
    until(after + 400).await;
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    let failed = failed.load(Ordering::SeqCst);
    eprintln!(
        "{failed} of {} concurrent calls failed at the kill",
        ok.load(Ordering::SeqCst) + failed
    );
    // At most the calls in flight (four callers), and a few sent before
    // the connection was seen closed.
    assert!(failed <= 12, "{failed} calls failed at the kill");
    for _ in 0..100 {
        assert_eq!(
            call(&channel).await.expect("no call fails once settled"),
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_once_no_instance_is_up() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let refusing = RefusingPort::new();
    let instance = Instance::new(refusing.addr().to_string()).unwrap();
    let _reg = registry.register(SERVICE, instance).await.unwrap();
    let resolver = resolver(&redis).await;
    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();

    // The call waits a while for an instance, then fails: no hang.
    let started = Instant::now();
    let status = call(&channel).await.expect_err("no instance is up");
    eprintln!("failed after {:?}: {status}", started.elapsed());
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    // The next ones fail without waiting again.
    let started = Instant::now();
    let status = call(&channel).await.expect_err("no instance is up");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A server up again gets the calls.
    let a = GrpcServer::start("a").await;
    let _reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    eventually("calls succeed once a is up", || async {
        call(&channel).await.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_channel_closes_its_connections() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let _reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let resolver = resolver(&redis).await;

    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();
    let clone = channel.clone();
    assert_eq!(call(&channel).await.unwrap(), "a");
    assert_eq!(a.connections(), 1, "one connection per instance");
    drop(channel);
    assert_eq!(call(&clone).await.unwrap(), "a", "a clone keeps working");

    // Nothing changes in the registry: the balancer's task is waiting
    // when the last clone goes, and must end, and its connections close.
    drop(clone);
    eventually("the channel's connection closes", || async {
        (a.connections() == 0).then_some(())
    })
    .await;
    drop(resolver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_resolver_then_the_channel_ends_everything() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let _reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let resolver = resolver(&redis).await;
    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();
    assert_eq!(call(&channel).await.unwrap(), "a");

    // The last list stands: the channel still calls `a`.
    drop(resolver);
    for _ in 0..10 {
        assert_eq!(call(&channel).await.unwrap(), "a");
    }
    drop(channel);
    eventually("the channel's connection closes", || async {
        (a.connections() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_fails_to_build_is_skipped() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let b = GrpcServer::start("b").await;
    let _reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let _reg_b = registry.register(SERVICE, b.instance()).await.unwrap();
    let resolver = resolver(&redis).await;

    let b_addr = b.addr.to_string();
    let channel = resolver
        .tonic_channel(SERVICE, move |instance: &Instance| {
            if instance.addr() == b_addr {
                Err("no endpoint for b")
            } else {
                endpoint(instance).map_err(|_| "bad uri")
            }
        })
        .await
        .unwrap();
    for _ in 0..30 {
        assert_eq!(call(&channel).await.unwrap(), "a");
    }
    assert_eq!(b.calls(), 0);
    assert_eq!(b.connections(), 0);
}
