//! Error types, one enum per concern.
//!
//! * [`ValidationError`]: bad input (names, addresses, tags, configuration),
//!   always reported before anything is written to Redis.
//! * [`RegistryError`]: registering, heartbeating or deregistering failed.
//! * [`ResolveError`]: reading a service's instances failed.
//! * [`RedisFailure`]: what Redis (or the connection to it) said, inside
//!   the two above; it does not expose the Redis client library.
//!
//! The tower layer has its own error, [`DiscoveryError`](crate::layer::DiscoveryError).

use std::time::Duration;

mod redis_failure;

pub use self::redis_failure::RedisFailure;

/// Input that the crate refuses: nothing was sent to Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A service name must not be empty.
    #[error("invalid service name: it is empty")]
    EmptyServiceName,
    /// A service name is longer than [`ServiceName::MAX_LEN`](crate::ServiceName::MAX_LEN).
    #[error("invalid service name: it is {len} bytes long, at most 255 are allowed")]
    ServiceNameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
    },
    /// A service name holds a character outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid service name {name:?}: character {character:?} at position {position} is not allowed (use A-Z a-z 0-9 . _ -)"
    )]
    ServiceNameCharacter {
        /// The rejected name.
        name: String,
        /// The first offending character.
        character: char,
        /// Its byte position in the name.
        position: usize,
    },
    /// An instance address is not `host:port`, or the address policy
    /// refuses it.
    #[error("invalid address {addr:?}: {reason}")]
    Address {
        /// The rejected address (cut to 300 characters).
        addr: String,
        /// What is wrong with it.
        reason: crate::instance::AddressProblem,
    },
    /// More tags than [`Instance::MAX_TAGS`](crate::Instance::MAX_TAGS).
    #[error("invalid tags: {count} tags, at most 64 are allowed")]
    TooManyTags {
        /// The number of tags asked for.
        count: usize,
    },
    /// A tag key or value is longer than [`Instance::MAX_TAG_LEN`](crate::Instance::MAX_TAG_LEN) bytes.
    #[error("invalid tag {key:?}: keys and values are at most 256 bytes")]
    TagTooLong {
        /// The key of the rejected tag (cut to 64 bytes).
        key: String,
    },
    /// A tag key is empty.
    #[error("invalid tag: the key is empty")]
    EmptyTagKey,
    /// The stored form of an instance would exceed [`Instance::MAX_ENTRY_LEN`](crate::Instance::MAX_ENTRY_LEN).
    #[error(
        "invalid instance: its registry entry would be {len} bytes, at most 16384 are allowed"
    )]
    EntryTooLarge {
        /// The encoded length.
        len: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A Redis URL could not be parsed.
    #[error("invalid Redis URL {url:?}: {reason}")]
    RedisUrl {
        /// The URL with any password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Registering, heartbeating or deregistering an instance failed.
///
/// `Clone`, and shaped like [`ResolveError`]: the same variant names and
/// fields for the same meaning.
///
/// ```
/// use redis_discovery::RegistryError;
///
/// /// Whether trying again later may succeed.
/// fn is_transient(error: &RegistryError) -> bool {
///     match error {
///         RegistryError::Timeout { .. } => true,
///         RegistryError::Redis { source } | RegistryError::Connect { source, .. } => {
///             source.is_timeout() || source.is_connection_failure()
///         }
///         _ => false,
///     }
/// }
/// assert!(!is_transient(&RegistryError::Shutdown));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The input was refused; nothing was written.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Redis answered with an error or the connection failed.
    #[error("redis error: {source}")]
    Redis {
        /// What Redis said, with its server error code.
        source: RedisFailure,
    },
    /// The registry could not connect to Redis when it was created.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The Redis URL, without its password.
        url: String,
        /// What went wrong.
        source: RedisFailure,
    },
    /// Redis did not answer in time.
    #[error("redis did not answer within {timeout:?}")]
    Timeout {
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The registry was shut down.
    #[error("the registry has been shut down")]
    Shutdown,
    /// This registration no longer owns its instance: it was deregistered,
    /// or the same address was registered again by a newer handle.
    #[error("this registration was deregistered or replaced by a newer registration of the same address")]
    Detached,
    /// The operation ran in a task of its own (so that dropping its future
    /// could not cut it in half) and that task ended without a result: the
    /// Tokio runtime it ran on is shutting down, or the task panicked.
    #[error(
        "the registry operation ended before it finished (is the Tokio runtime shutting down?)"
    )]
    Interrupted,
    /// An operator override was asked of a registry in the Hertz schema,
    /// whose one hash per service has no room for it. Nothing was written.
    #[error("the Hertz schema has no room for operator overrides; use the native schema, or change (or stop) the instance's own registration")]
    OverridesUnsupported,
}

/// Reading the instances of a service failed.
///
/// `Clone`, so every caller of a shared read gets the same error. A Redis
/// error keeps its server error code and whether the connection failed
/// ([`RedisFailure`]):
///
/// ```
/// use redis_discovery::ResolveError;
///
/// /// Whether the resolver's Redis user may not run the read.
/// fn is_permission_error(error: &ResolveError) -> bool {
///     matches!(error, ResolveError::Redis { source, .. } if source.code() == Some("NOPERM"))
/// }
/// let error = ResolveError::UnknownService { service: "orders".into() };
/// assert!(!is_permission_error(&error.clone()));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The service name was refused.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Redis answered with an error or the connection failed.
    #[error("resolving {service}: redis error: {source}")]
    Redis {
        /// The service being resolved.
        service: String,
        /// What Redis said, with its server error code
        /// ([`code`](RedisFailure::code)); `Clone`, so every caller of a
        /// single-flight resolve gets it.
        source: RedisFailure,
    },
    /// The resolver could not connect to Redis when it was created.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The Redis URL, without its password.
        url: String,
        /// What went wrong.
        source: RedisFailure,
    },
    /// Redis did not answer in time.
    #[error("resolving {service}: redis did not answer within {timeout:?}")]
    Timeout {
        /// The service being resolved.
        service: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The last good list is older than the configured maximum staleness.
    #[error("resolving {service}: the last known instances are {age:?} old, more than the allowed {max:?}")]
    Stale {
        /// The service being resolved.
        service: String,
        /// How old the last good list is.
        age: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// The read of the service was dropped before it finished, without a
    /// result: the Tokio runtime the resolver was created on has shut
    /// down, or the read panicked. The next resolve tries again.
    #[error("resolving {service}: the read was dropped before it finished (has the runtime the resolver was created on shut down?)")]
    Interrupted {
        /// The service being resolved.
        service: String,
    },
    /// A static resolver does not know the service.
    #[error("unknown service {service}")]
    UnknownService {
        /// The service asked for.
        service: String,
    },
    /// The resolver was shut down.
    #[error("the resolver has been shut down")]
    Shutdown,
    /// [`RedisResolver::events`](crate::RedisResolver::events) on the
    /// Hertz schema, which publishes no change events.
    #[error("the Hertz schema publishes no change events; use the native schema, or re-read the services periodically")]
    EventsUnsupported,
}

// `S: TryInto<ServiceName>` arguments also take a `ServiceName` itself,
// whose conversion cannot fail.
impl From<std::convert::Infallible> for RegistryError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<std::convert::Infallible> for ResolveError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}
