//! A fixed number of requests through the layer (or not), for counting
//! instructions with callgrind: repeatable on a noisy machine, unlike time.
//!
//! ```sh
//! cargo build --release --example layer_instructions
//! for mode in bare off on; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode \
//!     target/release/examples/layer_instructions $mode 2>&1 | grep Collected
//! done   # divide by 200 000 for instructions per request
//! ```
//!
//! `bare`: the no-op inner service alone; `off`: through the layer without
//! retries; `on`: through the layer with the default retries.

use http::Request;
use redis_discovery::layer::{Discover, DiscoveryLayer};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

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
fn send<S: Service<Request<()>>>(svc: &mut S, req: Request<()>)
where
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let _ = svc.poll_ready(&mut cx);
    let fut = pin!(svc.call(req));
    if let Poll::Ready(r) = fut.poll(&mut cx) {
        r.unwrap();
    }
}
fn request(flagged: bool) -> Request<()> {
    let mut req = Request::get("http://orders/v1/items?page=2")
        .header(http::header::ACCEPT, "*/*")
        .body(())
        .unwrap();
    if flagged {
        req.extensions_mut().insert(Discover);
    }
    req
}
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "on".to_owned());
    let n: usize = 200_000;
    let instances: Vec<Instance> = (1..=10)
        .map(|i| {
            Instance::new(format!("10.0.0.{i}:8080"))
                .unwrap()
                .with_weight(i)
        })
        .collect();
    let resolver = StaticResolver::new()
        .with_service("orders", instances)
        .unwrap();
    match mode.as_str() {
        "bare" => {
            let mut s = Noop;
            for _ in 0..n {
                send(&mut s, request(true));
            }
        }
        "on" => {
            let mut s = DiscoveryLayer::new(resolver).layer(Noop);
            for _ in 0..n {
                send(&mut s, request(true));
            }
        }
        "off" => {
            let mut s = DiscoveryLayer::builder(resolver)
                .retries(0)
                .build()
                .layer(Noop);
            for _ in 0..n {
                send(&mut s, request(true));
            }
        }
        _ => {}
    }
}
