//! `redis-discovery proxy` against nginx and HAProxy (issue #16): the
//! same three upstreams with weights 1/3/6, the same `wrk` load, in the
//! same run, alternating.
//!
//! ```sh
//! tools/proxy_bench.sh                       # installs nginx, haproxy, wrk; 10 s runs, 64 connections, 5 rounds
//! tools/proxy_bench.sh 10 64 7 rr            # 7 rounds, round robin everywhere
//! cargo bench --features cli --bench proxy_peers -- 5 64 3 nginx haproxy   # a subset
//! ```
//!
//! Arguments: `[SECONDS] [CONNECTIONS] [ROUNDS] [rr] [nginx|haproxy|proxy]…`.
//!
//! Starts, on free loopback ports: a private `redis-server`; three HTTP/1.1
//! upstreams (`tests/support/faults.rs`, healthy: a 200 with a 2-byte body,
//! each counting the requests it reads; one tokio thread in this process
//! for all three); a `redis-discovery register` sidecar per upstream with
//! its weight; and the contenders, each a plain reverse proxy for
//! `Host: peers` to those upstreams:
//! - nginx: a master and one worker per core, `random` with the weights,
//!   `keepalive 64` to the upstreams, `keepalive_requests` unbounded
//!   both ways (HAProxy and the proxy never close a busy connection),
//!   `X-Forwarded-For` added;
//! - HAProxy: `nbthread` one per core, `balance random(1)` with the
//!   weights (plain weighted random; the default 2 draws would prefer the
//!   less loaded), `http-reuse always`, `option forwardfor`;
//! - `redis-discovery proxy --balance weighted-random`, discovering the
//!   upstreams in the Redis.
//!
//! With `rr`: nginx's default (smooth weighted round robin), HAProxy
//! `roundrobin`, the proxy's `round-robin`. Access logs are off for all
//! three (nginx `access_log off`, no HAProxy `log`, the proxy's `access`
//! target below `RUST_LOG=warn`).
//!
//! Each contender gets a 2 s warm-up, then every round runs
//! `wrk -t2 -cCONNECTIONS -dSECONDS --latency` against each, in an order
//! rotated every round (A B C, B C A, C A B…). A run records wrk's
//! requests/s, p50 and p99, the contender's CPU time (utime + stime from
//! `/proc/PID/stat`, nginx's master and workers summed) per response, the
//! upstreams' shares, and the CPU of wrk, the upstreams and the rest of
//! the machine (other users of a shared machine). Everything is stopped,
//! and the temporary directory removed, at the end, on error, and on
//! SIGINT/SIGTERM (after the run in progress); the contenders also get
//! SIGTERM if this process dies.
//!
//! Profiling: `PROXY_PEERS_WRAP='valgrind --tool=callgrind --trace-children=yes
//! --callgrind-out-file=/tmp/cg.%p'` starts every contender under that
//! command (the CPU figures are then the tool's); `perf record -p PID`
//! attaches to a running one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "proxy_peers/contenders.rs"]
mod contenders;
#[path = "../examples/errors/mod.rs"]
mod errors;
#[path = "proxy_peers/measure.rs"]
mod measure;
#[path = "proxy_peers/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "common/tool.rs"]
mod tool;

use contenders::{Contender, Kind, Policy, Setup, TempDir};
use report::Run;
use support::faults::{Fault, FaultServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service every request is for (its `Host`).
const SERVICE: &str = "peers";
/// The upstreams' weights, as the issue asks.
const WEIGHTS: [u32; 3] = [1, 3, 6];
/// Each contender's run before the first round, not counted: connections
/// to the upstreams opened, caches filled.
const WARM_UP: Duration = Duration::from_secs(2);

/// Set by SIGINT/SIGTERM: stop after the run in progress.
static STOP: AtomicBool = AtomicBool::new(false);

/// The command line.
#[derive(Debug)]
struct Settings {
    run: Duration,
    connections: usize,
    rounds: usize,
    policy: Policy,
    kinds: Vec<Kind>,
}

impl Settings {
    fn parse(args: Vec<String>) -> Result<Settings, BoxError> {
        let mut numbers = Vec::new();
        let mut policy = Policy::WeightedRandom;
        let mut kinds = Vec::new();
        for arg in args {
            if let Ok(n) = arg.parse::<u64>() {
                numbers.push(n);
            } else if arg == "rr" {
                policy = Policy::RoundRobin;
            } else if let Some(kind) = Kind::ALL.into_iter().find(|k| k.word() == arg) {
                kinds.push(kind);
            } else {
                return Err(format!("unexpected argument {arg:?}").into());
            }
        }
        if numbers.len() > 3 {
            return Err("at most three numbers: SECONDS CONNECTIONS ROUNDS".into());
        }
        let number = |i: usize, default: u64| numbers.get(i).copied().unwrap_or(default);
        if kinds.is_empty() {
            kinds = Kind::ALL.to_vec();
        }
        // Bounded so that a typo cannot start a day-long run.
        Ok(Settings {
            run: Duration::from_secs(number(0, 10).clamp(1, 600)),
            connections: usize::try_from(number(1, 64))?.clamp(measure::WRK_THREADS, 10_000),
            rounds: usize::try_from(number(2, 5))?.clamp(1, 100),
            policy,
            kinds,
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
    stop_on_signals();
    for tool in ["wrk"]
        .into_iter()
        .chain(settings.kinds.contains(&Kind::Nginx).then_some("nginx"))
        .chain(settings.kinds.contains(&Kind::Haproxy).then_some("haproxy"))
    {
        if !on_path(tool) {
            return Err(format!("{tool} is not installed: run tools/proxy_bench.sh").into());
        }
    }
    // Dropped in reverse order: the contenders first, the upstreams last.
    let upstream_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("upstream")
        .enable_all()
        .build()?;
    let upstreams = WEIGHTS
        .iter()
        .map(|_| upstream_runtime.block_on(FaultServer::start(Fault::Healthy)))
        .collect::<Result<Vec<_>, _>>()?;
    let weighted: Vec<_> = upstreams
        .iter()
        .map(FaultServer::addr)
        .zip(WEIGHTS)
        .collect();
    let redis = support::RedisServer::start();
    let _sidecars = weighted
        .iter()
        .map(|(addr, weight)| {
            let mut sidecar = support::cli::spawn(
                &redis.url(),
                &[
                    "register",
                    SERVICE,
                    &addr.to_string(),
                    "--weight",
                    &weight.to_string(),
                ],
            );
            let lines = support::cli::lines(&mut sidecar);
            support::cli::wait_for_line(&lines, "registered");
            sidecar
        })
        .collect::<Vec<_>>();
    let dir = TempDir::new("proxy_peers")?;
    let setup = Setup {
        service: SERVICE,
        upstreams: &weighted,
        policy: settings.policy,
        redis_url: &redis.url(),
        cli: std::path::Path::new(support::cli::BIN),
        dir: dir.path(),
    };
    let contenders = settings
        .kinds
        .iter()
        .map(|&kind| Contender::start(kind, &setup))
        .collect::<Result<Vec<_>, _>>()?;
    header(&settings);
    for contender in &contenders {
        let warm_up = measure(contender, &upstreams, WARM_UP, settings.connections)?;
        println!(
            "warm-up  {:<22} {} requests",
            contender.kind.name(),
            warm_up.wrk.requests
        );
    }
    let mut runs: Vec<Vec<Run>> = contenders.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        for offset in 0..contenders.len() {
            let index = (round + offset) % contenders.len();
            if STOP.load(Ordering::Relaxed) {
                return Err("interrupted".into());
            }
            let contender = &contenders[index];
            let run = measure(contender, &upstreams, settings.run, settings.connections)?;
            report::run_line(round + 1, contender.kind.name(), &run);
            runs[index].push(run);
        }
    }
    let names: Vec<&str> = contenders.iter().map(|c| c.kind.name()).collect();
    let baseline = contenders.iter().position(|c| c.kind == Kind::Nginx);
    report::summary(&names, &runs, &WEIGHTS, baseline);
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

/// One `wrk` run against `contender`, with the CPU and the upstreams'
/// counts around it.
fn measure(
    contender: &Contender,
    upstreams: &[FaultServer],
    run: Duration,
    connections: usize,
) -> Result<Run, BoxError> {
    let pids = contender.pids();
    let own = std::process::id();
    let served = || {
        upstreams
            .iter()
            .map(FaultServer::requests)
            .collect::<Vec<_>>()
    };
    let (cpu, wrk_cpu, upstreams_cpu, machine_cpu, before) = (
        measure::cpu_of(&pids),
        children_cpu(),
        measure::cpu(own),
        measure::machine_busy(),
        served(),
    );
    let started = Instant::now();
    let wrk = measure::wrk(contender.addr, SERVICE, connections, run)?;
    let wall = started.elapsed();
    Ok(Run {
        wrk,
        cpu: measure::cpu_of(&pids).since(cpu),
        wrk_cpu: children_cpu().saturating_sub(wrk_cpu),
        upstreams_cpu: measure::cpu(own).since(upstreams_cpu).total(),
        machine_cpu: measure::machine_busy().saturating_sub(machine_cpu),
        wall,
        served: served()
            .into_iter()
            .zip(before)
            .map(|(after, before)| after.saturating_sub(before))
            .collect(),
    })
}

/// CPU time of this process's children that have exited and been waited
/// for (`wrk`, once its run is over).
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes only into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// What was measured, on what.
fn header(settings: &Settings) {
    let version = |program: &str, arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .output()
            .map(|o| {
                let text = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default()
    };
    println!(
        "{} upstreams, weights {WEIGHTS:?}; wrk -t{} -c{} -d{}s --latency, {} rounds, {:?}; \
         {} cores; load average {}",
        WEIGHTS.len(),
        measure::WRK_THREADS,
        settings.connections,
        settings.run.as_secs(),
        settings.rounds,
        settings.policy,
        measure::cores(),
        load_average(),
    );
    for (program, arg) in [("nginx", "-v"), ("haproxy", "-v"), ("wrk", "--version")] {
        println!("  {}", version(program, arg));
    }
    println!();
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn stop_on_signals() {
    extern "C" fn stop(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let handler: extern "C" fn(libc::c_int) = stop;
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}
