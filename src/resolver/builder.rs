//! Options of a [`RedisResolver`].

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::RedisResolver;
use crate::connection::{self, Endpoint, RedisOptions};
use crate::error::{ResolveError, ValidationError};
use crate::instance::AllowList;
use crate::schema::Keyspace;

/// Configures and connects a [`RedisResolver`].
///
/// Every option is checked in [`connect`](Self::connect) before Redis is
/// contacted; a bad value (zero, or above its bound) is a
/// [`ValidationError::Config`]. The bounds are far beyond any useful value;
/// they keep deadlines computed from the options representable.
///
/// | option | default | allowed |
/// | --- | --- | --- |
/// | [`refresh_interval`](Self::refresh_interval) | 10 s | up to 1 day ([`MAX_REFRESH_INTERVAL`](Self::MAX_REFRESH_INTERVAL)) |
/// | [`idle_expiry`](Self::idle_expiry) | 5 min | up to 30 days ([`MAX_IDLE_EXPIRY`](Self::MAX_IDLE_EXPIRY)) |
/// | [`max_staleness`](Self::max_staleness) | none: serve the last known instances for as long as Redis is away | longer than the refresh interval, up to 30 days ([`MAX_STALENESS`](Self::MAX_STALENESS)) |
/// | [`negative_ttl`](Self::negative_ttl) | 5 s | up to 1 hour ([`MAX_NEGATIVE_TTL`](Self::MAX_NEGATIVE_TTL)) |
/// | [`max_services`](Self::max_services) | 10 000 | 1 to 1 000 000 ([`MAX_SERVICES`](Self::MAX_SERVICES)) |
/// | [`recovery_grace`](Self::recovery_grace) | the schema's default heartbeat interval plus 5 s: 10 s native, 35 s Hertz | zero (off) to 1 day ([`MAX_RECOVERY_GRACE`](Self::MAX_RECOVERY_GRACE)) |
/// | [`prefix`](Self::prefix) | `sd` | 1 to 64 characters of `A-Z a-z 0-9 . _ - : /` |
/// | [`schema`](Self::schema) | [`KeySchema::Native`](crate::KeySchema::Native) | |
/// | [`connect_timeout`](Self::connect_timeout) | 2 s | up to 1 hour ([`MAX_TIMEOUT`](Self::MAX_TIMEOUT)) |
/// | [`command_timeout`](Self::command_timeout) | 2 s | up to 1 hour ([`MAX_TIMEOUT`](Self::MAX_TIMEOUT)) |
/// | [`allow_networks`](Self::allow_networks) | any network | CIDR notation (`10.0.0.0/8`, `fd00::/8`), up to 1024 |
/// | [`allow_ports`](Self::allow_ports) | any port | ranges within `1..=65535`, up to 1024 |
///
/// ```no_run
/// use std::time::Duration;
/// use redis_discovery::resolver::RedisResolver;
///
/// # async fn run() -> Result<(), redis_discovery::ResolveError> {
/// let resolver = RedisResolver::builder("redis://127.0.0.1:6379")
///     .refresh_interval(Duration::from_secs(30))
///     .max_staleness(Duration::from_secs(300))
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ResolverBuilder {
    pub(super) redis: RedisOptions,
    pub(super) refresh_interval: Duration,
    pub(super) idle_expiry: Duration,
    pub(super) max_staleness: Option<Duration>,
    pub(super) negative_ttl: Duration,
    pub(super) max_services: usize,
    /// `None`: the schema's default.
    recovery_grace: Option<Duration>,
    allowed_networks: Vec<String>,
    allowed_ports: Vec<RangeInclusive<u16>>,
}

impl fmt::Debug for ResolverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverBuilder")
            .field("url", &self.redis.redacted_url())
            .field("refresh_interval", &self.refresh_interval)
            .field("idle_expiry", &self.idle_expiry)
            .field("max_staleness", &self.max_staleness)
            .field("negative_ttl", &self.negative_ttl)
            .field("max_services", &self.max_services)
            .field("recovery_grace", &self.recovery_grace_or_default())
            .field("prefix", &self.redis.prefix)
            .field("schema", &self.redis.schema)
            .field("timeouts", &self.redis.timeouts)
            .field("allowed_networks", &self.allowed_networks)
            .field("allowed_ports", &self.allowed_ports)
            .finish()
    }
}

impl ResolverBuilder {
    /// The longest allowed [`refresh_interval`](Self::refresh_interval):
    /// one day.
    pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
    /// The longest allowed [`idle_expiry`](Self::idle_expiry): 30 days.
    pub const MAX_IDLE_EXPIRY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
    /// The longest allowed [`max_staleness`](Self::max_staleness): 30 days.
    pub const MAX_STALENESS: Duration = Duration::from_secs(30 * 24 * 60 * 60);
    /// The longest allowed [`negative_ttl`](Self::negative_ttl): one hour.
    pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(60 * 60);
    /// The largest allowed [`max_services`](Self::max_services): one
    /// million.
    pub const MAX_SERVICES: usize = 1_000_000;
    /// The longest allowed [`recovery_grace`](Self::recovery_grace): one
    /// day.
    pub const MAX_RECOVERY_GRACE: Duration = Duration::from_secs(24 * 60 * 60);
    /// What the default [`recovery_grace`](Self::recovery_grace) adds to
    /// the schema's default heartbeat interval.
    const RECOVERY_MARGIN: Duration = Duration::from_secs(5);

    pub(super) fn new(url: String) -> Self {
        ResolverBuilder {
            redis: RedisOptions::new(url),
            refresh_interval: Duration::from_secs(10),
            idle_expiry: Duration::from_secs(300),
            max_staleness: None,
            negative_ttl: Duration::from_secs(5),
            max_services: 10_000,
            recovery_grace: None,
            allowed_networks: Vec::new(),
            allowed_ports: Vec::new(),
        }
    }

    /// How often every cached service is read again, whatever events say
    /// (the safety net for lost events, and the only refresh of the Hertz
    /// schema). Also how often the event connection is checked with `PING`.
    /// At most [`MAX_REFRESH_INTERVAL`](Self::MAX_REFRESH_INTERVAL).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// A service not asked for during this long is dropped from the cache
    /// and unsubscribed (within a quarter of this period more). A service
    /// with a live [`watch`](RedisResolver::watch) receiver is never dropped.
    /// At most [`MAX_IDLE_EXPIRY`](Self::MAX_IDLE_EXPIRY).
    pub fn idle_expiry(mut self, expiry: Duration) -> Self {
        self.idle_expiry = expiry;
        self
    }

    /// The oldest snapshot still served. A cached snapshot older than this
    /// (Redis unreachable for that long) is no longer returned by
    /// [`cached`](super::Resolve::cached); [`resolve`](super::Resolve::resolve)
    /// then tries a read and fails with [`ResolveError::Stale`] if it fails.
    /// Must be longer than the refresh interval, and at most
    /// [`MAX_STALENESS`](Self::MAX_STALENESS).
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = Some(max);
        self
    }

    /// How long a service found with no instance is remembered as such
    /// (the negative cache). Until then its empty list is served without
    /// asking Redis; afterwards the next request reads it again, and the
    /// idle sweep drops it. Such a service is not subscribed to change
    /// events (unless [watched](RedisResolver::watch)), so requests for
    /// names nobody registered cost neither subscriptions nor lasting
    /// memory: an instance registered meanwhile is seen at most this long
    /// after. A service that had instances stays subscribed and is kept
    /// current when its last instance goes. At most
    /// [`MAX_NEGATIVE_TTL`](Self::MAX_NEGATIVE_TTL).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The most services kept in the cache. Past it, the least recently
    /// used are evicted (those with no instance first), a sixteenth of the
    /// cap at a time; an evicted service is read again when next asked
    /// for. A [watched](RedisResolver::watch) service is never evicted
    /// (watched services can so hold the cache above the cap). At least 1,
    /// at most [`MAX_SERVICES`](Self::MAX_SERVICES).
    pub fn max_services(mut self, max: usize) -> Self {
        self.max_services = max;
        self
    }

    /// How long, after Redis lost what it held or was unreachable, an
    /// instance that reads miss is still listed (the recovery grace).
    ///
    /// The grace starts when Redis answers again after the resolver lost
    /// it (its event connection dropped, or a read failed because Redis
    /// could not be reached), and, with the native schema, when a read
    /// finds a service's keys gone after one that found them, or misses
    /// an instance whose known lease still runs with no event removing it
    /// (`FLUSHALL`, a restart, a failover to a replica that missed
    /// writes). Until it
    /// ends, an instance of the last list that a read misses stays listed
    /// (until the later of its last known lease and the grace end, and at
    /// most one grace after a read first missed it), and an
    /// `expire` event does not remove an instance at once; a `deregister`
    /// event still does. Without it, after an outage longer than the lease
    /// TTL every known lease has run out, and a read landing after Redis
    /// is back but before an instance's next heartbeat would drop that
    /// live instance.
    ///
    /// The default, the schema's default heartbeat interval plus 5 s (10 s
    /// native, 35 s Hertz), is one heartbeat, in which every live
    /// registration re-creates its entry, plus a margin for the
    /// registry's own reconnect. Set it to your registries' heartbeat
    /// interval plus a few seconds if they use another. The cost: an
    /// instance that crashed during the outage is listed until the grace
    /// ends. Zero turns the grace off (instances are kept until their
    /// last known lease only). At most
    /// [`MAX_RECOVERY_GRACE`](Self::MAX_RECOVERY_GRACE).
    pub fn recovery_grace(mut self, grace: Duration) -> Self {
        self.recovery_grace = Some(grace);
        self
    }

    /// The configured recovery grace, or the schema's default.
    pub(super) fn recovery_grace_or_default(&self) -> Duration {
        self.recovery_grace.unwrap_or_else(|| {
            self.redis
                .schema
                .default_heartbeat()
                .saturating_add(Self::RECOVERY_MARGIN)
        })
    }

    connection::redis_options_setters! {
        schema: [
            "",
            "[`KeySchema::Hertz`](crate::KeySchema::Hertz) has no change events: changes are seen at",
            "the next periodic refresh.",
        ],
        command_timeout: [
            "",
            "A [`resolve`](super::Resolve::resolve) that has to read waits at",
            "most the connect timeout plus twice this, then fails with",
            "[`ResolveError::Timeout`].",
        ],
    }

    /// Accepts instances only in these networks (CIDR notation:
    /// `10.0.0.0/8`, `fd00::/8`; a bare address is one host). Adds to the
    /// networks of earlier calls. Registry entries outside them are skipped
    /// with a warning (one per entry while it stays), and so are entries at
    /// a host name, which cannot be checked without resolving it. Unset,
    /// every address the fixed rules of the
    /// [address policy](super#the-address-policy) allow is accepted. A
    /// network that does not parse fails [`connect`](Self::connect) with
    /// [`ValidationError::Config`].
    ///
    /// ```no_run
    /// use redis_discovery::resolver::RedisResolver;
    ///
    /// # async fn run() -> Result<(), redis_discovery::ResolveError> {
    /// let resolver = RedisResolver::builder("redis://127.0.0.1:6379")
    ///     .allow_networks(["10.0.0.0/8", "fd00::/8"])
    ///     .allow_ports(8000..=8999)
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow_networks<I>(mut self, networks: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.allowed_networks
            .extend(networks.into_iter().map(Into::into));
        self
    }

    /// Accepts instances only on ports in these ranges; adds to the ranges
    /// of earlier calls (`.allow_ports(443..=443).allow_ports(8000..=8999)`).
    /// Registry entries outside them are skipped with a warning, as for
    /// [`allow_networks`](Self::allow_networks). A range that is empty or
    /// holds port 0 fails [`connect`](Self::connect) with
    /// [`ValidationError::Config`].
    pub fn allow_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.allowed_ports.push(ports);
        self
    }

    /// Checks every option without connecting.
    pub(super) fn validate(&self) -> Result<(Keyspace, Endpoint), ValidationError> {
        let config = |msg: String| Err(ValidationError::Config(msg));
        if self.refresh_interval.is_zero() {
            return config("refresh interval must be greater than zero".into());
        }
        if self.refresh_interval > Self::MAX_REFRESH_INTERVAL {
            return config(format!(
                "refresh interval ({:?}) must be at most {:?} (one day)",
                self.refresh_interval,
                Self::MAX_REFRESH_INTERVAL
            ));
        }
        if self.idle_expiry.is_zero() {
            return config("idle expiry must be greater than zero".into());
        }
        if self.idle_expiry > Self::MAX_IDLE_EXPIRY {
            return config(format!(
                "idle expiry ({:?}) must be at most {:?} (30 days)",
                self.idle_expiry,
                Self::MAX_IDLE_EXPIRY
            ));
        }
        if self.negative_ttl.is_zero() || self.negative_ttl > Self::MAX_NEGATIVE_TTL {
            return config(format!(
                "negative TTL ({:?}) must be greater than zero and at most {:?} (one hour)",
                self.negative_ttl,
                Self::MAX_NEGATIVE_TTL
            ));
        }
        if self.max_services == 0 || self.max_services > Self::MAX_SERVICES {
            return config(format!(
                "max services ({}) must be at least 1 and at most {}",
                self.max_services,
                Self::MAX_SERVICES
            ));
        }
        if self.recovery_grace_or_default() > Self::MAX_RECOVERY_GRACE {
            return config(format!(
                "recovery grace ({:?}) must be at most {:?} (one day)",
                self.recovery_grace_or_default(),
                Self::MAX_RECOVERY_GRACE
            ));
        }
        if let Some(max) = self.max_staleness {
            if max <= self.refresh_interval {
                return config(format!(
                    "max staleness ({max:?}) must be longer than the refresh interval ({:?}), or healthy snapshots would go stale between refreshes",
                    self.refresh_interval
                ));
            }
            if max > Self::MAX_STALENESS {
                return config(format!(
                    "max staleness ({max:?}) must be at most {:?} (30 days); leave it unset to serve the last known instances however old",
                    Self::MAX_STALENESS
                ));
            }
        }
        let allow = AllowList::new(&self.allowed_networks, &self.allowed_ports)?;
        let (keyspace, endpoint) = self.redis.validate()?;
        Ok((keyspace.with_allow_list(allow), endpoint))
    }

    /// Checks the options and connects: one connection for reads and, with
    /// the native schema, one for change events. Fails if Redis does not
    /// answer within the connect timeout.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves nothing behind: the connections opened
    /// so far close, and no task has been started (they start when it
    /// completes).
    pub async fn connect(self) -> Result<RedisResolver, ResolveError> {
        RedisResolver::from_builder(self).await
    }
}

#[cfg(test)]
mod tests;
