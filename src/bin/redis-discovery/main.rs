//! `redis-discovery`: list, watch, register and deregister service
//! instances in a Redis registry, override them as an operator, and proxy
//! HTTP to them for clients not written in Rust.

#![warn(unreachable_pub, missing_debug_implementations, rust_2018_idioms)]

mod check;
mod metrics_endpoint;
mod problem;

use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use metrics_endpoint::MetricsListen;
use problem::resolve_failed;
use redis_discovery::registry::RegistryBuilder;
use redis_discovery::resolver::RedisResolver;
use redis_discovery::{Instance, KeySchema, RedisRegistry, Tags};

/// Service registry in Redis: list, watch, register and deregister instances.
#[derive(Debug, Parser)]
#[command(name = "redis-discovery", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  redis-discovery list\n  redis-discovery list orders --json\n  redis-discovery watch orders\n  redis-discovery register orders 10.0.0.7:8080 --weight 20 --tag zone=a\n  redis-discovery drain orders 10.0.0.7:8080\n  redis-discovery proxy --listen 127.0.0.1:15001"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Redis URL (redis://[user:password@]host:port[/db], rediss://…, unix://…, or
    /// redis+sentinel://host:26379[,host:26379…]/master for the master a set of Sentinels name,
    /// redis+cluster://host:port[,host:port…] for a Redis Cluster).
    #[arg(
        long = "redis",
        env = "REDIS_URL",
        // --help must not print a password from the environment.
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    redis: String,
    /// Key schema: `native` (leases, events) or `hertz` (hertz-contrib's layout).
    #[arg(long, default_value = "native", global = true)]
    schema: KeySchema,
    /// Key prefix of the native schema.
    #[arg(long, default_value = "sd", global = true)]
    prefix: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List services, or the instances of one service.
    #[command(
        after_help = "Examples:\n  redis-discovery list\n  redis-discovery list orders\n  redis-discovery list orders --json"
    )]
    List {
        /// The service whose instances to list; all services if omitted.
        service: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        allow: Allow,
    },
    /// Print every change of a service as it happens, until Ctrl-C.
    #[command(after_help = "Example:\n  redis-discovery watch orders")]
    Watch {
        /// The service to watch.
        service: String,
        /// Re-read the service this often (seconds) besides change events.
        #[arg(long, default_value_t = 10)]
        resync: u64,
        #[command(flatten)]
        allow: Allow,
        #[command(flatten)]
        metrics: MetricsListen,
    },
    /// Register an instance and keep it alive until SIGINT/SIGTERM (a sidecar
    /// for services not written in Rust), then deregister it. With --check or
    /// --check-tcp, it is registered only while the check passes.
    #[command(
        after_help = "Example:\n  redis-discovery register orders 10.0.0.7:8080 --weight 20 --tag zone=a --ttl 15 --heartbeat 5\n  redis-discovery register orders 10.0.0.7:8080 --metrics-listen 127.0.0.1:9464\n  redis-discovery register orders 10.0.0.7:8080 --check http://10.0.0.7:8080/health --check-interval 5s --check-timeout 2s\n  redis-discovery register orders 10.0.0.7:8080 --check-tcp 10.0.0.7:8080"
    )]
    Register {
        /// The service name.
        service: String,
        /// The instance address, host:port.
        addr: String,
        /// Relative weight; 0 drains the instance.
        #[arg(long, default_value_t = Instance::DEFAULT_WEIGHT)]
        weight: u32,
        /// A tag, key=value; repeat for more.
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Lease TTL in seconds (default 15, Hertz schema 60).
        #[arg(long)]
        ttl: Option<u64>,
        /// Heartbeat interval in seconds (default 5, Hertz schema 30).
        #[arg(long)]
        heartbeat: Option<u64>,
        #[command(flatten)]
        check: check::CheckArgs,
        #[command(flatten)]
        metrics: MetricsListen,
    },
    /// Remove an instance's entry now. While its owner (a server or a
    /// `register` sidecar) is alive, its next heartbeat registers it again:
    /// to take a live instance out of rotation, use `drain`.
    #[command(
        long_about = "Remove an instance's entry now.\n\nWhile its owner (a server or a `register` sidecar) is alive, its next heartbeat (within its heartbeat interval, 5 s by default) registers it again, so this only removes instances whose owner is gone. To take a live instance out of rotation in a way heartbeats do not undo, use `drain`.",
        after_help = "Example:\n  redis-discovery deregister orders 10.0.0.7:8080\n  redis-discovery drain orders 10.0.0.7:8080   # for a live instance"
    )]
    Deregister {
        /// The service name.
        service: String,
        /// The instance address, host:port.
        addr: String,
    },
    /// Take an instance out of rotation (weight 0) until `undrain`, whatever
    /// its owner's heartbeats write.
    #[command(after_help = "Example:\n  redis-discovery drain orders 10.0.0.7:8080")]
    Drain {
        /// The service name.
        service: String,
        /// The instance address, host:port.
        addr: String,
    },
    /// Remove the operator's override of an instance (drain, weight or
    /// disable): it is served as its owner registered it again.
    #[command(after_help = "Example:\n  redis-discovery undrain orders 10.0.0.7:8080")]
    Undrain {
        /// The service name.
        service: String,
        /// The instance address, host:port.
        addr: String,
    },
    /// Serve an instance with this weight until `undrain`, whatever its
    /// owner registered.
    #[command(after_help = "Example:\n  redis-discovery weight orders 10.0.0.7:8080 5")]
    Weight {
        /// The service name.
        service: String,
        /// The instance address, host:port.
        addr: String,
        /// The weight; 0 drains.
        weight: u32,
    },
    /// Hide an instance from every resolver until `undrain`, whatever its
    /// owner's heartbeats write.
    #[command(after_help = "Example:\n  redis-discovery disable orders 10.0.0.7:8080")]
    Disable {
        /// The service name.
        service: String,
        /// The instance address, host:port.
        addr: String,
    },
    /// List the operator's overrides, of one service or of all.
    #[command(
        after_help = "Examples:\n  redis-discovery overrides\n  redis-discovery overrides orders --json"
    )]
    Overrides {
        /// The service whose overrides to list; all services if omitted.
        service: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Proxy HTTP requests for `http://SERVICE/...` to the service's
    /// instances, for clients not written in Rust.
    Proxy(proxy::ProxyArgs),
    /// Serve a web console of the registry: services, instances, leases,
    /// live events, and the operator's actions behind a token.
    #[cfg(feature = "console")]
    Console(console::ConsoleArgs),
}

/// The resolver's allow-list: entries outside it are skipped with a warning.
#[derive(Debug, Default, Args)]
struct Allow {
    /// Show only instances in this network (CIDR, e.g. 10.0.0.0/8); repeat for more.
    /// Instances at a host name are then skipped too.
    #[arg(long = "allow-network", value_name = "CIDR")]
    networks: Vec<String>,
    /// Show only instances on these ports (8080, or a range 8000-8999); repeat for more.
    #[arg(long = "allow-ports", value_name = "PORTS", value_parser = parse_ports)]
    ports: Vec<RangeInclusive<u16>>,
}

/// `8080` or `8000-8999`.
fn parse_ports(text: &str) -> Result<RangeInclusive<u16>, String> {
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("{p:?} is not a port from 1 to 65535"))
    };
    let range = match text.split_once('-') {
        Some((start, end)) => port(start)?..=port(end)?,
        None => port(text)?..=port(text)?,
    };
    if range.is_empty() {
        return Err(format!(
            "{text:?}: the first port must not be above the last"
        ));
    }
    Ok(range)
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// `println!` that returns an error instead of panicking when stdout is
/// closed (`redis-discovery watch orders | head -1`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

// After `out!`, which they use.
#[cfg(feature = "console")]
mod console;
mod http_server;
mod list;
mod overrides;
mod proxy;
mod register;
mod watch;

/// The most log lines waiting for a slow stderr; more are dropped.
const LOG_QUEUE_LINES: usize = 8192;

#[tokio::main]
async fn main() -> ExitCode {
    use std::io::IsTerminal as _;
    // Log lines (the proxy's access log) go to stderr from a thread of
    // their own through a bounded queue that drops lines when full: a
    // stderr nobody reads must not stall requests.
    let (log_writer, log_flushed) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("redis-discovery-log")
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            // An empty RUST_LOG (exported but unset) means the defaults,
            // not "log nothing".
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
                // The redis crate's own warnings (a cluster node it could
                // not reach) repeat the one-line error the command prints;
                // `redis=` names that crate's targets and, by prefix, this
                // one's, which `redis_discovery=` takes back.
                // The proxy's access log and the console's actions are
                // logged by default.
                .unwrap_or_else(|| {
                    tracing_subscriber::EnvFilter::new(
                        "warn,redis=error,redis_discovery=warn,access=info,console=info",
                    )
                }),
        )
        .with_writer(log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let ran = run(cli).await;
    // The lines still queued are written (for at most a second) before
    // the error line, which goes straight to stderr.
    drop(log_flushed);
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): stop quietly, like other tools.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let g = &cli.global;
    match cli.command {
        Command::List {
            service: None,
            json,
            allow,
        } => list::list_services(g, &allow, json).await,
        Command::List {
            service: Some(service),
            json,
            allow,
        } => list::list_instances(g, &allow, &service, json).await,
        Command::Watch {
            service,
            resync,
            allow,
            metrics,
        } => {
            metrics.install()?;
            watch::watch(g, &allow, &service, resync).await
        }
        Command::Register {
            service,
            addr,
            weight,
            tags,
            ttl,
            heartbeat,
            check,
            metrics,
        } => {
            // Before anything else: a wrong flag fails at once.
            let checker = check.checker()?;
            metrics.install()?;
            let options = register::Options {
                weight,
                tags: &tags,
                ttl,
                heartbeat,
                checker: checker.as_ref(),
            };
            register::register(g, &service, &addr, options).await
        }
        Command::Deregister { service, addr } => register::deregister(g, &service, &addr).await,
        Command::Drain { service, addr } => overrides::drain(g, &service, &addr).await,
        Command::Undrain { service, addr } => overrides::undrain(g, &service, &addr).await,
        Command::Weight {
            service,
            addr,
            weight,
        } => overrides::weight(g, &service, &addr, weight).await,
        Command::Disable { service, addr } => overrides::disable(g, &service, &addr).await,
        Command::Overrides { service, json } => overrides::list(g, service.as_deref(), json).await,
        Command::Proxy(args) => proxy::run(g, args).await,
        #[cfg(feature = "console")]
        Command::Console(args) => console::run(g, args).await,
    }
}

async fn resolver(g: &Global, allow: &Allow, refresh: Duration) -> Result<RedisResolver, Error> {
    let mut builder = RedisResolver::builder(g.redis.as_str())
        .schema(g.schema)
        .prefix(g.prefix.as_str())
        .refresh_interval(refresh)
        .allow_networks(allow.networks.iter().cloned());
    for ports in &allow.ports {
        builder = builder.allow_ports(ports.clone());
    }
    builder.connect().await.map_err(resolve_failed(g))
}

fn registry(g: &Global) -> RegistryBuilder {
    RedisRegistry::builder(g.redis.as_str())
        .schema(g.schema)
        .prefix(g.prefix.as_str())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Tags as `k=v,k=v`.
fn tags_text(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An instance on one line: address, weight and any tags.
fn describe(i: &Instance) -> String {
    let tags = tags_text(i.tags());
    if tags.is_empty() {
        format!("{} weight={}", i.addr(), i.weight())
    } else {
        format!("{} weight={} tags={tags}", i.addr(), i.weight())
    }
}
