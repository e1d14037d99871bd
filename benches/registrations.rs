//! What many registrations cost: registers SERVICES x INSTANCES instances
//! in one registry against a private redis-server, lets the heartbeat run
//! for a few intervals, and prints tokio's alive tasks, Redis's connected
//! clients, Redis commands per second in the steady state, this process's
//! RSS and how long registering took.
//!
//! ```sh
//! cargo bench --bench registrations -- [SERVICES] [INSTANCES] [TTL_SECS] [HEARTBEAT_SECS] [INTERVALS]
//! ```
//!
//! Defaults: 1 000 services x 10 instances, TTL 15 s, heartbeat 5 s, 3
//! intervals measured. Needs `redis-server` on the PATH; it is started on
//! a free loopback port (nothing saved) and killed at the end. Only the
//! crate's public API is used.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_discovery::{Instance, RedisRegistry};

#[path = "common/tool.rs"]
mod tool;

/// A private redis-server, killed when dropped (also on a panic).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Result<Server, Box<dyn std::error::Error>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.info("server").is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One `INFO section`, on a connection of its own.
    fn info(&self, section: &str) -> redis::RedisResult<String> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
        redis::cmd("INFO").arg(section).query(&mut conn)
    }

    /// A number field of an `INFO` section.
    fn info_field(&self, section: &str, field: &str) -> Result<u64, Box<dyn std::error::Error>> {
        let info = self.info(section)?;
        let value = info
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .ok_or_else(|| format!("no {field} in INFO {section}"))?;
        Ok(value.trim().parse()?)
    }
}

impl Server {
    /// Calls of one command so far (`INFO commandstats`, lowercase name).
    fn calls(&self, command: &str) -> Result<u64, Box<dyn std::error::Error>> {
        let info = self.info("commandstats")?;
        let prefix = format!("cmdstat_{command}:calls=");
        Ok(info
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
            .unwrap_or(0))
    }

    /// Seconds of CPU Redis used so far (user + system).
    fn cpu(&self) -> Result<f64, Box<dyn std::error::Error>> {
        let info = self.info("cpu")?;
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Ok(field("used_cpu_user") + field("used_cpu_sys"))
    }

    /// What the steady state is measured by.
    fn sample(&self) -> Result<Sample, Box<dyn std::error::Error>> {
        Ok(Sample {
            at: Instant::now(),
            commands: self.info_field("stats", "total_commands_processed")?,
            scripts: self.calls("evalsha")? + self.calls("eval")?,
            sadds: self.calls("sadd")?,
            redis_cpu: self.cpu()?,
            own_cpu: own_cpu(),
        })
    }
}

struct Sample {
    at: Instant,
    commands: u64,
    scripts: u64,
    sadds: u64,
    redis_cpu: f64,
    own_cpu: f64,
}

/// Seconds of CPU this process used so far (user + system, from
/// `/proc/self/stat`, at 100 ticks a second; Linux).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line.
    (ticks(11) + ticks(12)) / 100.0
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's resident set size, from `/proc/self/status` (Linux).
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The `n`-th argument (from 0), or `default`.
fn arg(args: &[String], n: usize, default: u64) -> Result<u64, Box<dyn std::error::Error>> {
    match args.get(n) {
        Some(value) => Ok(value.parse()?),
        None => Ok(default),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(args) = tool::args() else {
        return Ok(());
    };
    let services = arg(&args, 0, 1000)?;
    let instances = arg(&args, 1, 10)?;
    let ttl = Duration::from_secs(arg(&args, 2, 15)?);
    let heartbeat = Duration::from_secs(arg(&args, 3, 5)?);
    let intervals = u32::try_from(arg(&args, 4, 3)?)?;
    let instances = u16::try_from(instances)?;

    let server = Server::start()?;
    let baseline_tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let registry = RedisRegistry::builder(server.url())
        .lease_ttl(ttl)
        .heartbeat_interval(heartbeat)
        .connect()
        .await?;

    let started = Instant::now();
    let mut registrations = Vec::new();
    for service in 0..services {
        let name = format!("svc-{service}");
        for port in 1..=instances {
            let instance = Instance::new(format!("10.0.0.1:{port}"))?;
            registrations.push(registry.register(name.as_str(), instance).await?);
        }
    }
    let registering = started.elapsed();

    // Let one interval pass, so every registration has heartbeated once,
    // then measure the steady state.
    tokio::time::sleep(heartbeat).await;
    let before = server.sample()?;
    tokio::time::sleep(heartbeat * intervals).await;
    let after = server.sample()?;
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let per_second = |a: u64, b: u64| (b - a) as f64 / seconds;

    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
        - baseline_tasks;
    // Less the connection asking.
    let clients = server.info_field("clients", "connected_clients")? - 1;
    println!(
        "{} registrations ({services} services x {instances}), TTL {ttl:?}, heartbeat {heartbeat:?}",
        registrations.len()
    );
    println!("registration time: {registering:.2?}");
    println!("tokio alive tasks: {tasks}");
    println!("Redis connected clients: {clients}");
    println!(
        "Redis commands per second (total_commands_processed, commands inside scripts included): {:.0}",
        per_second(before.commands, after.commands)
    );
    println!(
        "commands the registry sent per second: scripts {:.1}, SADD {:.1}",
        per_second(before.scripts, after.scripts),
        per_second(before.sadds, after.sadds)
    );
    println!(
        "CPU over the steady state ({seconds:.1} s): this process {:.1} %, Redis {:.1} %",
        (after.own_cpu - before.own_cpu) / seconds * 100.0,
        (after.redis_cpu - before.redis_cpu) / seconds * 100.0
    );
    println!("RSS: {}", rss());

    registry.shutdown().await?;
    drop(registrations);
    drop(server);
    Ok(())
}
