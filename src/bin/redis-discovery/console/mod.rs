//! `console`: a web console of the registry, served by the binary itself:
//! services, instances with their leases, a live feed of events, and the
//! operator's actions (drain, undrain, weight, deregister) behind a token.
//!
//! One file per job: the flags and start-up here; what the console knows
//! of the registry in [`model`], kept current by [`watcher`] and shared
//! through [`state`]; the routes in [`routes`], the actions in
//! [`actions`], the live stream in [`stream`], the embedded page in
//! [`assets`], and the connection limit in [`listener`].

mod actions;
mod assets;
mod listener;
mod model;
mod routes;
mod state;
mod stream;
mod watcher;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use redis_discovery::redact_url;
use tokio::net::TcpListener;

use crate::check::parse_duration;
use crate::problem::registry_failed;
use crate::{registry, resolver, shutdown_signal, Allow, Error, Global};
use state::Console;

/// The shortest and longest `--refresh`.
const REFRESH_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);
/// After SIGINT/SIGTERM, how long requests in flight may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The flags of `console`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  redis-discovery console\n  redis-discovery console --listen 127.0.0.1:8500 --token \"$(cat token)\"\n  REDIS_DISCOVERY_CONSOLE_TOKEN=… redis-discovery console --listen 0.0.0.0:8500"
)]
pub(crate) struct ConsoleArgs {
    /// The address to serve on (port 0: any free port, printed at start).
    /// Loopback unless told otherwise; any other address needs --token.
    #[arg(long = "listen", default_value = "127.0.0.1:8500")]
    serve_on: SocketAddr,
    /// The token the page's actions (drain, undrain, weight, deregister)
    /// must carry; without it the console is read-only.
    #[arg(
        long,
        env = "REDIS_DISCOVERY_CONSOLE_TOKEN",
        hide_env_values = true,
        conflicts_with = "read_only"
    )]
    token: Option<Token>,
    /// Serve without actions (the default without --token; says so
    /// explicitly).
    #[arg(long)]
    read_only: bool,
    /// Re-read every service this often besides change events (lease
    /// countdowns and instances whose lease ran out); 100ms to 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    refresh: Duration,
}

/// The console's token: never printed (`Debug` hides it).
#[derive(Clone)]
pub(crate) struct Token(String);

impl std::str::FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() < 8 {
            return Err("a token needs at least 8 characters".into());
        }
        if s.chars().any(|c| c.is_control() || c == ' ') {
            return Err("a token must not contain spaces or control characters".into());
        }
        Ok(Token(s.to_owned()))
    }
}

impl Token {
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// `console`: serves until SIGINT/SIGTERM.
pub(crate) async fn run(g: &Global, args: ConsoleArgs) -> Result<(), Error> {
    let loopback = args.serve_on.ip().is_loopback();
    if !loopback && args.token.is_none() {
        return Err(format!(
            "--listen {}: not a loopback address; the console serves other hosts only with --token (or REDIS_DISCOVERY_CONSOLE_TOKEN)",
            args.serve_on
        )
        .into());
    }
    if !REFRESH_RANGE.contains(&args.refresh) {
        return Err("--refresh must be from 100ms to 1h".into());
    }
    let allow = Allow {
        networks: Vec::new(),
        ports: Vec::new(),
    };
    let resolver = resolver(g, &allow, Duration::from_secs(10)).await?;
    let registry = registry(g).connect().await.map_err(registry_failed(g))?;
    let listener = TcpListener::bind(args.serve_on)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.serve_on))?;
    let local = listener.local_addr()?;
    let console = Arc::new(Console::new(
        resolver,
        registry,
        args.token,
        g.prefix.clone(),
        redact_url(&g.redis),
    ));
    let tasks = watcher::spawn(console.clone(), args.refresh);
    out!("console listening on http://{local}/");
    if console.read_only() {
        out!("read-only: started without --token, the page's actions are off");
    }
    let stop = console.stop.clone();
    let signalled = tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    });
    let router = routes::router(console.clone(), loopback);
    let serving = axum::serve(
        listener::LimitedListener::new(listener),
        router.into_make_service_with_connect_info::<listener::Peer>(),
    )
    .with_graceful_shutdown(stop.clone().cancelled_owned());
    let served = tokio::select! {
        served = serving => served.map_err(Error::from),
        () = async { stop.cancelled().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => Ok(()),
    };
    stop.cancel();
    signalled.abort();
    for task in tasks {
        let _ = task.await;
    }
    console.resolver.shutdown().await;
    let _ = console.registry.shutdown().await;
    served?;
    out!("console stopped");
    Ok(())
}
