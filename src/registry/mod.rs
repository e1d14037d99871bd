//! The server side: register instances, keep them alive, deregister them.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_discovery::{Instance, RedisRegistry};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = RedisRegistry::builder("redis://127.0.0.1:6379")
//!     .lease_ttl(Duration::from_secs(15))
//!     .heartbeat_interval(Duration::from_secs(5))
//!     .connect()
//!     .await?;
//!
//! // Written to Redis now, renewed every 5 s by a background heartbeat.
//! let registration = registry
//!     .register("orders", Instance::new("10.0.0.7:8080")?.with_weight(20))
//!     .await?;
//!
//! // ... serve ...
//!
//! registration.deregister().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Leases and heartbeats
//!
//! In the native schema every instance has its own lease: an instance whose
//! process dies is gone from the service after its lease TTL, whatever its
//! siblings do.
//!
//! A registry runs one heartbeat task, however many instances it
//! registers. Every heartbeat interval (at least 10 ms) it renews every
//! current lease: one idempotent upsert script call per service (at most
//! 1 000 instances per call), the calls sent together on the registry's
//! one connection (at most 256 in flight). The whole round has one
//! deadline, one call limit after it starts (the command timeout; on a
//! Cluster or behind Sentinel also the reconnects a call may make): a
//! call not answered by then fails and is retried like any other failure.
//! Beside the calls, best-effort writes of the services index (one `SADD`
//! per 1 000 service names; none in the Hertz schema) get 100 ms past the
//! round's last answer. Tasks and round trips stay flat as registrations
//! grow (measured in `BENCHMARKS.md`).
//!
//! Heartbeat errors never end the heartbeat. The services whose renewal
//! failed are retried until they succeed. After each failed try on a
//! broken connection, one try follows at once (it waits for the reconnect
//! the failure started); otherwise, and after that immediate try if it
//! fails too, the next try waits a backoff: it starts at 100 ms (or the
//! cap, if smaller) and doubles up to the cap, a quarter of the interval
//! within 10 ms to 1 s. Each backoff delay is spread by +-25 %, so a fleet
//! does not retry in lockstep. So an instance lost to a Redis restart,
//! `FLUSHALL` or failover is back one retry after Redis answers again
//! (tested: with heartbeat 1 s, every entry back within heartbeat +
//! 500 ms after a restarted, empty Redis accepts connections), or at the
//! next heartbeat after a `FLUSHALL`.
//!
//! Logs are per registry, not per registration: one `warn` when heartbeats
//! start failing (how many services, the error, the retry delay), repeats
//! at `debug`, one `info` when they succeed again (how long they failed,
//! how many instances that round wrote); entries that Redis had lost and a
//! heartbeat re-created are reported in one `info` summary per outage
//! (count and a few examples), or, without an outage (`FLUSHALL`), one
//! until a round re-creates nothing.
//!
//! The heartbeat task runs on the runtime the registry was connected on.
//! It ends on [`RedisRegistry::shutdown`] (even while [`Registration`]s
//! are still held), and when the registry and all its registrations are
//! dropped: at once between rounds, else once the round in flight is done
//! (within one call limit plus 100 ms).
//!
//! # Ending a registration
//!
//! * [`Registration::deregister`] stops renewing the instance, removes it
//!   and publishes a `deregister` event.
//! * Dropping a [`Registration`] stops renewing it and deregisters in a
//!   task on the runtime it was registered on. If that
//!   runtime is gone (for example the process is exiting), nothing is
//!   removed: the instance disappears when its lease runs out.
//! * [`RedisRegistry::shutdown`] deregisters everything the registry
//!   registered and refuses new registrations.
//!
//! Registering an address that this registry already registered for the
//! same service updates it (weight, tags) and publishes an `update`; the
//! new [`Registration`] takes over the lease and the older
//! handle is detached: dropping or deregistering it changes nothing, and
//! its [`update`](Registration::update) fails with
//! [`RegistryError::Detached`].
//!
//! Registering, deregistering and shutting down are serialised per
//! registry, so a dropped handle's background deregister never races a new
//! registration of the same address. A heartbeat round never races an
//! update or a deregistration: an update is never overwritten by the older
//! value, and once a deregistration has removed an instance no heartbeat
//! writes it again (a round in flight is waited for before the removal).
//!
//! [`RedisRegistry::set_override`] drains, reweights or hides any instance
//! ([`Override`], native schema) until [`RedisRegistry::clear_override`],
//! whatever its owner's heartbeats write.
//!
//! # Cancel safety
//!
//! Every async method may be dropped before it returns (a `timeout`, a
//! `select!`) without leaving a registration half-ended:
//!
//! * [`Registration::deregister`], [`Registration::update`],
//!   [`RedisRegistry::deregister`] and [`RedisRegistry::shutdown`] run in a
//!   task of their own, which the returned future only waits for. Once
//!   polled, the operation runs to its end in the background: dropping
//!   the future only drops its result. Each of its Redis calls is bounded
//!   by the call limit (the command timeout; on a Cluster or behind
//!   Sentinel also the reconnects a call may make on the way). An update
//!   or deregistration first waits for the heartbeat round in flight,
//!   which has one deadline for all its calls, one call limit after it
//!   started: so it returns within two call limits (an update 100 ms more,
//!   for the services index), however many services the round renews.
//!   A shutdown waits for that round too, then removes every instance,
//!   256 removals in flight at once, each bounded by the call limit.
//! * [`RedisRegistry::register`] dropped before it returns registers
//!   nothing that lasts: the heartbeat never renews it, and an entry that already
//!   reached Redis disappears when its lease runs out. A registration of
//!   the same address that it would have replaced carries on unchanged.
//! * [`RegistryBuilder::connect`] dropped before it returns leaves nothing
//!   behind.

mod builder;
mod ending;
mod heartbeat;
mod lease;
mod overrides;
mod registration;
mod renewal;

pub use builder::RegistryBuilder;
pub use overrides::Override;
pub use registration::Registration;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::connection::{timed, CallError, CallLimit, Connection, Timeouts};
use crate::error::{RedisFailure, RegistryError};
use crate::instance::{Instance, ServiceName};
use crate::metrics::{redis_error, RedisOperation};
use crate::schema::{KeySchema, Keyspace};

use lease::Lease;
use tokio_util::sync::CancellationToken;

/// Registers instances in Redis and keeps them alive. Cheap to clone; all
/// clones share one connection.
///
/// Built with [`RedisRegistry::builder`]; see the [module docs](self).
#[derive(Clone)]
pub struct RedisRegistry {
    state: Arc<RegistryState>,
}

/// What every clone of a [`RedisRegistry`] and every [`Registration`]
/// shares: the connection, the options, the leases and the locks that
/// order the operations on them.
struct RegistryState {
    conn: Connection,
    /// The Redis URL without its password.
    url: String,
    keyspace: Keyspace,
    ttl: Duration,
    heartbeat: Duration,
    timeouts: Timeouts,
    /// The current owner of each registered (service, address).
    leases: Mutex<HashMap<(ServiceName, String), Arc<Lease>>>,
    closed: AtomicBool,
    /// Serialises register, deregister, retire and shutdown, so a drop's
    /// background deregister never races a new registration of the same
    /// address, nor a registration a shutdown.
    ops: tokio::sync::Mutex<()>,
    /// Held by a heartbeat round while it writes, by `update` and
    /// `take_over`, and waited for by a stop: a round never writes an older
    /// value over an update, nor an ended lease after its stop returned.
    /// Lock order: `ops`, then `writes`.
    writes: tokio::sync::Mutex<()>,
    /// Whether the last services index write failed: its warning is
    /// logged once per failing streak.
    index_failing: AtomicBool,
    /// Ends the heartbeat task: cancelled on shutdown and when the last
    /// handle on the registry goes.
    heartbeat_stop: CancellationToken,
    /// Tells the handles of one lease apart: the newest owns it.
    next_ticket: AtomicU64,
    /// The runtime the registry was connected on: runs the operations
    /// that must not be cut in half when the caller is not on a runtime.
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("url", &self.state.url)
            .field("schema", &self.state.keyspace.schema())
            .field("prefix", &self.state.keyspace.prefix())
            .field("lease_ttl", &self.state.ttl)
            .field("heartbeat_interval", &self.state.heartbeat)
            .field("registrations", &self.state.lock().len())
            .finish()
    }
}

impl RedisRegistry {
    /// Starts configuring a registry for the Redis at `url` (any of the
    /// [crate's URLs](crate#redis-urls), Sentinel and Cluster included).
    pub fn builder(url: impl Into<String>) -> RegistryBuilder {
        RegistryBuilder::new(url.into())
    }

    /// Connects with the default options. Dropping the future before it
    /// returns leaves nothing behind.
    pub async fn connect(url: impl Into<String>) -> Result<Self, RegistryError> {
        Self::builder(url).connect().await
    }

    /// Registers `instance` under `service`; the registry's heartbeat renews
    /// it from then on.
    ///
    /// Returns once Redis has the entry. Fails without writing anything if
    /// the name or the instance is invalid, and with a timeout error if
    /// Redis does not answer within the command timeout.
    ///
    /// Dropping the future before it returns registers nothing that lasts:
    /// the heartbeat never renews it, and an entry that already reached Redis
    /// disappears when its lease runs out. If this registry had already
    /// registered the address, that registration carries on unchanged (its
    /// heartbeat writes its own value back).
    pub async fn register<S>(
        &self,
        service: S,
        instance: Instance,
    ) -> Result<Registration, RegistryError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<RegistryError>,
    {
        let service: ServiceName = service.try_into().map_err(Into::into)?;
        let json: Arc<str> = self.state.keyspace.encode(&service, &instance)?.into();
        let _ops = self.state.ops.lock().await;
        if self.state.closed.load(Ordering::Acquire) {
            return Err(RegistryError::Shutdown);
        }
        let ticket = self.state.next_ticket.fetch_add(1, Ordering::Relaxed);
        let key = (service.clone(), instance.addr().to_owned());
        let existing = self.state.lock().get(&key).cloned();
        if let Some(lease) = existing {
            // The same address again: update it in place and take it over.
            // Its heartbeat carries on; the older handle is detached.
            lease.take_over(&self.state, instance, json, ticket).await?;
            tracing::debug!(%service, addr = lease.addr(), "registration updated");
            return Ok(Registration::new(self.state.clone(), lease, ticket));
        }
        let upserted = self.state.upsert(&service, instance.addr(), &json).await?;
        tracing::debug!(%service, addr = instance.addr(), ?upserted, "registered");
        let lease = Arc::new(Lease::new(service, instance, json, ticket));
        // From here on the registry's heartbeat renews it.
        self.state.lock().insert(key, lease.clone());
        Ok(Registration::new(self.state.clone(), lease, ticket))
    }

    /// Removes an instance by address, whoever registered it (the CLI's
    /// `deregister`). Returns whether it was registered. A heartbeat of this
    /// registry for that address is stopped first. An entry the address
    /// policy refuses (e.g. a link-local address written by hand) can be
    /// removed too.
    ///
    /// Dropping the future does not stop the removal once it is polled: it
    /// runs to its end in the background (see [cancel
    /// safety](self#cancel-safety)).
    pub async fn deregister<S>(&self, service: S, addr: &str) -> Result<bool, RegistryError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<RegistryError>,
    {
        let service: ServiceName = service.try_into().map_err(Into::into)?;
        // Only the form: an entry the address policy refuses (written by
        // someone else) must be removable.
        crate::instance::check_addr_form(addr)?;
        let addr = addr.to_owned();
        let state = self.state.clone();
        run_to_completion(&self.state.runtime, async move {
            let _ops = state.ops.lock().await;
            let lease = state.lock().remove(&(service.clone(), addr.clone()));
            if let Some(lease) = lease {
                state.stop(&lease).await;
            }
            state.remove(&service, &addr).await
        })
        .await
    }

    /// Deregisters every instance this registry registered and refuses new
    /// registrations. Tries all of them; returns the first error.
    ///
    /// Dropping the future does not stop the shutdown once it is polled: it
    /// runs to its end in the background (see [cancel
    /// safety](self#cancel-safety)).
    pub async fn shutdown(&self) -> Result<(), RegistryError> {
        let state = self.state.clone();
        run_to_completion(&self.state.runtime, async move { state.shut_down().await }).await
    }

    /// The key schema in use.
    pub fn schema(&self) -> KeySchema {
        self.state.keyspace.schema()
    }

    /// The lease TTL of every registration.
    pub fn lease_ttl(&self) -> Duration {
        self.state.ttl
    }

    /// The heartbeat interval of every registration.
    pub fn heartbeat_interval(&self) -> Duration {
        self.state.heartbeat
    }
}

impl Drop for RegistryState {
    fn drop(&mut self) {
        // The last handle is gone: the heartbeat ends now, not at its next
        // tick.
        self.heartbeat_stop.cancel();
    }
}

/// Runs `op` in a task of its own and waits for it. Dropping the wait
/// leaves `op` running to its end (every Redis call in it, and the
/// heartbeat round it may wait for, is bounded by the call limit), so an
/// operation is never cut in half. The task runs
/// on the caller's runtime, or on `fallback` when the caller is not on one.
async fn run_to_completion<T: Send + 'static>(
    fallback: &tokio::runtime::Handle,
    op: impl Future<Output = Result<T, RegistryError>> + Send + 'static,
) -> Result<T, RegistryError> {
    current_runtime_or(fallback)
        .spawn(op)
        .await
        .unwrap_or(Err(RegistryError::Interrupted))
}

/// The caller's runtime, or `fallback` when the caller is not on one (a
/// future polled by another executor).
fn current_runtime_or(fallback: &tokio::runtime::Handle) -> tokio::runtime::Handle {
    tokio::runtime::Handle::try_current().unwrap_or_else(|_| fallback.clone())
}

impl RegistryState {
    /// The caller's runtime, or the registry's when the caller is not on one.
    fn current_runtime(&self) -> tokio::runtime::Handle {
        current_runtime_or(&self.runtime)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(ServiceName, String), Arc<Lease>>> {
        // The map holds no invariant a panic could break: keep going.
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn remove(
        &self,
        service: &ServiceName,
        addr: &str,
    ) -> Result<bool, RegistryError> {
        let mut conn = self.conn.clone();
        let call = self.keyspace.remove(&mut conn, service, addr);
        let removed = timed(self.call_deadline(), (), call)
            .await
            .inspect_err(|_| redis_error(RedisOperation::Deregister))?;
        tracing::debug!(%service, addr, removed, "deregistered");
        Ok(removed)
    }

    /// One call limit from now, as one deadline: of a call, or of a whole
    /// heartbeat round.
    fn call_deadline(&self) -> CallLimit {
        CallLimit::deadline_in(self.timeouts.call_limit(&self.conn))
    }
}

/// A timed-out call reports the call limit; the registry's errors name no
/// call.
impl<L> From<CallError<L>> for RegistryError {
    fn from(error: CallError<L>) -> Self {
        match error {
            CallError::Redis { source, .. } => RegistryError::Redis {
                source: RedisFailure::new(source),
            },
            CallError::TimedOut { limit, .. } => RegistryError::Timeout { timeout: limit },
        }
    }
}
