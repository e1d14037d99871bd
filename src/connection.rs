//! Opening Redis connections with the crate's timeouts.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::ValidationError;
use crate::schema::{KeySchema, Keyspace};

/// How long to wait for Redis: connecting, and each command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection (default 2 s).
    pub connect: Duration,
    /// One command or script, from send to reply (default 2 s).
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(2),
        }
    }
}

impl Timeouts {
    /// The longest connect or command timeout accepted: one hour.
    pub const MAX: Duration = Duration::from_secs(60 * 60);

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        for (what, timeout) in [
            ("connect timeout", self.connect),
            ("command timeout", self.command),
        ] {
            if timeout.is_zero() {
                return Err(ValidationError::Config(format!(
                    "Redis {what} must be greater than zero"
                )));
            }
            if timeout > Self::MAX {
                return Err(ValidationError::Config(format!(
                    "Redis {what} ({timeout:?}) must be at most {:?} (one hour)",
                    Self::MAX
                )));
            }
        }
        Ok(())
    }
}

/// Checks what every Redis-backed builder shares (timeouts, key schema and
/// prefix, URL) without connecting.
pub(crate) fn prepare(
    url: &str,
    schema: KeySchema,
    prefix: &str,
    timeouts: &Timeouts,
) -> Result<(Keyspace, redis::Client), ValidationError> {
    timeouts.validate()?;
    let keyspace = Keyspace::new(schema, prefix)?;
    Ok((keyspace, client(url)?))
}

/// Parses a Redis URL (`redis://`, `rediss://`, `unix://`, with user,
/// password and db) without connecting.
pub(crate) fn client(url: &str) -> Result<redis::Client, ValidationError> {
    let scheme_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|s| url.starts_with(s));
    let invalid = |reason: String| ValidationError::RedisUrl {
        url: redact(url),
        reason,
    };
    if !scheme_ok {
        return Err(invalid(
            "expected redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)".into(),
        ));
    }
    redis::Client::open(url).map_err(|e| invalid(e.to_string()))
}

/// A self-reconnecting connection; fails if Redis does not answer now.
pub(crate) async fn manager(
    client: redis::Client,
    timeouts: Timeouts,
) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.command))
        // Reconnects happen in the background; a caller never waits through
        // a long retry ladder, it gets an error and the next call retries.
        .set_number_of_retries(1)
        .set_max_delay(timeouts.connect);
    let connect = ConnectionManager::new_with_config(client, config);
    match tokio::time::timeout(timeouts.connect + timeouts.command, connect).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "timed out connecting to Redis",
        ))),
    }
}

/// The URL with its password replaced, for error messages and logs: the
/// userinfo password, and a `pass=` query parameter (unix socket URLs).
pub(crate) fn redact(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                    {
                        format!("{k}=***")
                    }
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url.to_owned(),
    };
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => format!("{}***{}", &url[..s + 3], &url[at..]),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(client("redis://127.0.0.1:6379/0").is_ok());
        assert!(client("redis://user:pw@127.0.0.1/2").is_ok());
        assert!(client("http://127.0.0.1").is_err());
        assert!(client("").is_err());
        assert!(client("redis://").is_err());
        let e = client("http://u:secret@h").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact("unix:///run/redis.sock?db=1&pass=secret"),
            "unix:///run/redis.sock?db=1&pass=***"
        );
    }
}
