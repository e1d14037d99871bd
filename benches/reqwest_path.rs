//! The layer's cost for `reqwest::Request`s on a cache hit, by part: the
//! retry copy (`try_clone`), the URL rewrite, and the whole layer with
//! retries off and on, each next to a baseline measured right before it
//! (building and sending the request to a no-op inner service).
//!
//! `cargo bench --bench reqwest_path --features reqwest -- --warm-up-time 1 --measurement-time 3`
//!
//! Instruction counts (repeatable on a noisy machine): with `count MODE`
//! as arguments it sends 100 000 requests in `run` and exits, for
//! `valgrind --tool=callgrind --toggle-collect='reqwest_path::run*'`;
//! MODE is `bare`, `clone`, `rewrite`, `off` or `on` (the cases above).

// Only `resolver` and `send` are used here.
#[allow(dead_code)]
mod common;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::task::{Context, Poll};

use common::send;
use criterion::{criterion_group, Criterion};
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use tower::{Layer, Service};

/// Does nothing: the cost left is the layer's.
#[derive(Clone, Copy)]
struct Noop;

impl Service<reqwest::Request> for Noop {
    type Response = reqwest::Response;
    type Error = Infallible;
    type Future = Ready<Result<reqwest::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: reqwest::Request) -> Self::Future {
        black_box(req);
        ready(Ok(reqwest::Response::from(http::Response::new(""))))
    }
}

/// A typical small GET, as reqwest builds it.
fn request(flagged: bool) -> reqwest::Request {
    let url = reqwest::Url::parse("http://orders/v1/items?page=2").expect("valid");
    let mut req = reqwest::Request::new(reqwest::Method::GET, url);
    req.headers_mut()
        .insert(http::header::ACCEPT, http::HeaderValue::from_static("*/*"));
    if flagged {
        req = req.discover();
    }
    req
}

fn reqwest_path(c: &mut Criterion) {
    let mut bare = Noop;
    let mut group = c.benchmark_group("reqwest");
    group.bench_function("baseline: build and send", |b| {
        b.iter(|| send(&mut bare, request(true)))
    });
    group.bench_function("try_clone", |b| {
        b.iter(|| {
            let req = request(true);
            black_box(req.try_clone());
            send(&mut bare, req)
        })
    });
    group.bench_function("URL rewrite", |b| {
        b.iter(|| {
            let mut req = request(true);
            let url = req.url_mut();
            url.set_host(Some("10.0.0.1")).expect("valid");
            url.set_port(Some(8080)).expect("valid");
            send(&mut bare, req)
        })
    });
    for (name, retries) in [("layer, retries off", 0), ("layer, retries on", 2)] {
        let layer = DiscoveryLayer::builder(common::resolver())
            .retries(retries)
            .build();
        let mut svc = layer.layer(Noop);
        group.bench_function(name, |b| b.iter(|| send(&mut svc, request(true))));
    }
    group.finish();
}

/// The measured part of `count MODE`.
#[inline(never)]
fn run(mode: &str) {
    let mut bare = Noop;
    let layer = |retries| {
        DiscoveryLayer::builder(common::resolver())
            .retries(retries)
            .build()
            .layer(Noop)
    };
    let (mut off, mut on) = (layer(0), layer(2));
    for _ in 0..100_000 {
        let mut req = request(true);
        match mode {
            "bare" => send(&mut bare, req),
            "clone" => {
                black_box(req.try_clone());
                send(&mut bare, req)
            }
            "rewrite" => {
                let url = req.url_mut();
                url.set_host(Some("10.0.0.1")).expect("valid");
                url.set_port(Some(8080)).expect("valid");
                send(&mut bare, req)
            }
            "rewrite-ip" => {
                let url = req.url_mut();
                url.set_ip_host(std::net::Ipv4Addr::new(10, 0, 0, 1).into())
                    .expect("valid");
                url.set_port(Some(8080)).expect("valid");
                send(&mut bare, req)
            }
            "rewrite-parse" => {
                let url = req.url_mut();
                let mut s = String::with_capacity(url.as_str().len() + 16);
                s.push_str(url.scheme());
                s.push_str("://10.0.0.1:8080");
                s.push_str(url.path());
                if let Some(query) = url.query() {
                    s.push('?');
                    s.push_str(query);
                }
                *url = reqwest::Url::parse(&s).expect("valid");
                send(&mut bare, req)
            }
            "off" => send(&mut off, req),
            "on" => send(&mut on, req),
            _ => panic!("unknown mode {mode}"),
        }
    }
}

criterion_group!(benches, reqwest_path);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "count") {
        run(args.get(i + 1).map_or("bare", String::as_str));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
