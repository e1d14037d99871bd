//! One read of a service from Redis, decoded (for the cache and for the
//! uncached reads), and the uncached reads themselves: `fetch`, `list`,
//! `services`.

use std::time::Duration;

use tokio::time::Instant;

use super::ResolverEngine;
use crate::connection::{self, CallError};
use crate::error::{RedisFailure, ResolveError};
use crate::instance::{Instance, ServiceName};
use crate::metrics::{redis_error, RedisOperation};
use crate::registry::Override;
use crate::resolver::cache::CacheEntry;
use crate::resolver::skipped::{self, SkippedEntries};
use crate::resolver::snapshot::{Listed, Snapshot};
use crate::schema::{RawEntry, ReadReply};

impl ResolverEngine {
    /// One uncached read, decoded.
    pub(in crate::resolver) async fn fetch(
        &self,
        service: &ServiceName,
    ) -> Result<Snapshot, ResolveError> {
        let read_at = Instant::now();
        let raw = self.read(service).await?.entries;
        let instances: Vec<Instance> = self
            .decode_uncached(service, raw)
            .filter(|d| !d.disabled)
            .map(|d| d.instance)
            .collect();
        Ok(Snapshot::read_at_instant(
            service.clone(),
            instances,
            read_at,
        ))
    }

    /// One uncached read: the live instances with the time left on each
    /// lease, sorted by address.
    pub(in crate::resolver) async fn list(
        &self,
        service: &ServiceName,
    ) -> Result<Vec<Listed>, ResolveError> {
        let raw = self.read(service).await?.entries;
        let mut listed: Vec<Listed> = self
            .decode_uncached(service, raw)
            .filter(|d| !d.disabled)
            .map(|d| Listed {
                instance: d.instance,
                lease_left: d.lease_left,
                registered_weight: d.registered_weight,
            })
            .collect();
        listed.sort_by(|a, b| a.instance.addr().cmp(b.instance.addr()));
        Ok(listed)
    }

    /// The names of the services known to the registry, sorted.
    pub(in crate::resolver) async fn services(&self) -> Result<Vec<String>, ResolveError> {
        let mut conn = self.conn()?;
        let call = self.keyspace.services(&mut conn);
        let listed = connection::timed(self.call_limit, "(service list)", call).await;
        if listed.is_err() {
            redis_error(RedisOperation::Read);
        }
        Ok(listed?)
    }

    /// One read of a service. A read that fails on a broken connection
    /// is tried once more at once: that try waits for the reconnect the
    /// failure started (the first read after Redis comes back would fail
    /// otherwise). Both tries share one call limit, so a caller's wait
    /// bound holds.
    pub(super) async fn read(&self, service: &ServiceName) -> Result<ReadReply, ResolveError> {
        let mut conn = self.conn()?;
        let call = async {
            match self.keyspace.read(&mut conn, service).await {
                Err(error) if connection::broke(&error) => {
                    // Redis went away (a restart, a failover) even if the
                    // retry succeeds: without events (the Hertz schema)
                    // this is the only sign of it, and the recovery grace
                    // must follow.
                    self.recovery.lost();
                    tracing::debug!(%service, %error, "read failed on a broken connection; trying once more");
                    self.keyspace.read(&mut conn, service).await
                }
                result => result,
            }
        };
        let read = connection::timed(self.call_limit, service.as_str(), call).await;
        if read.is_err() {
            redis_error(RedisOperation::Read);
        }
        Ok(read?)
    }

    /// Decodes what an uncached read (`fetch`, `list`) found: skipped
    /// entries are warned about as a cached read would if the service is
    /// cached (once while they stay), else at this read.
    fn decode_uncached(
        &self,
        service: &ServiceName,
        raw: Vec<RawEntry>,
    ) -> impl Iterator<Item = Decoded> {
        let entry = self.cache.get(service.as_str());
        self.decode(service, raw, entry.as_deref().map(CacheEntry::skipped))
    }

    /// Decodes entries, skipping corrupt ones and those the address policy
    /// refuses: with one warning per entry while it stays if `warned` (the
    /// cache entry's memory) is given, else with a warning at this read.
    /// The operator's overrides are applied; disabled instances are
    /// returned marked, for the cache to hide.
    pub(super) fn decode(
        &self,
        service: &ServiceName,
        raw: Vec<RawEntry>,
        warned: Option<&SkippedEntries>,
    ) -> impl Iterator<Item = Decoded> {
        let mut skipped = Vec::new();
        let mut decoded = Vec::with_capacity(raw.len());
        for entry in raw {
            match self.keyspace.decode(&entry) {
                Ok(instance) => decoded.push(Decoded::new(instance, &entry)),
                Err(error) => skipped.push((entry.field, error)),
            }
        }
        match warned {
            Some(warned) => warned.observe(service, skipped),
            None => skipped::warn_all(service, skipped),
        }
        decoded.into_iter()
    }
}

/// One decoded entry, with the operator's override applied.
pub(super) struct Decoded {
    /// The instance as resolvers serve it (an overridden weight applied).
    pub(super) instance: Instance,
    /// Time left on its lease.
    pub(super) lease_left: Option<Duration>,
    /// The weight its owner registered, when an override replaced it.
    pub(super) registered_weight: Option<u32>,
    /// An override hides it.
    pub(super) disabled: bool,
}

impl Decoded {
    /// An override that this version cannot read is ignored: the
    /// instance is served as registered (the registry's listing warns
    /// about it).
    fn new(instance: Instance, entry: &RawEntry) -> Self {
        let overridden = entry
            .override_value
            .as_deref()
            .and_then(Override::from_json);
        let registered = instance.weight();
        let (instance, registered_weight, disabled) = match overridden {
            // An owner's own drain (weight 0: shutting down, not ready)
            // wins over an operator's weight, as the operator's drain wins
            // over the owner's weight: a drain from either side holds.
            Some(Override::Weight(weight)) if registered != 0 => {
                (instance.with_weight(weight), Some(registered), false)
            }
            Some(Override::Disabled) => (instance, None, true),
            Some(Override::Weight(_)) | None => (instance, None, false),
        };
        Decoded {
            instance,
            lease_left: entry.lease_left,
            registered_weight,
            disabled,
        }
    }
}

/// A resolver's timed call failed: a Redis error or timeout of reading
/// `label` (a service, or the service list).
impl From<CallError<&str>> for ResolveError {
    fn from(error: CallError<&str>) -> Self {
        match error {
            CallError::Redis { label, source } => ResolveError::Redis {
                service: label.to_owned(),
                source: RedisFailure::new(source),
            },
            CallError::TimedOut { label, limit } => ResolveError::Timeout {
                service: label.to_owned(),
                timeout: limit,
            },
        }
    }
}
