//! [`RegistryEvents`]: every change event the registry publishes, across
//! services (native schema), for consoles, audit logs and dashboards.
//!
//! * here: the public types and the subscription's start;
//! * [`wire`]: the events' payload (shared with the cache's refresh) and
//!   the `PSUBSCRIBE` pattern;
//! * [`task`]: the stream's connection and the task that serves it.

use std::fmt;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::engine::ResolverEngine;
use crate::error::{RedisFailure, ResolveError};
use crate::instance::ServiceName;
use crate::metrics::{redis_error, RedisOperation};

mod task;
pub(super) mod wire;

#[cfg(test)]
mod tests;

/// The most events queued for a reader: beyond, events are dropped and
/// the reader gets one [`RegistryEvent::Missed`] in their place.
const CAPACITY: usize = 1024;

/// What a registry change event says happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// An instance was registered: a new entry, or one its heartbeat
    /// re-created after Redis lost it (a restart, a `FLUSHALL`).
    Register,
    /// A registered instance changed its weight or tags.
    Update,
    /// An instance was deregistered.
    Deregister,
    /// An instance's lease ran out and a registry writer removed it.
    Expire,
    /// An operator set or cleared an [`Override`](crate::Override).
    Override,
}

impl ChangeKind {
    /// The event's name on the wire: `register`, `update`, `deregister`,
    /// `expire` or `override`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Register => "register",
            ChangeKind::Update => "update",
            ChangeKind::Deregister => "deregister",
            ChangeKind::Expire => "expire",
            ChangeKind::Override => "override",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change event, as published on a service's events channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryChange {
    /// The service.
    pub service: ServiceName,
    /// What happened.
    pub kind: ChangeKind,
    /// The instance's address, `host:port`.
    pub addr: String,
}

/// An item of [`RegistryEvents`].
///
/// Match it with a wildcard arm: more variants may come.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A change the registry published.
    Changed(RegistryChange),
    /// Events may have been lost here, between the items before and
    /// after it: re-read whatever you derived from them (e.g. with
    /// [`RedisResolver::list`](super::RedisResolver::list)). It comes
    ///
    /// * once the stream's connection is subscribed again after it was
    ///   lost (Redis restarted, a failover, a network cut): what was
    ///   published meanwhile is gone, as pub/sub delivers at most once;
    /// * when the reader fell behind by more than 1024 events: the newer
    ///   ones were dropped (the queue does not grow), and one `Missed`
    ///   comes after the queued ones, as soon as there is room.
    ///
    /// Several losses before the reader hears of them make one `Missed`.
    Missed,
}

/// Every change event of the registry, across services, as published:
/// see [`RedisResolver::events`](super::RedisResolver::events).
///
/// Holds at most 1024 events the reader has not taken; beyond, newer
/// events are dropped and one [`RegistryEvent::Missed`] takes their
/// place. Dropping it ends its task and closes its connection.
pub struct RegistryEvents {
    receiver: mpsc::Receiver<RegistryEvent>,
}

impl RegistryEvents {
    /// The next event, in the order Redis delivered them; `None` once the
    /// resolver is shut down or dropped (after the events already queued).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future loses no event, the next call
    /// gets it.
    pub async fn next(&mut self) -> Option<RegistryEvent> {
        self.receiver.recv().await
    }
}

impl fmt::Debug for RegistryEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryEvents")
            .field("queued", &self.receiver.len())
            .finish_non_exhaustive()
    }
}

/// Opens the stream's connection, subscribes, then starts its task.
pub(super) async fn subscribe(
    engine: &Arc<ResolverEngine>,
) -> Result<RegistryEvents, ResolveError> {
    let Some(pattern) = wire::pattern(engine.keyspace()) else {
        return Err(ResolveError::EventsUnsupported);
    };
    if engine.is_closed() {
        return Err(ResolveError::Shutdown);
    }
    let first = task::connect(engine, &pattern).await.map_err(|error| {
        redis_error(RedisOperation::Subscribe);
        ResolveError::Connect {
            url: engine.url().to_owned(),
            source: RedisFailure::new(error),
        }
    })?;
    let (sender, receiver) = mpsc::channel(CAPACITY);
    engine.track(tokio::spawn(task::run(
        engine.clone(),
        pattern,
        sender,
        first,
    )));
    Ok(RegistryEvents { receiver })
}
