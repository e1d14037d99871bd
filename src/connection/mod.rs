//! Opening Redis connections with the crate's timeouts: to one server, to
//! the master a set of Sentinels name, or to a Redis Cluster ([`Endpoint`]),
//! as a [`Connection`] that reconnects by itself and follows failovers.
//!
//! * `redis_url`: parsing a URL into an [`Endpoint`], and [`redact`].
//! * `endpoint`: connecting to an [`Endpoint`], and the resolver's event
//!   connection ([`Events`]).
//! * `link`: the [`Connection`], and the Sentinel follower behind it;
//!   `failover_sign` reads a failed command for a failover.
//! * `options`: [`RedisOptions`], the Redis part of every builder.
//! * `timed`: [`timed()`], the time limit on a Redis call (all but the
//!   Sentinel lookup, which calls `tokio::time::timeout` itself).

mod endpoint;
mod failover_sign;
mod link;
mod options;
mod redis_url;
mod timed;

pub(crate) use endpoint::{check_member, Endpoint, Events};
pub(crate) use link::Connection;
pub(crate) use options::{redis_options_setters, RedisOptions};
pub use redis_url::redact;
pub(crate) use timed::{timed, CallError, CallLimit};

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::ValidationError;

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

/// A self-reconnecting connection; fails if Redis does not answer now.
async fn manager(
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
    Ok(timed(timeouts.connect + timeouts.command, CONNECTING, connect).await?)
}

/// Whether `error` says the connection broke (closed, reset, refused)
/// rather than that a command failed or timed out. The connection then
/// reconnects in the background, and a second try at once waits for that
/// reconnect instead of failing on the dead connection: without it, the
/// first command after Redis comes back fails, and its retry waits out a
/// whole backoff (measured: entries back one heartbeat late).
pub(crate) fn broke(error: &redis::RedisError) -> bool {
    !error.is_timeout()
        && (error.is_connection_dropped() || error.is_connection_refusal() || error.is_io_error())
}

/// The error of a connect that took too long.
const CONNECTING: &str = "timed out connecting to Redis";
