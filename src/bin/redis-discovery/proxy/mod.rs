//! `proxy`: an HTTP proxy that routes `http://SERVICE/...` requests
//! through the `DiscoveryLayer`, for clients not written in Rust.
//!
//! One file per job: the flags and start-up here, the accept loop in
//! [`server`], which host a request is for in [`target`], whether that
//! host is a service in [`registered`], the request's way through the
//! layer in [`forwarding`] (headers in [`headers`], bodies in [`body`]),
//! the proxy's own answers in [`answers`], and when a connection is idle
//! in [`idle`].

mod answers;
mod body;
mod forwarding;
mod headers;
mod idle;
mod registered;
mod server;
mod target;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use redis_discovery::balance::{LeastLoaded, RoundRobin, TagFilter, WeightedRandom};
use redis_discovery::layer::{DiscoveryLayer, OutlierDetection};

use crate::check::parse_duration;
use crate::metrics_endpoint::MetricsListen;
use crate::{resolver, Allow, Error, Global};

/// The flags of `proxy`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  redis-discovery proxy --listen 127.0.0.1:15001\n  curl -H 'Host: orders' http://127.0.0.1:15001/v1/items\n  curl -x http://127.0.0.1:15001 http://orders/v1/items\n  http_proxy=http://127.0.0.1:15001 wget -qO- http://orders/v1/items"
)]
pub(crate) struct ProxyArgs {
    /// The address to serve on (port 0: any free port, printed at start).
    // Not `listen`: `--metrics-listen`'s field has that id.
    #[arg(long = "listen", default_value = "127.0.0.1:15001")]
    serve_on: SocketAddr,
    /// How to pick an instance.
    #[arg(long, value_enum, default_value_t = Balancing::WeightedRandom)]
    balance: Balancing,
    /// Send only to instances with this tag, KEY=VALUE; repeat for more
    /// (all must match).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// The most client connections served at once (1 to 1048576); at the
    /// limit the proxy stops accepting and further connections wait in the
    /// kernel's backlog.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// How long one attempt may wait for an instance's response headers
    /// before another instance is tried (GET and other idempotent requests)
    /// or 504 is answered; 1ms to 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "15s")]
    attempt_timeout: Duration,
    /// Close a client connection (HTTP/2, or HTTP/1 between requests)
    /// once no request has been in flight for this long, freeing its
    /// --max-connections slot; 1ms to 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    idle_timeout: Duration,
    /// After SIGINT/SIGTERM, how long requests in flight may take to
    /// finish before their connections are closed; 1ms to 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    drain_timeout: Duration,
    #[command(flatten)]
    allow: Allow,
    #[command(flatten)]
    metrics: MetricsListen,
}

/// The `--balance` choices.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Balancing {
    /// Random, in proportion to the instances' weights.
    WeightedRandom,
    /// In turn, in proportion to the weights.
    RoundRobin,
    /// Weighted power of two choices over latency × requests in flight.
    LeastLoaded,
}

/// The validated settings of the server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) listen: SocketAddr,
    pub(crate) max_connections: usize,
    pub(crate) attempt_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) drain_timeout: Duration,
}

/// The largest `--max-connections`.
const MAX_CONNECTIONS: usize = 1 << 20;
/// The shortest and longest timeouts accepted.
const SHORTEST: Duration = Duration::from_millis(1);
const LONGEST: Duration = Duration::from_secs(3600);

impl ProxyArgs {
    /// Checks every flag, before anything connects.
    fn validate(&self) -> Result<(Limits, Option<TagFilter>), Error> {
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(format!(
                "--max-connections {}: must be from 1 to {MAX_CONNECTIONS}",
                self.max_connections
            )
            .into());
        }
        for (flag, value) in [
            ("--attempt-timeout", self.attempt_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--drain-timeout", self.drain_timeout),
        ] {
            if !(SHORTEST..=LONGEST).contains(&value) {
                return Err(format!("{flag} {value:?}: must be from 1ms to 1h").into());
            }
        }
        let mut filter = None;
        for tag in &self.tags {
            let Some((key, value)) = tag.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(format!("--tag {tag:?}: expected KEY=VALUE").into());
            };
            filter = Some(filter.unwrap_or_else(TagFilter::new).with(key, value));
        }
        let limits = Limits {
            listen: self.serve_on,
            max_connections: self.max_connections,
            attempt_timeout: self.attempt_timeout,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.drain_timeout,
        };
        Ok((limits, filter))
    }
}

/// `proxy`: serves until SIGINT/SIGTERM, then drains.
pub(crate) async fn run(g: &Global, args: ProxyArgs) -> Result<(), Error> {
    let (limits, filter) = args.validate()?;
    raise_open_file_limit(limits.max_connections);
    args.metrics.install()?;
    let resolver = resolver(g, &args.allow, Duration::from_secs(10)).await?;
    let builder = DiscoveryLayer::builder(resolver.clone())
        // Every request the proxy sends is for a service: no flag needed
        // (and no extension map allocated per request).
        .discover_all(true)
        .attempt_timeout(Some(limits.attempt_timeout))
        .outlier_detection(OutlierDetection::new());
    let builder = match filter {
        Some(filter) => builder.tag_filter(filter),
        None => builder,
    };
    let layer = match args.balance {
        Balancing::WeightedRandom => builder.balance(WeightedRandom::new()).build(),
        Balancing::RoundRobin => builder.balance(RoundRobin::new()).build(),
        Balancing::LeastLoaded => builder.balance(LeastLoaded::new()).build(),
    };
    let proxy = forwarding::Proxy::new(layer, resolver.clone(), limits);
    let served = server::serve(proxy, limits).await;
    resolver.shutdown().await;
    served
}

/// Raises the soft limit of open files towards what `--max-connections`
/// may use (a client connection and one to an instance each, and a few
/// for Redis and the listener), as far as the hard limit allows: a soft
/// limit of 1024 would otherwise fail accepts and connects (EMFILE) long
/// before the connection limit.
fn raise_open_file_limit(max_connections: usize) {
    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(2)
        .saturating_add(64);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            wanted,
            "the open-file limit (ulimit -n) is below what --max-connections may use"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
