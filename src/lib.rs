//! Service registration, discovery and client-side load balancing for HTTP
//! services, with Redis as the registry.
//!
//! Servers register instances ([`RedisRegistry`]); clients resolve a service
//! name to its live instances ([`RedisResolver`], cached, pushed by pub/sub)
//! and a tower layer ([`layer::DiscoveryLayer`]) sends each request for
//! `http://SERVICE/…` to one of them, picked by weight ([`balance`]).
//!
//! ```no_run
//! use http_body_util::Empty;
//! use hyper::body::Bytes;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
//! use redis_discovery::{Instance, RedisRegistry, RedisResolver};
//! use tower::{Layer, ServiceExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let redis = "redis://127.0.0.1:6379";
//!
//! // Server side: register, heartbeat in the background, deregister on shutdown.
//! let registry = RedisRegistry::connect(redis).await?;
//! let registration = registry
//!     .register("orders", Instance::new("127.0.0.1:8080")?.with_weight(10))
//!     .await?;
//!
//! // Client side: the layer resolves `orders` and picks an instance.
//! let resolver = RedisResolver::connect(redis).await?;
//! let client = DiscoveryLayer::new(resolver)
//!     .layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
//! let request = http::Request::get("http://orders/v1/items")
//!     .discover()
//!     .body(Empty::new())?;
//! let response = client.oneshot(request).await?; // sent to 127.0.0.1:8080
//!
//! registration.deregister().await?;
//! # Ok(())
//! # }
//! ```
//!
//! | module | what |
//! | --- | --- |
//! | [`registry`] | server side: [`RedisRegistry`], [`Registration`], heartbeats |
//! | [`resolver`] | client side: [`Resolve`], [`RedisResolver`], [`StaticResolver`], [`BoxResolver`](resolver::BoxResolver), the cache |
//! | [`balance`] | pickers: `WeightedRandom`, `RoundRobin`, `ConsistentHash`, `LeastLoaded`, tag filters |
//! | `https` | HTTPS and mTLS to instances, verified against the service's name (feature `rustls`) |
//! | [`discover`] | a service's changes as a `Stream` (`RedisResolver::changes`) and as a `tower::discover::Discover` (feature `tower-discover`); a `GrpcChannel` for tonic clients that follows the registry and routes around dead instances (feature `tonic`) |
//! | [`layer`] | the tower layer for hyper, reqwest and reqwest-middleware |
//! | `metrics` | what the crate records through the `metrics` facade, and the names (feature `metrics`) |
//! | [`schema`] | the Redis keyspace: native and Hertz-compatible |
//! | [`error`] | [`ValidationError`], [`RegistryError`], [`ResolveError`], [`RedisFailure`] |
//!
//! ## Source map
//!
//! One folder a piece, one job a file (the README's "How it works" has the
//! same map):
//!
//! | folder | file | what it holds |
//! | --- | --- | --- |
//! | `registry/` | `mod.rs` | `RedisRegistry`: register, deregister, shutdown |
//! | | `builder.rs` | `RegistryBuilder`, its options and their checks |
//! | | `registration.rs` | `Registration`, the handle of one registered instance |
//! | | `lease.rs` | one registration's state, shared by its handle and the heartbeat |
//! | | `heartbeat.rs`, `renewal.rs` | the one heartbeat task; one round of upserts |
//! | | `ending.rs` | deregistration on drop and on shutdown |
//! | | `overrides.rs` | `Override`, the operator's overrides: set, clear, list |
//! | `resolver/` | `mod.rs` | the `Resolve` trait |
//! | | `redis_resolver.rs` | `RedisResolver`, the public face of the cached resolver |
//! | | `builder.rs` | `ResolverBuilder` |
//! | | `engine.rs`, `engine/` | what runs behind it: reads (`reads.rs`), single-flight read tasks (`read_task.rs`), cache membership and the idle sweep (`membership.rs`), refreshes (`refresh.rs`) |
//! | | `cache.rs`, `cache/` | the cache's rules; the concurrent map (`map.rs`, papaya); one service's read state machine (`entry.rs`, `read_state.rs`) |
//! | | `pubsub.rs`, `subscriptions.rs` | the event connection and what it subscribes to |
//! | | `recovery.rs` | the recovery grace after Redis was lost |
//! | | `snapshot.rs` | `Snapshot`, `Listed` |
//! | | `static_resolver.rs`, `boxed.rs` | `StaticResolver`, `BoxResolver` |
//! | | `skipped.rs` | warnings about refused entries, bounded |
//! | `layer/` | `mod.rs` | `DiscoverExt`, the module docs |
//! | | `discovery_layer.rs` | `DiscoveryLayer`, `DiscoveryLayerBuilder` |
//! | | `service.rs`, `future.rs` | `DiscoveryService` and its `ResponseFuture`: the one retry loop, with the attempt timeout |
//! | | `verdict.rs`, `failure.rs`, `budget.rs` | what an attempt's end means (outcome, retry or not); failure classes from the error chain; `RetryBudget` |
//! | | `router.rs`, `picker_cache.rs`, `pick.rs`, `attempts.rs` | resolve, the pickers kept per snapshot, picking with ejection and the panic threshold, tried instances |
//! | | `outlier/` | `OutlierDetection` (`config.rs`); per-instance state, lock-free (`instance.rs`), per service with the ejected share (`service.rs`), per layer (`registry.rs`) |
//! | | `request.rs`, `response.rs`, `replay.rs` | `DiscoverRequest`, `DiscoverResponse` (sealed), `ReplayBody` |
//! | | `reqwest.rs`, `middleware.rs` | reqwest requests; `DiscoveryMiddleware`, which runs the layer's own future |
//! | | `options.rs`, `error.rs` | `HostHeader`, the options, `DiscoveryError` |
//! | `discover/` | `changes.rs`, `diff.rs`, `change.rs` | `InstanceChanges` (`RedisResolver::changes`): one service's changes as a stream; the merge of two sorted lists into removes and inserts; `InstanceChange`, `InstanceAddr` (the key) |
//! | | `tower_discover.rs` | `DiscoverInstances` (`into_discover`): the stream as a `tower::discover::Discover` for `tower::balance` (feature `tower-discover`) |
//! | | `tonic_channel/` | `GrpcChannel` (`RedisResolver::tonic_channel`): tower's p2c balancer over one tonic `Channel` per instance, each ready only while connected; the connector that sees a connection lost; calls failing once none is ready (feature `tonic`) |
//! | `https/` | `mod.rs`, `builder.rs`, `server_name.rs` | `ServiceTls` (feature `rustls`): the connector, its builder (roots, client certificates), the service name read back from the routed URI |
//! | `balance/` | one file a balancer | `WeightedRandom`, `RoundRobin`, `ConsistentHash`, `LeastLoaded`, `TagFilter`; `load.rs` what load-aware pickers read (`PeakEwma`, `Loads`); `rng.rs`, `lookup.rs` their helpers |
//! | `schema/` | `mod.rs`, `native.rs`, `hertz.rs`, `overrides.rs`, `script.rs` | `KeySchema` and the keyspace calls; the two keyspaces; the operator's overrides (native); running Lua scripts |
//! | `connection/` | `redis_url.rs`, `endpoint.rs`, `link.rs`, `options.rs`, `timed.rs`, `failover_sign.rs` | URL parsing and redaction; connecting (single, Sentinel, Cluster); the connection; the options both builders share; the one timeout helper; failover signs |
//! | `instance/` | `mod.rs`, `name.rs`, `tags.rs`, `address.rs`, `policy.rs` | `Instance`; `ServiceName`; `Tags`; address checks; the address policy |
//! | `error/` | `mod.rs`, `redis_failure.rs` | the error enums; `RedisFailure`, what Redis or the connection said |
//! | `bin/redis-discovery/` | one file a command | the CLI (feature `cli`) |
//! | `metrics/` | `mod.rs`, `handles.rs`, `resolver_registry.rs` | the metric names and their table; the handles, prepared once per instance or service (empty without feature `metrics`): the layer's, the resolver's and registry's |
//! | `time.rs` | | deadline arithmetic that cannot panic |
//!
//! ## Redis URLs
//!
//! Registries, resolvers and the CLI take one URL:
//!
//! * `redis://[user:password@]host:port[/db]`, `rediss://…` (feature `tls`),
//!   `unix:///path/redis.sock[?db=N]`: one server;
//! * `redis+sentinel://[user:password@]host[:port][,host[:port]...]/master[/db]`:
//!   the master that these Sentinels name, followed across failovers
//!   (the userinfo is for the Redis nodes; `?sentinel_username=…&sentinel_password=…`
//!   for the Sentinels; a host without a port means 26379);
//! * `redis+cluster://[user:password@]host[:port][,host[:port]...]`: a Redis
//!   Cluster, found from these seed nodes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let registry = redis_discovery::RedisRegistry::connect(
//!     "redis+sentinel://10.0.0.5,10.0.0.6,10.0.0.7/mymaster",
//! )
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! A URL that does not parse is refused before anything connects. No
//! password is ever shown: `Debug`, errors and logs show URLs as
//! [`redact_url`] does.
//!
//! The README covers configuration, guarantees under failure and running
//! beside Go Hertz services.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod balance;
mod connection;
pub mod discover;
pub mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "rustls")]
pub mod https;
mod instance;
pub mod layer;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
#[allow(unreachable_pub, dead_code)]
mod metrics;
pub mod registry;
pub mod resolver;
pub mod schema;
mod time;

pub use connection::{redact as redact_url, Timeouts};
pub use error::{RedisFailure, RegistryError, ResolveError, ValidationError};
pub use instance::{AddressProblem, EntryError, Instance, ServiceName, Tags, TagsIter};
pub use registry::{Override, RedisRegistry, Registration};
pub use resolver::{RedisResolver, Resolve, Snapshot, StaticResolver};
pub use schema::KeySchema;

// The README's code blocks compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
