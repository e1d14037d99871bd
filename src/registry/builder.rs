//! Options of a [`RedisRegistry`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{heartbeat, RedisRegistry, RegistryState};
use crate::connection::{self, Connection, RedisOptions};
use crate::error::{RedisFailure, RegistryError, ValidationError};

/// Configures and connects a [`RedisRegistry`].
///
/// Every option is checked in [`connect`](Self::connect) before Redis is
/// contacted; a bad value is a [`ValidationError::Config`].
///
/// | option | default | allowed |
/// | --- | --- | --- |
/// | [`lease_ttl`](Self::lease_ttl) | 15 s (Hertz schema: 60 s) | at least two heartbeat intervals, up to 1 day ([`MAX_LEASE_TTL`](Self::MAX_LEASE_TTL)) |
/// | [`heartbeat_interval`](Self::heartbeat_interval) | 5 s (Hertz schema: 30 s) | at least 10 ms ([`MIN_HEARTBEAT_INTERVAL`](Self::MIN_HEARTBEAT_INTERVAL)) |
/// | [`prefix`](Self::prefix) | `sd` | 1 to 64 characters of `A-Z a-z 0-9 . _ - : /` |
/// | [`schema`](Self::schema) | [`KeySchema::Native`](crate::KeySchema::Native) | |
/// | [`connect_timeout`](Self::connect_timeout) | 2 s | up to 1 hour ([`MAX_TIMEOUT`](Self::MAX_TIMEOUT)) |
/// | [`command_timeout`](Self::command_timeout) | 2 s | up to 1 hour ([`MAX_TIMEOUT`](Self::MAX_TIMEOUT)) |
///
/// ```no_run
/// use std::time::Duration;
/// use redis_discovery::RedisRegistry;
///
/// # async fn run() -> Result<(), redis_discovery::RegistryError> {
/// let registry = RedisRegistry::builder("redis://127.0.0.1:6379")
///     .lease_ttl(Duration::from_secs(30))
///     .heartbeat_interval(Duration::from_secs(10))
///     .command_timeout(Duration::from_secs(1))
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RegistryBuilder {
    redis: RedisOptions,
    ttl: Option<Duration>,
    heartbeat: Option<Duration>,
}

// By hand: the URL is shown without its password.
impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("url", &self.redis.redacted_url())
            .field("lease_ttl", &self.ttl)
            .field("heartbeat_interval", &self.heartbeat)
            .field("prefix", &self.redis.prefix)
            .field("schema", &self.redis.schema)
            .field("timeouts", &self.redis.timeouts)
            .finish()
    }
}

impl RegistryBuilder {
    /// The longest allowed [`lease_ttl`](Self::lease_ttl): one day (lease
    /// deadlines are milliseconds in a Redis score and key expiry).
    pub const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
    /// The shortest allowed [`heartbeat_interval`](Self::heartbeat_interval):
    /// 10 ms.
    pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);

    pub(super) fn new(url: String) -> Self {
        RegistryBuilder {
            redis: RedisOptions::new(url),
            ttl: None,
            heartbeat: None,
        }
    }

    /// How long an instance stays listed after its last heartbeat. Must be
    /// at least two heartbeat intervals, so one lost heartbeat is survived.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How often the registry's heartbeat renews every lease it holds. At
    /// least 10 ms ([`connect`](Self::connect) refuses less): a shorter
    /// interval would only load Redis, and the retry backoff, a quarter of
    /// it, would spin.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    connection::redis_options_setters! {
        schema: [],
        command_timeout: [],
    }

    /// Checks the options and connects. Fails with
    /// [`RegistryError::Connect`] if Redis does not answer within the
    /// connect timeout.
    ///
    /// Dropping the future before it returns leaves nothing behind: a
    /// connection being made is closed.
    pub async fn connect(self) -> Result<RedisRegistry, RegistryError> {
        let schema = self.redis.schema;
        let ttl = self.ttl.unwrap_or(schema.default_ttl());
        let heartbeat = self.heartbeat.unwrap_or(schema.default_heartbeat());
        validate_lease(ttl, heartbeat)?;
        let (keyspace, endpoint) = self.redis.validate()?;
        let url = self.redis.redacted_url();
        let timeouts = self.redis.timeouts;
        let conn = match Connection::open(&endpoint, timeouts).await {
            Ok(conn) => conn,
            Err(source) => {
                let source = RedisFailure::new(source);
                return Err(RegistryError::Connect { url, source });
            }
        };
        let stop = CancellationToken::new();
        let state = Arc::new(RegistryState {
            conn,
            url,
            keyspace,
            ttl,
            heartbeat,
            timeouts,
            leases: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            ops: tokio::sync::Mutex::new(()),
            writes: tokio::sync::Mutex::new(()),
            index_failing: AtomicBool::new(false),
            heartbeat_stop: stop.clone(),
            next_ticket: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
        });
        // One heartbeat task for every registration of this registry.
        heartbeat::spawn(&state, stop);
        Ok(RedisRegistry { state })
    }
}

/// The lease rules: TTL non-zero, heartbeat at least
/// [`MIN_HEARTBEAT_INTERVAL`](RegistryBuilder::MIN_HEARTBEAT_INTERVAL), TTL
/// at least two heartbeats, at most
/// [`MAX_LEASE_TTL`](RegistryBuilder::MAX_LEASE_TTL).
pub(crate) fn validate_lease(ttl: Duration, heartbeat: Duration) -> Result<(), ValidationError> {
    const MIN_HEARTBEAT: Duration = RegistryBuilder::MIN_HEARTBEAT_INTERVAL;
    if ttl.is_zero() {
        return Err(ValidationError::Config(
            "lease TTL must be greater than zero".into(),
        ));
    }
    if heartbeat < MIN_HEARTBEAT {
        return Err(ValidationError::Config(format!(
            "heartbeat interval ({heartbeat:?}) must be at least {MIN_HEARTBEAT:?}"
        )));
    }
    if ttl > RegistryBuilder::MAX_LEASE_TTL {
        return Err(ValidationError::Config(format!(
            "lease TTL ({ttl:?}) must be at most 24 hours"
        )));
    }
    if heartbeat.checked_mul(2).is_none_or(|twice| ttl < twice) {
        return Err(ValidationError::Config(format!(
            "lease TTL ({ttl:?}) must be at least two heartbeat intervals ({heartbeat:?} each), so one missed heartbeat does not drop the instance"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_rules() {
        let s = Duration::from_secs;
        assert!(validate_lease(s(15), s(5)).is_ok());
        assert!(validate_lease(s(10), s(5)).is_ok());
        assert!(validate_lease(s(0), s(5)).is_err());
        assert!(validate_lease(s(15), s(0)).is_err());
        let ms = Duration::from_millis;
        assert!(validate_lease(s(15), ms(10)).is_ok());
        let e = validate_lease(s(15), ms(9)).unwrap_err().to_string();
        assert!(e.contains("at least 10ms"), "{e}");
        assert!(validate_lease(s(15), Duration::from_nanos(1)).is_err());
        assert!(validate_lease(Duration::MAX, s(5)).is_err());
        assert!(validate_lease(s(15), Duration::MAX).is_err());
        let e = validate_lease(s(9), s(5)).unwrap_err().to_string();
        assert!(e.contains("two heartbeat intervals"), "{e}");
    }
}
