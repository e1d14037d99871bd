//! Layer overhead on a cache hit: the layer around a no-op inner service
//! versus the no-op inner service alone, measured in the same run.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll};

use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use redis_discovery::layer::{Discover, DiscoveryLayer};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use tower::{Layer, Service};

/// Does nothing: the cost left is the layer's.
#[derive(Clone, Copy)]
struct Noop;

impl Service<Request<()>> for Noop {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(()))
    }
}

/// One request through `svc`, polled to completion without a runtime.
fn send<S>(svc: &mut S, req: Request<()>)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(r) => {
            r.expect("the request succeeds");
        }
        Poll::Pending => panic!("a hit never waits"),
    }
}

fn request(flagged: bool) -> Request<()> {
    let mut req = Request::get("http://orders/v1/items?page=2")
        .body(())
        .expect("valid request");
    if flagged {
        req.extensions_mut().insert(Discover);
    }
    req
}

fn layer_overhead(c: &mut Criterion) {
    let instances: Vec<Instance> = (1..=10)
        .map(|i| {
            Instance::new(format!("10.0.0.{i}:8080"))
                .expect("valid")
                .with_weight(i)
        })
        .collect();
    let resolver = StaticResolver::new()
        .with_service("orders", instances)
        .expect("valid");
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
