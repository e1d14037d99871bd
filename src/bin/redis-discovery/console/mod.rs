//! `console`: a web console of the registry, served by the binary itself:
//! services, instances with their leases, a live feed of events, and the
//! operator's actions (drain, undrain, weight, deregister) behind a token.
//!
//! One file per job: the flags and start-up here, the embedded page in
//! [`assets`].

mod assets;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::check::parse_duration;
use crate::{Error, Global};

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

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// `console`: serves until SIGINT/SIGTERM.
pub(crate) async fn run(g: &Global, args: ConsoleArgs) -> Result<(), Error> {
    let _ = (g, args, assets::INDEX);
    Err("the console is not built yet".into())
}
