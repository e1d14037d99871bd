//! Layer overhead on a cache hit: the layer around a no-op inner service
//! versus the no-op inner service alone, measured in the same run.

mod common;

use common::{request, resolver, send, Noop};
use criterion::{criterion_group, criterion_main, Criterion};
use redis_discovery::layer::DiscoveryLayer;
use tower::Layer;

fn layer_overhead(c: &mut Criterion) {
    let resolver = resolver();
    let mut group = c.benchmark_group("layer");

    let mut bare = Noop;
    group.bench_function("no-op inner alone", |b| {
        b.iter(|| send(&mut bare, request(true)))
    });

    let mut layered = DiscoveryLayer::new(resolver.clone()).layer(Noop);
    group.bench_function("layer + no-op inner (hit, retries on)", |b| {
        b.iter(|| send(&mut layered, request(true)))
    });

    let mut no_retry = DiscoveryLayer::builder(resolver.clone())
        .retries(0)
        .build()
        .layer(Noop);
    group.bench_function("layer + no-op inner (hit, retries off)", |b| {
        b.iter(|| send(&mut no_retry, request(true)))
    });

    group.bench_function("layer + no-op inner (unflagged)", |b| {
        b.iter(|| send(&mut layered, request(false)))
    });
    group.finish();
}

criterion_group!(benches, layer_overhead);
criterion_main!(benches);
