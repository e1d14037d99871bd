//! One heartbeat round: every current lease renewed with one script call
//! per service, the calls sent together on the multiplexed connection.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::lease::Lease;
use super::RegistryState;
use crate::connection::{self, CallLimit};
use crate::error::RegistryError;
use crate::instance::ServiceName;
use crate::metrics::{heartbeats_failed, redis_error, RedisOperation};
use crate::schema::{KeySchema, Upserted, UPSERT_BATCH};

/// Script calls of one round in flight at once: enough to fill the
/// connection's pipeline, bounded so a huge registry does not queue
/// everything at once.
const MAX_IN_FLIGHT: usize = 256;

/// How long a write waits for the services index once its own scripts
/// have answered (both are sent together, so on one server all answers
/// arrive at once). The index only serves listing: on a cluster it lives
/// on another node, whose outage must neither fail nor slow registrations
/// and heartbeats elsewhere.
const INDEX_GRACE: Duration = Duration::from_millis(100);

/// Lost-and-re-created entries kept as examples for the log.
const EXAMPLES: usize = 5;

/// What one round did.
#[derive(Default)]
pub(super) struct Renewal {
    /// Instances written.
    pub written: usize,
    /// Instances whose entry Redis had lost: re-created.
    pub created: usize,
    /// A few of them, as (service, address).
    pub examples: Vec<(ServiceName, String)>,
    /// The services whose renewal failed (by [`group_key`]).
    pub failed: HashSet<String>,
    /// Instances in those failed calls.
    pub failed_instances: usize,
    /// The first error.
    pub error: Option<RegistryError>,
    /// Whether a failure was a broken connection: a try at once then waits
    /// for the reconnect it started.
    pub broke: bool,
}

/// A lease and the JSON a round writes for it.
type Entry = (Arc<Lease>, Arc<str>);

/// One script call of a round: up to [`UPSERT_BATCH`] instances of one
/// service.
struct Call {
    key: String,
    service: ServiceName,
    entries: Vec<Entry>,
}

/// How a round groups leases under `schema`: one script call per service
/// key. The native keys hold the lowercase name, so "Orders" and "orders"
/// are one call (two would each prune the other's entries as expired
/// siblings); the Hertz key is spelled with the name's case, so there the
/// spelling.
fn group_key(schema: KeySchema, service: &ServiceName) -> &str {
    match schema {
        KeySchema::Native => service.as_str(),
        KeySchema::Hertz => service.spelling(),
    }
}

impl RegistryState {
    /// Renews every current lease, or only those of the services in
    /// `only` (a retry). Holds the write lock while it writes, so an
    /// update never races it and a stopped lease is never written after
    /// its stop returned.
    ///
    /// The whole round has one deadline, one call limit after it took the
    /// lock: a call not answered by then (or not yet sent) fails like any
    /// other and is retried. So a round holds the lock at most one call
    /// limit, however many waves of calls it has, and the services index
    /// write gets [`INDEX_GRACE`] more, outside the lock.
    pub(super) async fn renew(&self, only: Option<&HashSet<String>>) -> Renewal {
        let writes = self.writes.lock().await;
        let deadline = self.call_deadline();
        let groups = self.due(only);
        if groups.is_empty() {
            return Renewal::default();
        }
        let mut names: Vec<String> = groups.values().map(|g| g.0.as_str().to_owned()).collect();
        names.sort_unstable();
        names.dedup();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        // Owned calls: a stream closure over borrowed items trips rustc's
        // higher-ranked `Send` check of the spawned heartbeat future.
        let calls: Vec<Call> = groups
            .into_iter()
            .flat_map(|(key, (service, entries))| {
                let chunks: Vec<Vec<Entry>> =
                    entries.chunks(UPSERT_BATCH).map(<[_]>::to_vec).collect();
                chunks.into_iter().map(move |entries| Call {
                    key: key.clone(),
                    service: service.clone(),
                    entries,
                })
            })
            .collect();
        let written = futures_util::stream::iter(calls)
            .map(|call: Call| async move {
                let entries: Vec<(&str, &str)> = call
                    .entries
                    .iter()
                    .map(|(l, json)| (l.addr(), &**json))
                    .collect();
                let result = self.write(&call.service, &entries, deadline).await;
                (call, result)
            })
            .buffer_unordered(MAX_IN_FLIGHT)
            .collect::<Vec<_>>();
        let results = self
            .with_index(&names, async move {
                let results = written.await;
                drop(writes);
                results
            })
            .await;
        let mut renewal = Renewal::default();
        for (call, result) in results {
            let (key, chunk) = (call.key, call.entries);
            match result {
                Ok(codes) => {
                    renewal.written += chunk.len();
                    let mut example = None;
                    for ((lease, _), code) in chunk.iter().zip(codes) {
                        if code == Upserted::Created {
                            renewal.created += 1;
                            example.get_or_insert(lease);
                        }
                    }
                    // One example per service, so a few tell where.
                    if let Some(lease) = example.filter(|_| renewal.examples.len() < EXAMPLES) {
                        let example = (lease.service().clone(), lease.addr().to_owned());
                        renewal.examples.push(example);
                    }
                }
                Err(error) => {
                    // One failed Redis call; every instance it renews
                    // failed its renewal.
                    redis_error(RedisOperation::Heartbeat);
                    let instances = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
                    heartbeats_failed(call.service.as_str(), instances);
                    renewal.failed.insert(key);
                    renewal.failed_instances += chunk.len();
                    renewal.broke |= matches!(&error, RegistryError::Redis { source } if source.is_connection_failure());
                    renewal.error.get_or_insert(error);
                }
            }
        }
        renewal
    }

    /// The leases to renew now, grouped by service, with the JSON to
    /// write (read under the write lock: the current value).
    fn due(&self, only: Option<&HashSet<String>>) -> HashMap<String, (ServiceName, Vec<Entry>)> {
        let mut groups: HashMap<String, (ServiceName, Vec<Entry>)> = HashMap::new();
        let schema = self.keyspace.schema();
        for lease in self.lock().values() {
            let key = group_key(schema, lease.service());
            if lease.ended() || only.is_some_and(|only| !only.contains(key)) {
                continue;
            }
            groups
                .entry(key.to_owned())
                .or_insert_with(|| (lease.service().clone(), Vec::new()))
                .1
                .push((lease.clone(), lease.json()));
        }
        groups
    }

    /// Writes one instance (register, update, take-over): the same script
    /// call as a round's, with one entry, and the index beside it.
    pub(super) async fn upsert(
        &self,
        service: &ServiceName,
        addr: &str,
        json: &str,
    ) -> Result<Upserted, RegistryError> {
        let deadline = self.call_deadline();
        let codes = self
            .with_index(
                &[service.as_str()],
                self.write(service, &[(addr, json)], deadline),
            )
            .await
            .inspect_err(|_| redis_error(RedisOperation::Register))?;
        // `write` checked that there is one code per entry.
        Ok(codes.first().copied().unwrap_or(Upserted::Renewed))
    }

    /// One upsert script call, answered by `deadline` or failed (past the
    /// deadline, without sending anything: see [`connection::timed`]).
    async fn write(
        &self,
        service: &ServiceName,
        entries: &[(&str, &str)],
        deadline: CallLimit,
    ) -> Result<Vec<Upserted>, RegistryError> {
        let mut conn = self.conn.clone();
        let call = self.keyspace.upsert(&mut conn, service, entries, self.ttl);
        Ok(connection::timed(deadline, (), call).await?)
    }

    /// Runs `writes` with the services index write for `names` beside it,
    /// which gets [`INDEX_GRACE`] past the end of `writes`; its failure is
    /// logged, never returned. Every write re-adds the names, which heals
    /// a concurrent remove of a service's last instance.
    async fn with_index<T>(&self, names: &[&str], writes: impl Future<Output = T>) -> T {
        let index = self.keyspace.index(&self.conn, names);
        tokio::pin!(index, writes);
        let mut indexed = None;
        let out = loop {
            tokio::select! {
                out = &mut writes => break out,
                result = &mut index, if indexed.is_none() => indexed = Some(result),
            }
        };
        let indexed = match indexed {
            Some(result) => result,
            None => connection::timed(INDEX_GRACE, "no answer in time", index)
                .await
                .map_err(redis::RedisError::from),
        };
        // Once per failing streak: while Redis is down every round fails
        // here too, and the heartbeat's own log says so.
        match indexed {
            Err(error) if !self.index_failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(services = names.len(), %error, "could not add services to the services index (listing may miss them until a later write)");
            }
            Err(error) => {
                tracing::debug!(services = names.len(), %error, "services index still failing");
            }
            Ok(()) => self.index_failing.store(false, Ordering::Relaxed),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_per_service_key() {
        let name = |n: &str| ServiceName::new(n).expect("a valid name");
        let (upper, lower) = (name("Orders"), name("orders"));
        // Native: one key for both spellings, so one call.
        assert_eq!(group_key(KeySchema::Native, &upper), "orders");
        assert_eq!(group_key(KeySchema::Native, &lower), "orders");
        // Hertz: a key per spelling, so a call per spelling.
        assert_eq!(group_key(KeySchema::Hertz, &upper), "Orders");
        assert_eq!(group_key(KeySchema::Hertz, &lower), "orders");
    }
}
