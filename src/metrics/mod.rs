//! What the crate records through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): the names and labels below, nothing else.
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The application picks the exporter; the crate only records. Install
//! // the recorder before building layers and resolvers: the crate prepares
//! // its handles once per instance and service, from the recorder
//! // installed at that time.
//! # let recorder = metrics_util::debugging::DebuggingRecorder::new();
//! metrics::set_global_recorder(recorder)?;
//! // Optional: units and help texts for every metric below.
//! redis_discovery::metrics::describe();
//! # Ok(())
//! # }
//! ```
//!
//! Nothing is recorded unless the application installs a recorder, and
//! without the feature nothing is compiled in. Names follow OpenTelemetry's
//! HTTP client conventions where one exists (`http.client.request.duration`:
//! each attempt is one HTTP request, as OpenTelemetry counts retries);
//! the others start with `redis_discovery.`. Prometheus exporters write
//! dots as underscores (and add `_seconds`, `_total` where they do).
//!
//! | metric | kind | labels | meaning |
//! | --- | --- | --- | --- |
//! | `http.client.request.duration` | histogram, s | `service`, `server.address`, `server.port`, `error.type` (failed attempts only) | one per attempt of a discovered request (OpenTelemetry counts each retry as a request), from sending to response headers or failure; its count is the attempts per instance and outcome |
//! | `redis_discovery.retries` | counter | `service`, `error.type` | a request sent again to another instance, by what its failed attempt showed |
//! | `redis_discovery.retries.budget_exhausted` | counter | `service` | a retry the retry budget refused |
//! | `redis_discovery.ejections` | counter | `service`, `server.address`, `server.port` | an instance ejected by outlier detection |
//! | `redis_discovery.ejections.ended` | counter | `service`, `server.address`, `server.port` | an ejection that ended: ran out (seen by the first request after it) or its instance left the list; ejections − ended = ejected now |
//! | `redis_discovery.cache.lookups` | counter | `service`, `result` (`hit`, `miss`) | a lookup of the service answered from the resolver's cache, or one that waited for Redis: one per request through the layer and one per retry (a retry looks again), one per `resolve` call, and per `cached` call that finds the service cached |
//! | `redis_discovery.resolve.duration` | histogram, s | `service` | one read of a service's instances from Redis (a miss, an event, a refresh), either way |
//! | `redis_discovery.snapshot.staleness` | gauge, s | `service` | time since Redis last confirmed the cached list, set after every read attempt (so sampled: every refresh interval while Redis is down) |
//! | `redis_discovery.redis.errors` | counter | `operation` (`read`, `subscribe`, `register`, `heartbeat`, `deregister`) | a failed Redis call (a heartbeat call renews up to 1 000 instances of a service) |
//! | `redis_discovery.subscription.reconnects` | counter | | the resolver's pub/sub connection re-established after a loss |
//! | `redis_discovery.registrations` | gauge | `service` | instances this process keeps registered |
//! | `redis_discovery.heartbeat.failures` | counter | `service` | a failed lease renewal of a registered instance |
//!
//! Label values: `error.type` is one of `refused`, `connect`,
//! `connection_lost`, `timeout`, `failure_status` (a response the layer's
//! [`failure_status`](crate::layer::DiscoveryLayerBuilder::failure_status)
//! counts), `other`. `operation` is one of `read`, `subscribe`, `register`,
//! `heartbeat`, `deregister`.
//!
//! Cost: on a request, one histogram update per attempt, through a handle
//! prepared once per instance, and one counter update on a cache hit,
//! through a handle prepared once per service; two clock reads per attempt
//! (none when the handles were prepared without a recorder). Handles are
//! prepared from the recorder installed when the layer or resolver first
//! sees the instance or service (a failure's, on its first occurrence):
//! install the recorder first. The README's Metrics section says what the
//! counts add up to, and what records nothing.

mod handles;
mod resolver_registry;

pub(crate) use handles::{AttemptClass, InstanceMetrics, LayerServiceMetrics, Stopwatch};
pub(crate) use resolver_registry::{
    cache_metrics, heartbeats_failed, redis_error, registrations, subscription_reconnected,
    CacheMetrics, RedisOperation, RegistrationGauge,
};

/// One attempt of a discovered request (histogram, seconds).
pub const ATTEMPT_DURATION: &str = "http.client.request.duration";
/// Requests sent again to another instance (counter).
pub const RETRIES: &str = "redis_discovery.retries";
/// Retries the retry budget refused (counter).
pub const RETRIES_BUDGET_EXHAUSTED: &str = "redis_discovery.retries.budget_exhausted";
/// Instances ejected by outlier detection (counter).
pub const EJECTIONS: &str = "redis_discovery.ejections";
/// Ejections that ran out (counter).
pub const EJECTIONS_ENDED: &str = "redis_discovery.ejections.ended";
/// Resolver cache hits and misses (counter).
pub const CACHE_LOOKUPS: &str = "redis_discovery.cache.lookups";
/// Reads of a service's instances from Redis (histogram, seconds).
pub const RESOLVE_DURATION: &str = "redis_discovery.resolve.duration";
/// Age of a service's cached list (gauge, seconds).
pub const SNAPSHOT_STALENESS: &str = "redis_discovery.snapshot.staleness";
/// Failed Redis operations (counter).
pub const REDIS_ERRORS: &str = "redis_discovery.redis.errors";
/// Pub/sub connections re-established (counter).
pub const SUBSCRIPTION_RECONNECTS: &str = "redis_discovery.subscription.reconnects";
/// Instances kept registered by this process (gauge).
pub const REGISTRATIONS: &str = "redis_discovery.registrations";
/// Failed lease renewals (counter).
pub const HEARTBEAT_FAILURES: &str = "redis_discovery.heartbeat.failures";

/// Label: the service's name.
pub const SERVICE: &str = "service";
/// Label: an instance's host (OpenTelemetry's `server.address`).
pub const SERVER_ADDRESS: &str = "server.address";
/// Label: an instance's port (OpenTelemetry's `server.port`).
pub const SERVER_PORT: &str = "server.port";
/// Label: how an attempt failed (OpenTelemetry's `error.type`).
pub const ERROR_TYPE: &str = "error.type";
/// Label: `hit` or `miss`.
pub const RESULT: &str = "result";
/// Label: the Redis operation that failed.
pub const OPERATION: &str = "operation";

/// Describes every metric (unit and help text) to the installed recorder,
/// for exporters that show them (Prometheus' `# HELP`). Optional; call it
/// once, after installing the recorder.
#[cfg(feature = "metrics")]
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "One attempt of a discovered request, to response headers or failure"
    );
    describe_counter!(RETRIES, "Requests sent again to another instance");
    describe_counter!(RETRIES_BUDGET_EXHAUSTED, "Retries the retry budget refused");
    describe_counter!(EJECTIONS, "Instances ejected by outlier detection");
    describe_counter!(EJECTIONS_ENDED, "Ejections that ran out");
    describe_counter!(CACHE_LOOKUPS, "Resolver cache hits and misses");
    describe_histogram!(
        RESOLVE_DURATION,
        Unit::Seconds,
        "Reads of a service's instances from Redis"
    );
    describe_gauge!(
        SNAPSHOT_STALENESS,
        Unit::Seconds,
        "Time since Redis last confirmed a service's cached list"
    );
    describe_counter!(REDIS_ERRORS, "Failed Redis operations");
    describe_counter!(
        SUBSCRIPTION_RECONNECTS,
        "Pub/sub connections re-established"
    );
    describe_gauge!(REGISTRATIONS, "Instances kept registered by this process");
    describe_counter!(HEARTBEAT_FAILURES, "Failed lease renewals");
}
