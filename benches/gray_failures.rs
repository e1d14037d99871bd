//! Grey failures (issue #14): what each balancer does when one of three
//! instances is slow, never answers, or answers 503, and what the layer
//! costs over the bare client.
//!
//! ```sh
//! cargo bench --bench gray_failures                # 2 s per run, 16 workers, 4 rounds
//! cargo bench --bench gray_failures -- 1 8 2       # seconds per run, workers, rounds
//! cargo bench --bench gray_failures -- 3 16 8 overhead   # only the overhead table
//! ```
//!
//! Every run starts three servers of `tests/support/faults.rs` on free
//! loopback ports (the first one faulty, the scenario says how), a
//! [`StaticResolver`] with the three (equal weights: no Redis involved), a
//! fresh hyper-util legacy client and a fresh [`DiscoveryLayer`] (so no
//! ejection carries over from one run to the next). WORKERS tasks then send
//! idempotent GETs in a closed loop for the run's duration. Runs of all
//! scenario × balancer cells alternate within a round (the order reversed
//! every other round), and the table aggregates the rounds.
//!
//! The client runs on one thread (a current-thread runtime on the main
//! thread: load tasks, the layer and hyper's connection tasks alike), the
//! servers on a runtime of their own, so the client's CPU is that thread's
//! CPU time (`CLOCK_THREAD_CPUTIME_ID`), not the process's.
//!
//! Columns: requests/s; success (status 200 and the body read, within the
//! bound); latency percentiles and maximum over every request, failed ones
//! included; each server's share of the requests the servers read (an
//! attempt the layer retried counts at each server it reached); attempts
//! per request (server reads ÷ client requests).

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_discovery::balance::{LeastLoaded, RoundRobin, WeightedRandom};
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer, DiscoveryLayerBuilder};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use tokio::runtime::Handle;
use tower::timeout::Timeout;
use tower::{Layer, Service, ServiceExt};

#[path = "../examples/errors/mod.rs"]
mod errors;
#[path = "../tests/support/faults.rs"]
mod faults;
// The accept loop `faults` runs (its other servers go unused here).
#[allow(dead_code)]
#[path = "../tests/support/http_server.rs"]
mod http_server;
#[path = "gray_failures/report.rs"]
mod report;
#[path = "common/tool.rs"]
mod tool;

use faults::{Fault, FaultServer};
use report::Tally;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The servers' runtime threads. One: with the client's thread that makes
/// one per core of a 2-core machine (more adds preemption, i.e. tail
/// latency, to every scenario alike).
const SERVER_THREADS: usize = 1;
/// The service name the layer resolves.
const SERVICE: &str = "gray.echo";
/// Servers per run; the first is the faulty one.
const SERVERS: usize = 3;
/// The delay of the slow server.
const SLOW: Duration = Duration::from_millis(50);
/// The layer's attempt timeout in this benchmark (the default is 15 s).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// A safety net on one request, from outside the layer (a tower timeout):
/// a few attempt timeouts, so the layer's own timeout and retry are what
/// is measured.
const REQUEST_BOUND: Duration = Duration::from_secs(4);

/// The scenarios: how the first server answers (the other two are healthy).
const SCENARIOS: [(&str, Fault); 5] = [
    ("all healthy", Fault::Healthy),
    ("one slowed by 50 ms", Fault::Slow(SLOW)),
    ("one never answers", Fault::Hanging),
    ("one 503 always", Fault::Failing),
    ("one 503 to half", Fault::Flaky),
];

/// Makes the layer from a builder that has the common options set.
type Configure = fn(DiscoveryLayerBuilder<StaticResolver, WeightedRandom>) -> DiscoveryLayer;

/// The balancers compared: adding one is one line.
const BALANCERS: &[(&str, Configure)] = &[
    ("weighted random", |builder| builder.build()),
    ("round robin", |builder| {
        builder.balance(RoundRobin::new()).build()
    }),
    ("least loaded", |builder| {
        builder.balance(LeastLoaded::new()).build()
    }),
];

/// The command line: `[SECONDS_PER_RUN] [WORKERS] [ROUNDS]`.
#[derive(Clone, Copy, Debug)]
struct Settings {
    run: Duration,
    workers: usize,
    rounds: usize,
    /// Only the overhead table (the argument `overhead` after the others).
    overhead_only: bool,
}

impl Settings {
    fn parse(args: Vec<String>) -> Result<Settings, BoxError> {
        let mut args = args.into_iter().peekable();
        let seconds: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2.0);
        let workers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
        let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
        let overhead_only = args.next_if(|a| a == "overhead").is_some();
        if let Some(extra) = args.next() {
            return Err(format!("unexpected argument {extra:?}").into());
        }
        // Bounded so that a typo cannot start a day-long run.
        let run = Duration::try_from_secs_f64(seconds.clamp(0.1, 600.0))?;
        Ok(Settings {
            run,
            workers: workers.clamp(1, 1024),
            rounds: rounds.clamp(1, 100),
            overhead_only,
        })
    }
}

fn main() -> std::process::ExitCode {
    errors::exit_code(start())
}

fn start() -> Result<(), BoxError> {
    let Some(args) = tool::args() else {
        return Ok(());
    };
    let settings = Settings::parse(args)?;
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_THREADS)
        .thread_name("fault-server")
        .enable_all()
        .build()?;
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = client.block_on(run_all(servers.handle().clone(), settings));
    servers.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn run_all(servers: Handle, settings: Settings) -> Result<(), BoxError> {
    let Settings {
        run,
        workers,
        rounds,
        overhead_only,
    } = settings;
    if overhead_only {
        return overhead(&servers, settings).await;
    }
    println!(
        "{SERVERS} servers on loopback, the first faulty; {workers} workers in a closed loop, \
         {run:?} per run, {rounds} rounds, all runs alternating; each request bounded by \
         {REQUEST_BOUND:?} (a tower timeout outside the layer); attempt timeout {ATTEMPT_TIMEOUT:?}\n"
    );
    let cells: Vec<(usize, usize)> = (0..SCENARIOS.len())
        .flat_map(|s| (0..BALANCERS.len()).map(move |b| (s, b)))
        .collect();
    let mut tallies: Vec<Option<Tally>> = cells.iter().map(|_| None).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..cells.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (scenario, balancer) = cells[index];
            let tally = scenario_run(
                &servers,
                SCENARIOS[scenario].1,
                BALANCERS[balancer].1,
                settings,
            )
            .await?;
            report::merge(&mut tallies[index], tally);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    report::scenario_table(
        cells
            .iter()
            .zip(&tallies)
            .filter_map(|(&(s, b), tally)| Some((SCENARIOS[s].0, BALANCERS[b].0, tally.as_ref()?))),
    );
    overhead(&servers, settings).await
}

/// One run of one scenario with one balancer, on fresh servers, client and
/// layer.
async fn scenario_run(
    servers: &Handle,
    fault: Fault,
    configure: Configure,
    settings: Settings,
) -> Result<Tally, BoxError> {
    let mut started = Vec::with_capacity(SERVERS);
    for i in 0..SERVERS {
        let fault = if i == 0 { fault } else { Fault::Healthy };
        started.push(servers.spawn(FaultServer::start(fault)).await??);
    }
    let instances = started
        .iter()
        .map(|server| Instance::from_socket_addr(server.addr()))
        .collect::<Result<Vec<_>, _>>()?;
    let resolver = StaticResolver::new().with_service(SERVICE, instances)?;
    let builder = DiscoveryLayer::builder(resolver);
    let builder = builder.attempt_timeout(Some(ATTEMPT_TIMEOUT));
    let layer = configure(builder);
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let bounded = Timeout::new(layer.layer(client), REQUEST_BOUND);
    let mut tally = closed_loop(bounded, &format!("http://{SERVICE}/"), true, settings).await;
    tally.served = started.iter().map(FaultServer::requests).collect();
    for server in started {
        server.stop().await;
    }
    Ok(tally)
}

/// The bare hyper-util client versus the same client (one connection pool)
/// behind the layer with default options, against one healthy server,
/// alternating; no timeout on either.
async fn overhead(servers: &Handle, settings: Settings) -> Result<(), BoxError> {
    let server = servers.spawn(FaultServer::start(Fault::Healthy)).await??;
    let resolver = StaticResolver::new()
        .with_service(SERVICE, [Instance::from_socket_addr(server.addr())?])?;
    let bare = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let layered = DiscoveryLayer::new(resolver).layer(bare.clone());
    let direct = format!("http://{}/", server.addr());
    let discovered = format!("http://{SERVICE}/");
    // Warm up both paths (connections, the layer's picker cache): not counted.
    let warm_up = Settings {
        run: settings.run.min(Duration::from_millis(500)),
        ..settings
    };
    closed_loop(bare.clone(), &direct, false, warm_up).await;
    closed_loop(layered.clone(), &discovered, true, warm_up).await;
    let mut rounds = Vec::with_capacity(settings.rounds);
    for round in 0..settings.rounds {
        // Alternate which goes first, so drift within a round is shared.
        let (b, l) = if round % 2 == 0 {
            let b = closed_loop(bare.clone(), &direct, false, settings).await;
            (
                b,
                closed_loop(layered.clone(), &discovered, true, settings).await,
            )
        } else {
            let l = closed_loop(layered.clone(), &discovered, true, settings).await;
            (closed_loop(bare.clone(), &direct, false, settings).await, l)
        };
        rounds.push((b, l));
    }
    report::overhead_table(&rounds);
    server.stop().await;
    Ok(())
}

/// `settings.workers` tasks send GETs to `uri` one after another until
/// `settings.run` has passed; requests in flight then finish (each is
/// bounded by the caller's timeout, if any).
async fn closed_loop<S>(client: S, uri: &str, discover: bool, settings: Settings) -> Tally
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<Incoming>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let cpu = report::thread_cpu();
    let started = Instant::now();
    let deadline = started + settings.run;
    let workers: Vec<_> = (0..settings.workers)
        .map(|_| {
            let (client, uri) = (client.clone(), uri.to_owned());
            tokio::spawn(async move {
                let mut tally = Tally::empty();
                while Instant::now() < deadline {
                    let mut request = http::Request::get(uri.as_str());
                    if discover {
                        request = request.discover();
                    }
                    let sent = Instant::now();
                    let ok = match request.body(Empty::new()) {
                        Ok(request) => get(client.clone(), request).await,
                        Err(_) => false,
                    };
                    tally.record(sent.elapsed(), ok);
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::empty();
    for worker in workers {
        // A worker only ends by finishing its loop (it does not panic).
        if let Ok(worker) = worker.await {
            tally.add(worker);
        }
    }
    tally.elapsed = started.elapsed();
    tally.cpu = report::thread_cpu().saturating_sub(cpu);
    tally
}

/// One request: a success if the answer is a 200 whose body arrives.
async fn get<S>(client: S, request: http::Request<Empty<Bytes>>) -> bool
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<Incoming>> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let Ok(response) = client.oneshot(request).await else {
        return false;
    };
    let status = response.status();
    let body = response.into_body().collect().await;
    status == http::StatusCode::OK && body.is_ok()
}
