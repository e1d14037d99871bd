//! A read's result recorded on its entry ([`CacheEntry::complete`]): the new
//! list made by the merge rule, the snapshot that shares it, the outcome
//! sent to the waiting callers and the watchers.

use std::time::Duration;

use tokio::time::Instant;

use super::{lock, CacheEntry};
use crate::error::ResolveError;
use crate::resolver::cache::read_state::{Completed, Read};
use crate::resolver::snapshot::{CacheLink, Inner as SnapshotInner, Snapshot};

impl CacheEntry {
    /// Records the result of a read and wakes its waiters. A failure never
    /// replaces a good snapshot. A successful read makes the new list by
    /// the rule of [`ReadState::merge`](crate::resolver::cache::read_state::ReadState::merge): instances it
    /// misses are kept until their last known lease runs out (or a
    /// running recovery grace ends), unless an event removed them. An
    /// unchanged list keeps the current snapshot
    /// and only moves its `read_at`.
    ///
    /// The outcome is sent and `running` cleared in one critical section
    /// with [`join_or_start`](Self::join_or_start): a caller either joins before the
    /// outcome is sent (and is woken by it), or sees it, or finds no read
    /// running and starts one. It can never join a read that has already
    /// sent its outcome and then wait for nothing.
    ///
    /// `max_age` gives the maximum age of the new snapshot from whether its
    /// list is empty; `publish` copies a new snapshot into the map (under
    /// the entry's read state: see the lock order in the module docs).
    pub(in crate::resolver::cache) fn complete(
        &self,
        result: Result<Read, ResolveError>,
        max_age: impl FnOnce(&CacheEntry, bool) -> Option<Duration>,
        publish: impl FnOnce(&Snapshot),
    ) -> Completed {
        let entry = self;
        let mut state = lock(&entry.state); // also orders stores and watchers
        let mut recheck = None;
        let outcome = match result {
            Ok(read) => {
                let read_at = read.read_at;
                let now = Instant::now();
                let current = entry.snapshot.load_full();
                let previous = current.as_deref().map_or(&[][..], SnapshotInner::instances);
                let (list, keep_until) = state.merge(read, previous, now);
                if let Some(at) = keep_until {
                    // One pending re-read at a time, the earliest needed (a
                    // past one was lost: its task never ran).
                    if state.recheck.is_none_or(|r| r > at || r <= now) {
                        state.recheck = Some(at);
                        recheck = Some(at);
                    }
                }
                let max_age = max_age(entry, list.is_empty());
                let link = CacheLink::new(entry.used.clone(), max_age);
                let new = Snapshot::cached_at(entry.service.clone(), list, read_at, link);
                let same_list = current
                    .as_ref()
                    .is_some_and(|c| c.instances() == new.instances());
                let snapshot = match current {
                    Some(current) if same_list && current.max_age() == max_age => {
                        let current = Snapshot::from_arc(current);
                        current.confirm(new.read_at());
                        current
                    }
                    _ => {
                        // A new list; or the same list no longer negative
                        // (now subscribed or watched) or newly so: only
                        // the cache's copy changes.
                        entry.snapshot.store(Some(new.clone().into_arc()));
                        publish(&new);
                        if !same_list {
                            entry.notify_watchers(&new);
                        }
                        new
                    }
                };
                Ok(snapshot)
            }
            Err(e) => Err(e),
        };
        entry.outcome.send_replace(Some(outcome));
        state.wanted = false; // every waiting caller has its outcome
        let again = state.dirty;
        if again {
            state.dirty = false;
        } else {
            state.running = false;
        }
        Completed { again, recheck }
    }
}
