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
