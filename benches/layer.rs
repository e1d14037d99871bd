//! Layer overhead on a cache hit: the layer around a no-op inner service
//! versus the no-op inner service alone, measured in the same run.
//!
//! Every case is a group of two: `no-op inner alone` (the baseline, measured
//! right before; each iteration builds and sends a flagged request, as a
//! client does) and `with it`. The cases:
//!
//! * `URI rewrite and Host`: the http crate's part of routing, what any
//!   middleware that rewrites the URI authority and sets `Host` pays;
//! * `replay copy`: the copy of the request a retry needs (what any retry
//!   middleware pays, e.g. tower's `Retry`);
//! * `layer, unflagged`: a request the layer passes through;
//! * `layer, static, …`: the layer over a [`StaticResolver`] (the layer's
//!   own cost);
//! * `layer, redis, …`: the layer over a [`RedisResolver`] hit (its cache,
//!   filled from a private redis-server on a free port, never 6379);
//! * `retries off` / `retries on` (the default: keeps that replay copy).
//!
//! `cargo bench --bench layer -- --warm-up-time 1 --measurement-time 3`
//! (with `--features metrics`, `BENCH_RECORDER=atomic` installs a
//! recorder first: see `common::install_recorder`)
//!
//! [`StaticResolver`]: redis_discovery::resolver::StaticResolver
//! [`RedisResolver`]: redis_discovery::RedisResolver

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use common::{request, resolver, send, Noop};
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Uri};
use redis_discovery::layer::DiscoveryLayer;
use redis_discovery::resolver::Resolve;
use support::RedisServer;
use tower::Layer;

fn layer_overhead(c: &mut Criterion) {
    common::install_recorder();
    // The service in a real Redis, as `common::resolver` has it.
    let server = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (redis, _registrations) = rt.block_on(common::redis_resolver(server.url()));

    // This machine's speed drifts within a run, so each case is compared
    // with a baseline measured right before it.
    let mut bare = Noop;
    // The http crate's part of routing: what any middleware that rewrites
    // the URI authority and sets `Host` pays.
    let instance = Authority::from_static("10.0.0.1:8080");
    let host = HeaderValue::from_static("orders");
    paired(c, "URI rewrite and Host", || {
        let mut req = request(true);
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.authority = Some(instance.clone());
        *req.uri_mut() = Uri::from_parts(parts).expect("valid");
        req.headers_mut().insert(HOST, host.clone());
        send(&mut bare, req)
    });
    paired(c, "replay copy", || {
        let req = request(true);
        let copy = black_box(replay(&req));
        send(&mut bare, req);
        drop(copy);
    });
    let mut unflagged = DiscoveryLayer::new(resolver()).layer(Noop);
    paired(c, "layer, unflagged", || {
        send(&mut unflagged, request(false))
    });
    hits(c, "static", resolver());
    hits(c, "redis", redis);
}

/// A hit with retries off and on (two layers on one resolver: each keeps
/// its own picker cache).
fn hits<R: Resolve + Clone>(c: &mut Criterion, name: &str, resolver: R) {
    let mut off = DiscoveryLayer::builder(resolver.clone())
        .retries(0)
        .build()
        .layer(Noop);
    paired(c, &format!("layer, {name}, hit, retries off"), || {
        send(&mut off, request(true))
    });
    let mut on = DiscoveryLayer::new(resolver).layer(Noop);
    paired(c, &format!("layer, {name}, hit, retries on"), || {
        send(&mut on, request(true))
    });
}

/// The copy of a request the layer keeps for a retry, as it makes it.
fn replay(req: &http::Request<()>) -> http::Request<()> {
    let mut copy = http::Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    if !req.extensions().is_empty() {
        *copy.extensions_mut() = req.extensions().clone();
    }
    copy
}

/// The group `case`: the no-op inner service alone (each iteration sends a
/// flagged request, as in every case), then `case` itself.
fn paired(c: &mut Criterion, case: &str, mut run: impl FnMut()) {
    let mut group = c.benchmark_group(case);
    let mut bare = Noop;
    group.bench_function("no-op inner alone", |b| {
        b.iter(|| send(&mut bare, request(true)))
    });
    group.bench_function("with it", |b| b.iter(&mut run));
    group.finish();
}

criterion_group!(benches, layer_overhead);
criterion_main!(benches);
