//! The layer-overhead setup shared by `benches/layer.rs` (time, criterion)
//! and `benches/layer_instructions.rs` (instructions, callgrind).
//! Both include `tests/support` as the module `support` (for
//! [`redis_resolver`]).

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll};

use http::Request;
use redis_discovery::layer::Discover;
use redis_discovery::resolver::{Resolve, StaticResolver};
use redis_discovery::{Instance, RedisRegistry, RedisResolver, Registration, ServiceName};
use tower::Service;

/// Does nothing: the cost left is the layer's.
#[derive(Clone, Copy)]
pub struct Noop;

impl Service<Request<()>> for Noop {
    type Response = http::Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<()>, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(http::Response::new(())))
    }
}

/// One request through `svc`, polled to completion without a runtime.
pub fn send<S, Req>(svc: &mut S, req: Req)
where
    S: Service<Req>,
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

/// A typical small GET: one header, as clients send (`Accept`).
pub fn request(flagged: bool) -> Request<()> {
    let mut req = Request::get("http://orders/v1/items?page=2")
        .header(http::header::ACCEPT, "*/*")
        .body(())
        .expect("valid request");
    if flagged {
        req.extensions_mut().insert(Discover);
    }
    req
}

/// Instances of weights 1 to 10.
pub fn instances() -> Vec<Instance> {
    (1..=10)
        .map(|i| {
            Instance::new(format!("10.0.0.{i}:8080"))
                .expect("valid")
                .with_weight(i)
        })
        .collect()
}

/// Service `orders` with [`instances`].
pub fn resolver() -> StaticResolver {
    StaticResolver::new()
        .with_service("orders", instances())
        .expect("valid")
}

/// Service `orders` with [`instances`] registered in the Redis at `url`, and
/// a [`RedisResolver`] that has it cached (refresh and idle expiry long
/// enough not to run while measuring). Keep the registrations alive.
pub async fn redis_resolver(url: String) -> (RedisResolver, Vec<Registration>) {
    let registry = RedisRegistry::connect(url.as_str())
        .await
        .expect("registry");
    let name = ServiceName::new("orders").expect("name");
    let mut registrations = Vec::new();
    for instance in instances() {
        registrations.push(registry.register(&name, instance).await.expect("register"));
    }
    let resolver = RedisResolver::builder(url)
        .refresh_interval(std::time::Duration::from_secs(3600))
        .idle_expiry(std::time::Duration::from_secs(3600))
        .connect()
        .await
        .expect("resolver");
    let snapshot = resolver.resolve(&name).await.expect("resolve");
    assert_eq!(snapshot.len(), 10);
    (resolver, registrations)
}

/// With `BENCH_RECORDER` set (feature `metrics`), installs a global
/// recorder before any layer is built, to measure what recording costs:
/// `debugging` (`metrics-util`'s, which keeps every value: short runs
/// only) or `atomic` (a counter's and a histogram's count and sum in
/// atomics, as cheap as a recorder gets).
pub fn install_recorder() {
    let Ok(which) = std::env::var("BENCH_RECORDER") else {
        return;
    };
    #[cfg(feature = "metrics")]
    match which.as_str() {
        "debugging" => metrics_util::debugging::DebuggingRecorder::new()
            .install()
            .expect("the first recorder"),
        "atomic" => metrics::set_global_recorder(atomic::Atomic).expect("the first recorder"),
        other => panic!("BENCH_RECORDER={other}: expected debugging or atomic"),
    }
    #[cfg(not(feature = "metrics"))]
    panic!("BENCH_RECORDER={which} needs --features metrics");
}

/// The `atomic` recorder of [`install_recorder`].
#[cfg(feature = "metrics")]
mod atomic {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    pub struct Atomic;

    #[derive(Default)]
    struct Sum {
        count: AtomicU64,
        sum: AtomicU64,
    }

    impl HistogramFn for Sum {
        fn record(&self, value: f64) {
            self.count.fetch_add(1, Ordering::Relaxed);
            // Whole nanoseconds: one atomic add, no f64 CAS loop.
            self.sum.fetch_add((value * 1e9) as u64, Ordering::Relaxed);
        }
    }

    impl Recorder for Atomic {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(AtomicU64::new(0)))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(AtomicU64::new(0)))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Sum::default()))
        }
    }
}
