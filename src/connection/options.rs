//! The Redis options every Redis-backed builder holds (where Redis is, the
//! key schema and prefix, the timeouts), checked in one place, and the
//! setters both builders expose for them, written once.

use std::fmt;

use super::{Endpoint, Timeouts};
use crate::error::ValidationError;
use crate::schema::{KeySchema, Keyspace, DEFAULT_PREFIX};

/// The Redis part of a builder: set by [`redis_options_setters`], checked
/// by [`validate`](Self::validate).
#[derive(Clone)]
pub(crate) struct RedisOptions {
    /// As given, password included: shown only through [`super::redact`].
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) schema: KeySchema,
    pub(crate) timeouts: Timeouts,
}

// By hand: the URL is shown without its password.
impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("schema", &self.schema)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl RedisOptions {
    /// The defaults: prefix `sd`, the native schema, 2 s timeouts.
    pub(crate) fn new(url: String) -> Self {
        RedisOptions {
            url,
            prefix: DEFAULT_PREFIX.to_owned(),
            schema: KeySchema::Native,
            timeouts: Timeouts::default(),
        }
    }

    /// The URL without its password.
    pub(crate) fn redacted_url(&self) -> String {
        super::redact(&self.url)
    }

    /// Checks the timeouts, the key schema and prefix, and the URL, without
    /// connecting.
    pub(crate) fn validate(&self) -> Result<(Keyspace, Endpoint), ValidationError> {
        self.timeouts.validate()?;
        let keyspace = Keyspace::new(self.schema, &self.prefix)?;
        Ok((keyspace, Endpoint::parse(&self.url)?))
    }
}

/// Inside a builder's `impl` block: `MAX_TIMEOUT` and the setters of its
/// [`RedisOptions`] field `redis` (`prefix`, `schema`, `connect_timeout`,
/// `command_timeout`, `timeouts`). `schema:` and `command_timeout:` take
/// doc lines that builder adds to those setters.
macro_rules! redis_options_setters {
    (schema: [$($schema_doc:literal),* $(,)?], command_timeout: [$($command_doc:literal),* $(,)?] $(,)?) => {
        /// The longest allowed [`connect_timeout`](Self::connect_timeout) and
        /// [`command_timeout`](Self::command_timeout): one hour.
        pub const MAX_TIMEOUT: std::time::Duration = $crate::connection::Timeouts::MAX;

        /// The key prefix of the native schema (ignored by the Hertz
        /// schema): 1 to 64 characters of `A-Z a-z 0-9 . _ - : /`.
        pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
            self.redis.prefix = prefix.into();
            self
        }

        /// The key schema.
        $(#[doc = $schema_doc])*
        pub fn schema(mut self, schema: $crate::schema::KeySchema) -> Self {
            self.redis.schema = schema;
            self
        }

        /// How long to wait for a connection to Redis. At most
        /// [`MAX_TIMEOUT`](Self::MAX_TIMEOUT).
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.redis.timeouts.connect = timeout;
            self
        }

        /// How long to wait for Redis to answer one command. At most
        /// [`MAX_TIMEOUT`](Self::MAX_TIMEOUT).
        $(#[doc = $command_doc])*
        pub fn command_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.redis.timeouts.command = timeout;
            self
        }

        /// Both timeouts at once.
        pub fn timeouts(mut self, timeouts: $crate::connection::Timeouts) -> Self {
            self.redis.timeouts = timeouts;
            self
        }
    };
}
pub(crate) use redis_options_setters;
