//! Resolver cache benchmarks, against a private redis-server on a free port
//! (never the one on 6379):
//!
//! * `cached_hit/N`: `Resolve::cached` of one service (with an instance)
//!   with N services cached, the others without instances and kept by a
//!   long negative TTL (should stay flat as N grows);
//! * `cached_hit_max_staleness`: the same with a maximum staleness set
//!   (one clock read more);
//! * `fetch_10k_instances`: one uncached read + decode of a service with
//!   10 000 instances;
//! * printed: heap bytes held per cached instance (counting allocator);
//! * `baseline_arc_clone_drop`: an `Arc` clone and drop, the floor of a hit
//!   (to read the others by on a busy machine).
//!
//! `cargo bench --bench cache -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use redis_discovery::resolver::{RedisResolver, Resolve, Snapshot};
use redis_discovery::ServiceName;
use support::RedisServer;

/// Counts the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const INSTANCES: usize = 10_000;

/// Writes `INSTANCES` live entries of `service` straight into Redis.
fn fill(server: &RedisServer, service: &str, tagged: bool) {
    let mut conn = server.conn();
    let (secs, _): (i64, i64) = redis::cmd("TIME").query(&mut conn).expect("TIME");
    let deadline = (secs + 3600) * 1000;
    let mut pipe = redis::pipe();
    for n in 0..INSTANCES {
        let addr = format!("10.{}.{}.{}:8080", n / 65536, (n / 256) % 256, n % 256);
        let tags = if tagged {
            r#"{"zone":"eu-1a"}"#
        } else {
            "null"
        };
        let json =
            format!(r#"{{"service_name":"{service}","addr":"{addr}","weight":10,"tags":{tags}}}"#);
        pipe.hset(format!("sd:{{{service}}}:instances"), &addr, json)
            .ignore();
        pipe.zadd(format!("sd:{{{service}}}:leases"), &addr, deadline)
            .ignore();
    }
    pipe.exec(&mut conn).expect("fill");
}

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Writes one live instance of `service` straight into Redis.
fn one_instance(server: &RedisServer, service: &str) {
    let mut conn = server.conn();
    let (secs, _): (i64, i64) = redis::cmd("TIME").query(&mut conn).expect("TIME");
    let addr = "10.0.0.1:8080";
    let json = format!(r#"{{"service_name":"{service}","addr":"{addr}","weight":10,"tags":null}}"#);
    redis::pipe()
        .hset(format!("sd:{{{service}}}:instances"), addr, json)
        .zadd(
            format!("sd:{{{service}}}:leases"),
            addr,
            (secs + 3600) * 1000,
        )
        .exec(&mut conn)
        .expect("one instance");
}

/// Heap bytes a snapshot of `service` holds, per instance.
fn bytes_per_instance(rt: &tokio::runtime::Runtime, resolver: &RedisResolver, service: &str) {
    // Warm up buffers first, so only the snapshot is counted.
    drop(rt.block_on(resolver.fetch(service)).expect("fetch"));
    let before = live_bytes();
    let snapshot: Snapshot = rt.block_on(resolver.fetch(service)).expect("fetch");
    let held = live_bytes() - before;
    println!(
        "{service}: {} instances, {held} bytes held, {:.0} bytes per instance",
        snapshot.len(),
        held as f64 / snapshot.len() as f64
    );
}

fn benches(c: &mut Criterion) {
    // The machine's speed, to read the others by: a hit can't be cheaper
    // than this (its one `Arc` clone, and the drop of the result).
    let arc = std::sync::Arc::new(5u64);
    c.bench_function("baseline_arc_clone_drop", |b| {
        b.iter(|| black_box(&arc).clone())
    });

    let server = RedisServer::start();
    one_instance(&server, "svc-0");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let resolver = rt
        .block_on(
            RedisResolver::builder(server.url())
                .refresh_interval(Duration::from_secs(3600))
                .idle_expiry(Duration::from_secs(3600))
                .negative_ttl(Duration::from_secs(3600))
                .connect(),
        )
        .expect("resolver");

    // Hits with 1, 100, 10 000 services cached; always the same one asked.
    let mut group = c.benchmark_group("cached_hit");
    let mut cached = 0;
    for services in [1usize, 100, 10_000] {
        rt.block_on(async {
            let names: Vec<ServiceName> = (cached..services)
                .map(|n| ServiceName::new(format!("svc-{n}")).expect("name"))
                .collect();
            for chunk in names.chunks(500) {
                let reads = chunk.iter().map(|name| resolver.resolve(name));
                for result in futures_util::future::join_all(reads).await {
                    result.expect("resolve");
                }
            }
        });
        cached = services;
        assert_eq!(resolver.cached_services(), services);
        group.bench_with_input(BenchmarkId::from_parameter(services), &services, |b, _| {
            b.iter(|| resolver.cached(black_box("svc-0")))
        });
    }
    group.finish();

    let stale = rt
        .block_on(
            RedisResolver::builder(server.url())
                .refresh_interval(Duration::from_secs(3600))
                .max_staleness(Duration::from_secs(7200))
                .connect(),
        )
        .expect("resolver");
    rt.block_on(stale.resolve(&ServiceName::new("svc-0").expect("name")))
        .expect("resolve");
    c.bench_function("cached_hit_max_staleness", |b| {
        b.iter(|| stale.cached(black_box("svc-0")))
    });

    fill(&server, "big", false);
    fill(&server, "big-tagged", true);
    let mut group = c.benchmark_group("fetch_10k_instances");
    group.sample_size(20);
    group.bench_function("no_tags", |b| {
        b.to_async(&rt).iter(|| async {
            let snapshot = resolver.fetch("big").await.expect("fetch");
            assert_eq!(snapshot.len(), INSTANCES);
            snapshot
        })
    });
    group.finish();
    bytes_per_instance(&rt, &resolver, "big");
    bytes_per_instance(&rt, &resolver, "big-tagged");
}

criterion_group!(cache, benches);
criterion_main!(cache);
