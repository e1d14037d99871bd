//! End-to-end load: requests through the discovery layer versus the same
//! client sending to a fixed address, in the same run, over loopback.
//!
//! ```sh
//! cargo bench --bench load                 # 40 000 requests per mode, 32 at a time
//! cargo bench --bench load -- 100000 64    # requests per mode, concurrency
//! ```
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`); the
//! service it registers (`load.echo`) is removed at the end. Bounded in
//! count; it only talks to servers it starts on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use redis_discovery::{Instance, RedisRegistry, RedisResolver};
use tower::{Layer, Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve() -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: hyper::Request<Incoming>| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

/// Sends `total` GETs from `concurrency` tasks through `client`.
async fn run<S>(client: S, uri: String, discover: bool, total: usize, concurrency: usize) -> Run
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<Incoming>>
        + Clone
        + Send
        + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, uri, next) = (client.clone(), uri.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let mut req = http::Request::get(uri.as_str())
                    .body(Empty::new())
                    .expect("valid request");
                if discover {
                    req = req.discover();
                }
                let t = Instant::now();
                match client.clone().oneshot(req).await {
                    Ok(resp) => {
                        let _ = resp.into_body().collect().await;
                        latencies.push(t.elapsed());
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies.extend(l);
            errors += e;
        }
    }
    latencies.sort();
    Run {
        elapsed: started.elapsed(),
        latencies,
        errors,
    }
}

fn pct(l: &[Duration], p: f64) -> Duration {
    if l.is_empty() {
        return Duration::ZERO;
    }
    l[((l.len() - 1) as f64 * p) as usize]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[path = "../examples/errors/mod.rs"]
mod errors;
#[path = "common/tool.rs"]
mod tool;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    errors::exit_code(run_all().await)
}

async fn run_all() -> Result<(), BoxError> {
    let Some(args) = tool::args() else {
        return Ok(());
    };
    let mut args = args.into_iter();
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(40_000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    let addr = serve().await?;
    let registry = RedisRegistry::connect(url.as_str()).await?;
    let registration = registry
        .register("load.echo", Instance::from_socket_addr(addr)?)
        .await?;
    let resolver = RedisResolver::connect(url.as_str()).await?;

    let hyper = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let layered = DiscoveryLayer::new(resolver.clone()).layer(hyper.clone());
    let rss_before = rss_kib();

    // Warm up both paths (connections, cache), then measure, alternating.
    run(
        hyper.clone(),
        format!("http://{addr}/"),
        false,
        2_000,
        concurrency,
    )
    .await;
    run(
        layered.clone(),
        "http://load.echo/".into(),
        true,
        2_000,
        concurrency,
    )
    .await;
    let mut results = Vec::new();
    for round in 0..2 {
        let direct = run(
            hyper.clone(),
            format!("http://{addr}/"),
            false,
            total,
            concurrency,
        )
        .await;
        let discovered = run(
            layered.clone(),
            "http://load.echo/".into(),
            true,
            total,
            concurrency,
        )
        .await;
        results.push((round, direct, discovered));
    }

    println!("{total} requests per mode, {concurrency} concurrent, one server on loopback\n");
    println!("| round | mode | req/s | p50 | p99 | errors |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let mut ratios = Vec::new();
    for (round, direct, discovered) in &results {
        for (mode, r) in [
            ("direct (fixed address)", direct),
            ("through DiscoveryLayer", discovered),
        ] {
            println!(
                "| {round} | {mode} | {:.0} | {:?} | {:?} | {} |",
                total as f64 / r.elapsed.as_secs_f64(),
                pct(&r.latencies, 0.5),
                pct(&r.latencies, 0.99),
                r.errors
            );
        }
        ratios.push(discovered.elapsed.as_secs_f64() / direct.elapsed.as_secs_f64());
    }
    println!("\nthroughput cost of the layer (time ratio discovered/direct): {ratios:.3?}");
    println!(
        "RSS: {} KiB before the measured runs, {} KiB after",
        rss_before,
        rss_kib()
    );

    registration.deregister().await?;
    resolver.shutdown().await;
    Ok(())
}
