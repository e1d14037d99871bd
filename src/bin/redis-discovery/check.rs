//! `register --check URL` / `--check-tcp HOST:PORT`: the health check that
//! decides whether the sidecar's instance is in the registry (like a Consul
//! HTTP or TCP check).

use std::time::Duration;

use clap::Args;
use hyper::{Request, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::Error;

/// The check flags of `register`.
#[derive(Debug, Args)]
// The check flags form the group `health` (one of them at most) by their
// `group` attribute; the struct itself is no group.
#[group(skip)]
pub(crate) struct CheckArgs {
    /// Keep the instance registered only while GET URL answers 2xx (http:// only; https is
    /// not supported). The first registration waits for the first passing check; after a
    /// failing check the instance is deregistered until a check passes again.
    #[arg(long, value_name = "URL", group = "health")]
    check: Option<String>,
    /// Like --check, but the check passes when a TCP connection to HOST:PORT opens within
    /// --check-timeout.
    #[arg(long, value_name = "HOST:PORT", group = "health")]
    check_tcp: Option<String>,
    /// How often to check, e.g. 5s, 500ms, 2m; at least 100ms [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "health")]
    check_interval: Option<Duration>,
    /// How long one check may take before it fails; more than 0, at most the interval
    /// [default: 2s, or the interval if shorter].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "health")]
    check_timeout: Option<Duration>,
}

/// `5s`, `500ms`, `2m`, `1h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration like 5s, 500ms or 2m");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(n.saturating_mul(millis_per)))
}

/// What a check probes.
#[derive(Debug)]
enum Probe {
    Http {
        // Boxed: the client is large, and there is one `Probe` per process.
        client: Box<Client<HttpConnector, String>>,
        uri: Uri,
    },
    Tcp(String),
}

/// A validated health check.
#[derive(Debug)]
pub(crate) struct Checker {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
}

impl CheckArgs {
    /// The check these flags ask for, if any; a one-line error if a flag is
    /// wrong.
    pub(crate) fn checker(&self) -> Result<Option<Checker>, Error> {
        let probe = match (&self.check, &self.check_tcp) {
            (Some(url), _) => Probe::Http {
                uri: http_uri(url)?,
                client: Box::new(
                    Client::builder(TokioExecutor::new())
                        // The answer's body is not read, so a connection is
                        // never reused: a check opens its own, as a client
                        // would.
                        .pool_max_idle_per_host(0)
                        .build_http(),
                ),
            },
            (None, Some(addr)) => {
                // Checked like an instance address: HOST:PORT, nothing else.
                redis_discovery::Instance::new(addr.as_str())
                    .map_err(|e| format!("--check-tcp {addr:?}: {e}"))?;
                Probe::Tcp(addr.clone())
            }
            (None, None) => return Ok(None),
        };
        let interval = self.check_interval.unwrap_or(Duration::from_secs(5));
        if interval < Duration::from_millis(100) {
            return Err(
                format!("--check-interval {interval:?} is below the minimum of 100ms").into(),
            );
        }
        let timeout = self
            .check_timeout
            .unwrap_or_else(|| interval.min(Duration::from_secs(2)));
        if timeout.is_zero() || timeout > interval {
            return Err(format!(
                "--check-timeout {timeout:?} must be above 0 and at most --check-interval ({interval:?})"
            )
            .into());
        }
        Ok(Some(Checker {
            probe,
            interval,
            timeout,
        }))
    }
}

/// The check URL, which must be `http://host[:port][/path]`.
fn http_uri(url: &str) -> Result<Uri, Error> {
    // The URL is not repeated in errors: it may hold a password.
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("--check: not a URL like http://HOST:PORT/PATH ({e})"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("--check: https:// is not supported; use http://".into()),
        _ => return Err("--check: not a URL like http://HOST:PORT/PATH".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("--check: the URL has no host".into());
    }
    Ok(uri)
}

impl Checker {
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Runs one check: `Ok` if it passed, else why it failed (`status 500`,
    /// `timed out after 2s`, the connect error).
    pub(crate) async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.probe()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
        }
    }

    async fn probe(&self) -> Result<(), String> {
        match &self.probe {
            Probe::Http { client, uri } => {
                let request = Request::get(uri.clone())
                    .header(hyper::header::USER_AGENT, "redis-discovery")
                    .body(String::new())
                    .map_err(|e| e.to_string())?;
                let response = client.request(request).await.map_err(|e| innermost(&e))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("status {}", status.as_u16()))
                }
            }
            Probe::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The root cause of an error (hyper-util's own says only "client error
/// (Connect)").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        // Saturates instead of overflowing.
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Ok(Duration::from_millis(u64::MAX))
        );
        for bad in ["", "5", "s", "5 s", "-5s", "5sec", "1.5s", "5S"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn check_urls() {
        assert!(http_uri("http://127.0.0.1:8080/health").is_ok());
        assert!(http_uri("http://localhost").is_ok());
        let https = http_uri("https://127.0.0.1/health")
            .unwrap_err()
            .to_string();
        assert!(https.contains("https:// is not supported"), "{https}");
        for bad in ["127.0.0.1:8080/health", "ftp://x/", "http://", "not a url"] {
            assert!(http_uri(bad).is_err(), "{bad:?}");
        }
    }
}
