//! The client side: service name to live instances.
//!
//! ```no_run
//! use redis_discovery::ServiceName;
//! use redis_discovery::resolver::{RedisResolver, Resolve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let resolver = RedisResolver::connect("redis://127.0.0.1:6379").await?;
//! let orders = ServiceName::new("orders")?;
//!
//! // First call: one read (shared by every concurrent caller), then cached.
//! let snapshot = resolver.resolve(&orders).await?;
//! println!("{} live instances, read {:?} ago", snapshot.len(), snapshot.age());
//!
//! // Hot path: synchronous, lock-free, no I/O.
//! if let Some(snapshot) = resolver.cached("orders") {
//!     for instance in snapshot.instances() {
//!         println!("{instance} weight {}", instance.weight());
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! * [`Resolve`]: what the tower layer asks — a synchronous
//!   [`cached`](Resolve::cached) for the hot path, an async
//!   [`resolve`](Resolve::resolve) for misses.
//! * [`RedisResolver`]: the cached resolver backed by Redis.
//! * [`StaticResolver`]: a fixed map, for tests and for users without Redis.
//! * [`Snapshot`]: an immutable list of the live instances of one service.
//!
//! # How the Redis resolver keeps its cache
//!
//! * **Reads.** A service is read in one round trip by a read-only script
//!   (`EVALSHA_RO`): the instances whose lease has not run out, by the Redis
//!   clock, whether or not anything pruned the expired ones yet. Nothing is
//!   written, so a read-only ACL user is enough (the script also reads the
//!   Redis clock with `TIME`), e.g.
//!   `ACL SETUSER reader on >PASSWORD ~sd:* &sd:* -@all +@read +time +evalsha_ro +eval_ro +subscribe +unsubscribe +ping`.
//!   Without the channels (`&sd:*`) the resolver still works, on its
//!   periodic refresh alone, and says so once in a warning.
//!   [`RedisResolver::events`] needs `+psubscribe` and the pattern itself,
//!   `&sd:{*}:events`, besides. A server
//!   without `EVALSHA_RO` (Redis 6) is read with `EVALSHA`, decided per
//!   connection: other servers the process talks to keep `EVALSHA_RO` (a
//!   Cluster is one connection: one Redis 6 node switches all of it).
//!   Corrupt entries, and entries the [address policy](#the-address-policy)
//!   refuses, are skipped with one warning each, naming the service and the
//!   field, while they stay (not one per read). The operator's
//!   [overrides](crate::Override) are read with the entries (`HMGET`, so
//!   the same read-only user reads them) and applied: an overridden weight
//!   replaces the registered one (but not an owner's own drain, weight
//!   0), a disabled instance is left out.
//! * **Single flight.** At most one read per service runs at a time. Callers
//!   that miss join the running read and all get its result.
//! * **Bounded waits.** A caller that misses waits at most the connect
//!   timeout plus twice the command timeout (6 s by default: a read may
//!   first wait for its service's subscription), then gets
//!   [`ResolveError::Timeout`] (or the last known instances, if it has
//!   some). Reads that callers wait for have their own pool of in-flight
//!   reads, so they never queue behind background refreshes; a periodic
//!   refresh skips a service whose read is still running, so a slow Redis
//!   does not grow a backlog; a read still queued when its service has
//!   been evicted and no caller waits for it any more is dropped unsent. A read cut short (the runtime the resolver
//!   was created on shut down) answers its callers with
//!   [`ResolveError::Interrupted`].
//! * **Events** (native schema). One pub/sub connection per resolver is
//!   subscribed to the events channel of every cached service that has
//!   been found with instances (or is [watched](RedisResolver::watch)). An
//!   event marks its service dirty: one read follows, however many events
//!   arrived meanwhile. Once a read finds instances of a new service, its
//!   channel is subscribed and the service read once more after Redis
//!   confirmed, so no change can fall between the first read and the
//!   subscription. Subscription changes wait as the latest wanted state
//!   of each channel, not in a queue, so they cannot pile up while Redis
//!   is slow. When the connection
//!   drops it is re-established with backoff (100 ms to 1 s: resubscribed
//!   within about a second of Redis coming back), every channel is
//!   subscribed again and every cached service is read again. It is
//!   pinged every refresh interval to detect a silently dead connection.
//! * **Periodic refresh.** Every cached service is read again each refresh
//!   interval (the safety net for lost events; the only refresh of the
//!   Hertz schema, which has no events).
//! * **Instances outlive a lost registry** (native schema). A read does
//!   not simply replace the list: an instance of the previous list that a
//!   read misses stays listed until its last known lease runs out (the
//!   lease deadline read with it last time, counted from the start of
//!   that read), unless a `deregister` or `expire` event named it or the
//!   read found it disabled by an override (then it leaves at once). In
//!   short, outside a recovery grace an instance leaves a client's view
//!   when Redis says it was deregistered or expired, or at the first read
//!   after its last known lease has run out (an event, the periodic
//!   refresh, or a re-read scheduled when the first kept lease runs
//!   out); a read that lists it with a new lease keeps it. After a
//!   `FLUSHALL`, or a failover to a replica that lost writes, clients so
//!   keep the whole list while the registrations heal, instead of sending
//!   all traffic to the first instance back (and past the last known
//!   leases, for the recovery grace below). The Hertz schema has no
//!   per-instance lease: there, outside a recovery grace, a read is the
//!   whole list.
//!   [`RedisResolver::fetch`] and [`RedisResolver::list`] show what Redis
//!   holds now, nothing kept.
//! * **Recovery grace.** After an outage longer than the lease TTL every
//!   known lease has run out, and a read after Redis is back but before
//!   an instance's next heartbeat would drop that live instance. So for a
//!   [grace](ResolverBuilder::recovery_grace) (by default the schema's
//!   default heartbeat interval plus 5 s: 10 s native, 35 s Hertz), an
//!   instance a read misses stays listed until the later of its last
//!   known lease and the grace end; the service is read again then, and
//!   what is still missing leaves. However often graces follow one another
//!   (a flapping connection, a slow service's timeouts), an instance stays
//!   at most one grace after the first read that missed it. The grace starts:
//!   * resolver-wide, when Redis answers again (a read succeeds, or the
//!     event connection is back and resubscribed) after the resolver lost
//!     it: its event connection dropped, or a read failed because Redis
//!     could not be reached (broken or refused connection, timeout; not
//!     an error Redis answered with);
//!   * per service (native schema), when a read finds the service's keys
//!     gone after a read that found them: a `FLUSHALL`, a restart or a
//!     failover to a replica that missed writes, seen by a read before
//!     the first registration comes back; or when a read misses an
//!     instance whose last known lease has not run out and that no event
//!     removed (the same losses, seen after a sibling is back). The Hertz
//!     schema has no such rule: a hash emptied by its last `HDEL` looks the same as a lost
//!     one, and there are no events to tell them apart.
//!
//!   During a grace a `deregister` event still removes its instance at
//!   once; an `expire` event does not (after a restart from an old
//!   snapshot, the first heartbeat's pruning announces live siblings
//!   whose leases ran out while Redis was away): that instance is kept
//!   to the grace end like any other a read misses. Instances of the
//!   Hertz schema, which have no lease of their own, are kept during a
//!   grace too. The cost: an instance that crashed during the outage is
//!   listed until the grace ends. Outside a grace nothing changes.
//!   [`recovery_grace(Duration::ZERO)`](ResolverBuilder::recovery_grace)
//!   turns it off.
//! * **Reads retry a broken connection once.** A read that fails because
//!   the connection broke (Redis restarted, a failover) is tried once
//!   more at once, which waits for the reconnect the failure started;
//!   both tries share the time limit of one read, so the wait bound
//!   above holds.
//! * **Outages.** An error never replaces a good snapshot: callers keep the
//!   last known instances, whose [`age`](Snapshot::age) grows, unless a
//!   [`max_staleness`](ResolverBuilder::max_staleness) is configured.
//! * **Negative cache.** A service found with no instance (and not
//!   watched) is served as empty for the
//!   [negative TTL](ResolverBuilder::negative_ttl) (5 s by default), is
//!   not subscribed and not refreshed, then is read again when asked for,
//!   or dropped. Requests for names nobody registered (a discovery layer
//!   that routes every host) so cost one read per name and TTL, and no
//!   lasting memory or subscription.
//! * **Capped.** At most [`max_services`](ResolverBuilder::max_services)
//!   services (10 000 by default) are cached. Past the cap, a sixteenth of
//!   it is evicted at once: services serving no instance first, then the
//!   least recently used. Recency costs a hit nothing more than the idle
//!   flag below: it becomes a timestamp when the sweep or an eviction
//!   looks, so eviction is a scan per batch instead of a list updated on
//!   every hit. Among services used since the last look, those used
//!   before it too are kept over new ones, so a burst of new names does
//!   not push out a service in steady use. Watched services are never
//!   evicted.
//! * **Idle expiry.** A service not asked for during the idle expiry is
//!   dropped and unsubscribed. A hit only reads a per-service flag (and sets
//!   it on the first hit after a sweep), so it stays cheap; the discovery
//!   layer, which reuses a snapshot without a lookup while it is current,
//!   marks it the same way.
//! * **Shutdown.** When the last clone is dropped, every background task ends
//!   and both connections close.
//!
//! # The address policy
//!
//! Anyone who can write the registry can point clients anywhere, so the
//! entries a resolver reads pass one address policy, the same that
//! [`Instance::new`](crate::Instance::new) applies when an instance is
//! registered:
//!
//! * **Fixed rules**: unspecified (`0.0.0.0/8`, `[::]`), multicast
//!   (`224.0.0.0/4`, `ff00::/8`), broadcast (`255.255.255.255`) and
//!   link-local (`169.254.0.0/16`, `fe80::/10`) addresses are refused, in
//!   their IPv4-mapped IPv6 forms too. Loopback and private ranges are
//!   allowed. IPv4 is accepted only as a dotted quad without leading
//!   zeros (`0xa9fea9fe` or `0251.0376.0251.0376` would reach
//!   169.254.169.254 when dialed). A DNS name cannot be checked: it is
//!   resolved only when dialed; the allow-list closes that gap.
//! * **An allow-list**, opt-in:
//!   [`allow_networks`](ResolverBuilder::allow_networks) (CIDR) and
//!   [`allow_ports`](ResolverBuilder::allow_ports). With networks set, an
//!   instance at a host name is refused: it cannot be checked without
//!   resolving the name.
//!
//! A refused entry is skipped, never dialed, and logged once while it stays
//! ([`EntryError::Refused`](crate::EntryError::Refused)). Each cached
//! service remembers up to 64 entries it warned about, and forgets them
//! when it leaves the cache (so the memory is bounded by
//! [`max_services`](ResolverBuilder::max_services)); entries beyond that
//! are summed up in one line per read ("N more skipped entries"). An
//! uncached read ([`fetch`](RedisResolver::fetch),
//! [`list`](RedisResolver::list)) of a service not cached remembers
//! nothing: it warns at every call.
//!
//! Service names are case-insensitive ([`ServiceName`]):
//! [`cached`](Resolve::cached) and the layer find `Orders` under `orders`.
//! The Hertz schema's key keeps the case Go wrote it with, and a cached
//! service is read under the spelling of the request that cached it. A
//! [`watch`](RedisResolver::watch) spelled otherwise replaces a cached
//! service that has no instance and is not watched, so `watch("Orders")`
//! reads `/hertz/Orders/server` even after a lowercased request for
//! `orders` found nothing. A service with instances, or watched, keeps
//! its spelling until it leaves the cache; `resolve` never changes it
//! (requests alternating the case of their host must not bypass the
//! negative cache).

mod boxed;
mod builder;
mod cache;
mod engine;
mod events;
mod pubsub;
mod recovery;
mod redis_resolver;
mod skipped;
mod snapshot;
mod static_resolver;
mod subscriptions;

use std::future::Future;
use std::sync::Arc;

pub use self::boxed::BoxResolver;
pub use self::builder::ResolverBuilder;
pub use self::events::{ChangeKind, RegistryChange, RegistryEvent, RegistryEvents};
pub use self::redis_resolver::RedisResolver;
#[cfg(feature = "tonic")]
pub(crate) use self::redis_resolver::WeakResolver;
/// For the layer's unit tests: snapshots as a cache makes them.
#[cfg(test)]
pub(crate) use self::snapshot::{CacheLink, UseFlag};
pub use self::snapshot::{Listed, Snapshot};
pub use self::static_resolver::StaticResolver;

use crate::error::ResolveError;
use crate::instance::ServiceName;

/// Service name to its current [`Snapshot`]. Implemented by
/// [`RedisResolver`] and [`StaticResolver`]; the tower layer is generic over
/// it.
///
/// ```
/// use redis_discovery::{Instance, ServiceName};
/// use redis_discovery::resolver::{Resolve, StaticResolver};
///
/// async fn first_addr(resolver: &impl Resolve, service: &ServiceName) -> Option<String> {
///     // Hot path first; await a resolve only on a miss.
///     let snapshot = match resolver.cached(service.as_str()) {
///         Some(snapshot) => snapshot,
///         None => resolver.resolve(service).await.ok()?,
///     };
///     snapshot.instances().first().map(|i| i.addr().to_owned())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redis_discovery::ValidationError> {
/// let resolver = StaticResolver::new().with_service("a", [Instance::new("h:1")?])?;
/// assert_eq!(first_addr(&resolver, &"a".parse()?).await.as_deref(), Some("h:1"));
/// # Ok(())
/// # }
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The current snapshot of `service`: from the cache when fresh, else
    /// from one read shared by every concurrent caller. A service with no
    /// live instance is an empty snapshot, not an error.
    ///
    /// # Cancel safety
    ///
    /// Implementations must be cancel-safe. [`StaticResolver`] answers
    /// without waiting. [`RedisResolver`]: dropping the future only stops
    /// this caller waiting. The read it started or joined runs in a task of
    /// its own: it goes on for the other callers and fills the cache, each
    /// Redis call in it bounded by the command timeout as always. The
    /// service is then cached like any other: dropped after the idle
    /// expiry, or soon after the negative TTL if it had no instance. One
    /// exception, so that callers who gave up leave no backlog: a read
    /// still queued for its turn (Redis slow) when its last caller gives
    /// up is dropped unsent if it would be the service's first read, or
    /// the service has left the cache; the next caller starts a new one.
    fn resolve(
        &self,
        service: &ServiceName,
    ) -> impl Future<Output = Result<Snapshot, ResolveError>> + Send;

    /// The hot path: the cached snapshot of `service`, synchronously, with
    /// no I/O, no lock and no allocation (one `Arc` clone). `None` means
    /// not cached, or cached but older than the configured maximum
    /// staleness: call [`resolve`](Self::resolve), which reads again or
    /// says why it cannot ([`ResolveError::Stale`]).
    ///
    /// The discovery layer skips this call while it can tell the answer
    /// would not change: once `cached` returned a snapshot that a
    /// [`RedisResolver`]'s cache made, that snapshot knows when its cache
    /// replaces or drops it, or it grows too stale, and until then the
    /// layer reuses it. A wrapper that returns those snapshots unchanged
    /// is so asked only when the answer may have changed; one that makes
    /// snapshots of its own (with [`Snapshot::new`]) is asked every time.
    fn cached(&self, service: &str) -> Option<Snapshot> {
        let _ = service;
        None
    }
}

impl<R: Resolve> Resolve for Arc<R> {
    fn resolve(
        &self,
        service: &ServiceName,
    ) -> impl Future<Output = Result<Snapshot, ResolveError>> + Send {
        (**self).resolve(service)
    }

    fn cached(&self, service: &str) -> Option<Snapshot> {
        (**self).cached(service)
    }
}
