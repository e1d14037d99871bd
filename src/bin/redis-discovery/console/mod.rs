//! `console`: a web console of the registry, served by the binary itself:
//! services, instances with their leases, a live feed of events, and the
//! operator's actions (drain, undrain, weight, deregister) behind a token.
//!
//! One file per job: the flags and start-up here; what the console knows
//! of the registry in [`model`], kept current by [`watcher`] and shared
//! through [`state`]; the routes in [`routes`], the actions in
//! [`actions`], the live stream in [`stream`], the embedded page in
//! [`assets`], and the connections in [`server`].

mod actions;
mod assets;
mod model;
mod routes;
mod server;
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

/// The flags of `console`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  redis-discovery console\n  REDIS_DISCOVERY_CONSOLE_TOKEN=\"$(cat console.token)\" redis-discovery console\n  REDIS_DISCOVERY_CONSOLE_TOKEN=… redis-discovery console --listen 0.0.0.0:8500 --allow-host console.internal"
)]
pub(crate) struct ConsoleArgs {
    /// The address to serve on (port 0: any free port, printed at start).
    /// Loopback unless told otherwise; any other address needs a token.
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:8500")]
    serve_on: SocketAddr,
    /// The token the page's actions (drain, undrain, weight, deregister)
    /// must carry: 8 to 1024 visible ASCII characters. Prefer the
    /// environment variable: a flag shows in `ps`. Without a token the
    /// console is read-only.
    #[arg(
        long,
        env = "REDIS_DISCOVERY_CONSOLE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = TokenParser
    )]
    token: Option<Token>,
    /// Serve without actions, even with a token (the default without one).
    #[arg(long)]
    read_only: bool,
    /// A host name the console answers to besides IP addresses and
    /// `localhost` (the name in the browser's address bar); repeat for
    /// more. Other names are refused, so that no other site's page can
    /// read the registry by pointing its own name at this address.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
    /// Re-read every service this often besides change events (lease
    /// countdowns and instances whose lease ran out); 100ms to 1h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    refresh: Duration,
}

/// The console's token: never printed (`Debug` hides it, and a refused
/// one is not quoted in the error).
#[derive(Clone)]
pub(crate) struct Token(String);

impl Token {
    /// The shortest and longest token.
    const LENGTHS: std::ops::RangeInclusive<usize> = 8..=1024;

    fn new(text: &str) -> Result<Self, &'static str> {
        if !Self::LENGTHS.contains(&text.len()) {
            return Err("a token needs 8 to 1024 characters");
        }
        // What a browser can send in a header, and no space to trim.
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token may hold only visible ASCII characters (no spaces)");
        }
        Ok(Token(text.to_owned()))
    }

    /// Whether `given` is this token, in a time that depends on neither
    /// the token's bytes nor its length: both are compared padded to the
    /// longest token (subtle's slice comparison alone returns early on a
    /// length mismatch).
    fn matches(&self, given: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        const MAX: usize = *Token::LENGTHS.end();
        if given.len() > MAX {
            return false; // the client's own length: nothing to hide
        }
        let (mut ours, mut theirs) = ([0u8; MAX], [0u8; MAX]);
        ours[..self.0.len()].copy_from_slice(self.0.as_bytes());
        theirs[..given.len()].copy_from_slice(given);
        let same_len = (self.0.len() as u64).ct_eq(&(given.len() as u64));
        bool::from(ours.ct_eq(&theirs) & same_len)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Parses `--token` without quoting the value in its error (clap's own
/// "invalid value" errors do).
#[derive(Debug, Clone, Copy)]
struct TokenParser;

impl clap::builder::TypedValueParser for TokenParser {
    type Value = Token;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Token, clap::Error> {
        let token = value
            .to_str()
            .ok_or("a token may hold only visible ASCII characters (no spaces)")
            .and_then(Token::new);
        token.map_err(|why| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--token: {why}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// `console`: serves until SIGINT/SIGTERM.
pub(crate) async fn run(g: &Global, args: ConsoleArgs) -> Result<(), Error> {
    if !args.serve_on.ip().is_loopback() && args.token.is_none() {
        return Err(format!(
            "--listen {}: not a loopback address; the console serves other hosts only with a token (--token or REDIS_DISCOVERY_CONSOLE_TOKEN)",
            args.serve_on
        )
        .into());
    }
    let token = if args.read_only { None } else { args.token };
    if !REFRESH_RANGE.contains(&args.refresh) {
        return Err("--refresh must be from 100ms to 1h".into());
    }
    let resolver = resolver(g, &Allow::default(), Duration::from_secs(10)).await?;
    let registry = registry(g).connect().await.map_err(registry_failed(g))?;
    let listener = TcpListener::bind(args.serve_on)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.serve_on))?;
    let local = listener.local_addr()?;
    let console = Arc::new(Console::new(
        resolver,
        registry,
        token,
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
    let router = routes::router(console.clone(), args.allow_hosts);
    let served = server::serve(listener, router, stop.clone().cancelled_owned()).await;
    stop.cancel();
    signalled.abort();
    for task in tasks {
        let _ = task.await;
    }
    console.resolver.shutdown().await;
    let _ = console.registry.shutdown().await;
    served
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn tokens_match_only_themselves() {
        let token = Token::new("s3cret-token").expect("token");
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-toke"));
        assert!(!token.matches(b"s3cret-token\0"));
        assert!(!token.matches(b"S3cret-token"));
        assert!(!token.matches(&[b'a'; 5000]));
        assert!(Token::new("short").is_err());
        assert!(Token::new("has space in it").is_err());
        assert!(Token::new(&"x".repeat(1025)).is_err());
        assert!(Token::new(&"x".repeat(1024))
            .expect("longest")
            .matches("x".repeat(1024).as_bytes()));
    }
}
