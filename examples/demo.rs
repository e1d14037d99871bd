//! The first thing to run: `cargo run --example demo`.
//!
//! Three HTTP servers register as `demo.echo` with weights 1, 3 and 6; a
//! client sends requests for `http://demo.echo/…` through the discovery
//! layer; one server crashes, another is drained; everything is cleaned up.
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`). If
//! none answers there and `redis-server` is installed, it starts a private
//! one on a free port. The demo exits non-zero if anything it shows fails.
//!
//! Its client is hyper-util's, so the crate's `hyper-util` feature is on
//! (the crate's dev-dependencies turn it on for the examples): with it,
//! a request sent on a pooled connection the crashed server closed is
//! retried on another instance. Turn it on in your own `Cargo.toml` too.

#[path = "errors/mod.rs"]
mod errors;

use std::collections::HashMap;
use std::convert::Infallible;
use std::error::Error;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer, DiscoveryService};
use redis_discovery::{Instance, RedisRegistry, RedisResolver, Registration, Resolve, ServiceName};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn Error + Send + Sync>;

const SERVICE: &str = "demo.echo";
const WEIGHTS: [u32; 3] = [1, 3, 6];
const REQUESTS: usize = 4000;

#[allow(dead_code)]
fn main() -> std::process::ExitCode {
    let runtime = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let (url, _private) = match pick_redis(&url) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&url)) {
        Ok(report) if report.ok() => {
            println!("\nDone: every step behaved as shown.");
            std::process::ExitCode::SUCCESS
        }
        Ok(report) => {
            eprintln!("\nThe demo did not behave as it should: {report:?}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("\ndemo failed: {}", errors::chain(&*e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// What the demo observed, for its own check and for the test that runs it.
#[derive(Debug, Default)]
pub struct Report {
    /// (weight, expected share, observed share) per instance, in step 2.
    pub shares: Vec<(u32, f64, f64)>,
    /// Requests sent in step 2.
    pub requests: usize,
    /// Requests that failed in step 3 (crash) and step 4 (drain).
    pub failed: usize,
    /// Requests the drained instance received after it was drained.
    pub to_drained: usize,
    /// Keys of the demo left in Redis at the end.
    pub keys_left: usize,
}

impl Report {
    /// How far an observed share may be from its expected share: five
    /// standard deviations of a binomial share. A fair picker lands outside
    /// about once in a million runs, so the check cannot flake, yet a bias of
    /// a few points is caught (at 4000 requests: ±3.9 points at 60 %).
    pub fn allowed_deviation(&self, expected: f64) -> f64 {
        5.0 * (expected * (1.0 - expected) / self.requests.max(1) as f64).sqrt()
    }

    /// Whether every observed share is within [`Report::allowed_deviation`].
    pub fn shares_ok(&self) -> bool {
        !self.shares.is_empty()
            && self
                .shares
                .iter()
                .all(|&(_, e, o)| (e - o).abs() <= self.allowed_deviation(e))
    }

    /// Whether everything the demo claims held.
    pub fn ok(&self) -> bool {
        self.shares_ok() && self.failed == 0 && self.to_drained == 0 && self.keys_left == 0
    }
}

/// A Redis to use: the one at `url`, or a private one if none answers.
fn pick_redis(url: &str) -> Result<(String, Option<PrivateRedis>), String> {
    if ping(url) {
        println!("Using the Redis at {url}");
        return Ok((url.to_owned(), None));
    }
    println!("No Redis answers at {url}.");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|_| {
            "redis-server is not installed either. Start a Redis and set REDIS_URL, or install one: \
             `apt-get install redis-server` (Debian/Ubuntu), `brew install redis` (macOS)."
                .to_owned()
        })?;
    let private = PrivateRedis(child);
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping(&url) {
        if Instant::now() > deadline {
            return Err("the private redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("Started a private redis-server at {url} (stopped when the demo ends).");
    Ok((url, Some(private)))
}

fn ping(url: &str) -> bool {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

struct PrivateRedis(Child);

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One server "process": its own runtime, HTTP server and registration,
/// so it can crash (runtime shut down: no deregister, no heartbeat).
struct Server {
    addr: SocketAddr,
    weight: u32,
    runtime: Option<Runtime>,
    registration: Arc<Mutex<Option<Registration>>>,
}

impl Server {
    fn start(url: &str, weight: u32) -> Result<Server, BoxError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let url = url.to_owned();
        let (addr, registration) = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(serve(listener, addr));
            // Short leases so the crash in step 3 shows quickly.
            let registry = RedisRegistry::builder(url)
                .lease_ttl(Duration::from_secs(3))
                .heartbeat_interval(Duration::from_secs(1))
                .connect()
                .await?;
            let instance = Instance::from_socket_addr(addr)?.with_weight(weight);
            let registration = registry.register(SERVICE, instance).await?;
            Ok::<_, BoxError>((addr, registration))
        })?;
        Ok(Server {
            addr,
            weight,
            runtime: Some(runtime),
            registration: Arc::new(Mutex::new(Some(registration))),
        })
    }

    /// Like `kill -9`: the server and its heartbeat stop, nothing is deregistered.
    fn crash(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // The registration would deregister when dropped: a crash does not.
            if let Ok(mut slot) = self.registration.try_lock() {
                std::mem::forget(slot.take());
            }
            rt.shutdown_background();
        }
    }

    /// Runs `f` with the registration on the server's own runtime.
    async fn with_registration<F, Fut>(&self, f: F) -> Result<(), BoxError>
    where
        F: FnOnce(Registration) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Option<Registration>, BoxError>> + Send,
    {
        let Some(rt) = &self.runtime else {
            return Ok(());
        };
        let slot = self.registration.clone();
        rt.spawn(async move {
            let mut slot = slot.lock().await;
            if let Some(reg) = slot.take() {
                *slot = f(reg).await?;
            }
            Ok::<_, BoxError>(())
        })
        .await?
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, addr: SocketAddr) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |_req: hyper::Request<Incoming>| async move {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        addr.to_string(),
                    ))))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type HttpClient = DiscoveryService<Client<HttpConnector, String>>;

/// GET http://demo.echo/… through the layer; returns who answered.
async fn get(client: &HttpClient, path: &str) -> Result<String, BoxError> {
    let request = http::Request::get(format!("http://{SERVICE}{path}"))
        .discover()
        .body(String::new())?;
    let response = client.clone().oneshot(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Runs the demo against the Redis at `url`.
pub async fn run(url: &str) -> Result<Report, BoxError> {
    let mut report = Report {
        requests: REQUESTS,
        ..Report::default()
    };
    let name = ServiceName::new(SERVICE)?;

    println!("\n1. Starting three HTTP servers that register as {SERVICE} with weights 1, 3 and 6");
    let mut servers = Vec::new();
    for weight in WEIGHTS {
        let url = url.to_owned();
        let server = tokio::task::spawn_blocking(move || Server::start(&url, weight)).await??;
        println!("   http://{} registered, weight {weight}", server.addr);
        servers.push(server);
    }

    let resolver = RedisResolver::connect(url).await?;
    let client: HttpClient = DiscoveryLayer::new(resolver.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http());

    println!(
        "\n2. Sending {REQUESTS} requests to http://{SERVICE}/hello through the discovery layer"
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..REQUESTS {
        *counts.entry(get(&client, "/hello").await?).or_default() += 1;
    }
    let total_weight: u32 = WEIGHTS.iter().sum();
    println!(
        "   {:<22} {:>6} {:>9} {:>9}",
        "instance", "weight", "expected", "observed"
    );
    for s in &servers {
        let expected = s.weight as f64 / total_weight as f64;
        let observed = *counts.get(&s.addr.to_string()).unwrap_or(&0) as f64 / REQUESTS as f64;
        println!(
            "   {:<22} {:>6} {:>8.1}% {:>8.1}%",
            s.addr,
            s.weight,
            expected * 100.0,
            observed * 100.0
        );
        report.shares.push((s.weight, expected, observed));
    }

    let crashed = servers[1].addr;
    println!("\n3. Crashing {crashed} (no deregister, like kill -9) and sending requests until it drops out");
    servers[1].crash();
    let started = Instant::now();
    let mut sent = 0;
    loop {
        sent += 1;
        if let Err(e) = get(&client, "/after-crash").await {
            report.failed += 1;
            println!("   request failed: {}", errors::chain(&*e));
        }
        let listed = resolver.resolve(&name).await?;
        if !listed
            .instances()
            .iter()
            .any(|i| i.addr() == crashed.to_string())
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err("the crashed instance did not drop out within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "   {sent} requests, {} failed; {crashed} dropped out of {SERVICE} after {:.1}s (its lease ran out)",
        report.failed,
        started.elapsed().as_secs_f64()
    );

    let drained = servers[2].addr;
    println!("\n4. Draining {drained} to weight 0");
    servers[2]
        .with_registration(|reg| async move {
            let drained = reg.instance().with_weight(0);
            reg.update(drained).await?;
            Ok(Some(reg))
        })
        .await?;
    let started = Instant::now();
    loop {
        let listed = resolver.resolve(&name).await?;
        if listed
            .instances()
            .iter()
            .any(|i| i.addr() == drained.to_string() && i.weight() == 0)
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err("the drain did not reach the client within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "   the client saw the change after {:.0} ms (pushed by Redis pub/sub)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let failed_before = report.failed;
    for _ in 0..300 {
        match get(&client, "/after-drain").await {
            Ok(who) if who == drained.to_string() => report.to_drained += 1,
            Ok(_) => {}
            Err(e) => {
                report.failed += 1;
                println!("   request failed: {}", errors::chain(&*e));
            }
        }
    }
    println!(
        "   300 requests: {} to the drained instance, {} failed",
        report.to_drained,
        report.failed - failed_before
    );

    println!("\n5. Deregistering everything");
    for s in &servers {
        s.with_registration(|reg| async move {
            reg.deregister().await?;
            Ok(None)
        })
        .await?;
    }
    drop(client);
    resolver.shutdown().await;
    drop(servers);
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("sd:{{{SERVICE}}}:*"))
        .query_async(&mut conn)
        .await?;
    let indexed: bool = redis::cmd("SISMEMBER")
        .arg("sd:services")
        .arg(SERVICE)
        .query_async(&mut conn)
        .await?;
    report.keys_left = keys.len() + usize::from(indexed);
    println!("   keys left behind for {SERVICE}: {}", report.keys_left);
    Ok(report)
}
