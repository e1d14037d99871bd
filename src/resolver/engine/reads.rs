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
        let instances: Vec<Instance> = self.decode_uncached(service, raw).map(|(i, _)| i).collect();
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
            .map(|(instance, lease_left)| Listed {
                instance,
                lease_left,
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
    ) -> impl Iterator<Item = (Instance, Option<Duration>)> {
        let entry = self.cache.get(service.as_str());
        self.decode(service, raw, entry.as_deref().map(CacheEntry::skipped))
    }

    /// Decodes entries, skipping corrupt ones and those the address policy
    /// refuses: with one warning per entry while it stays if `warned` (the
    /// cache entry's memory) is given, else with a warning at this read.
    pub(super) fn decode(
        &self,
        service: &ServiceName,
        raw: Vec<RawEntry>,
        warned: Option<&SkippedEntries>,
    ) -> impl Iterator<Item = (Instance, Option<Duration>)> {
        let mut skipped = Vec::new();
        let mut decoded = Vec::with_capacity(raw.len());
        for entry in raw {
            match self.keyspace.decode(&entry) {
                Ok(instance) => decoded.push((instance, entry.lease_left)),
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
