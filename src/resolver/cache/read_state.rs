//! An entry's read state: whether a read runs, the events seen, and the
//! rule that makes a read's list from the previous one ([`ReadState::merge`]);
//! with what a read brings ([`Read`]), what an event says ([`Event`]) and
//! what the read task is asked next ([`Completed`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Snapshot;
use crate::error::ResolveError;

use crate::instance::Instance;
use crate::time::later;

/// The longest address an instance can have: a 253-byte host name (or a
/// bracketed IPv6 address, shorter), a colon and a 5-digit port. An event
/// naming a longer one is about no instance.
pub(super) const MAX_ADDR_LEN: usize = 253 + 2 + 1 + 5;

/// How many more removals than listed instances an entry records (see
/// [`ReadState::removed`]) before it forgets them all and trusts its next
/// read alone.
pub(super) const EXTRA_REMOVALS: usize = 1024;

/// The result of one read, as seen by the callers waiting for it.
pub(crate) type Outcome = Option<Result<Snapshot, ResolveError>>;

/// What one successful read of a service found.
pub(crate) struct Read {
    /// The listed instances, each with the deadline of its lease (native
    /// schema; `None` where there is no per-instance lease).
    pub instances: Vec<(Instance, Option<Instant>)>,
    /// Instances that Redis lists but an operator's override disables:
    /// present, so not kept from the previous list as missed ones are.
    pub hidden: HashSet<Box<str>>,
    /// When the read started.
    pub read_at: Instant,
    /// The entry's [event generation](super::CacheEntry::begin_read) when the read
    /// started.
    pub generation: u64,
    /// Whether the service's keys exist (native schema; `None`: the schema
    /// cannot tell). Found gone after a read that found them, they start
    /// the service's recovery grace.
    pub keys_exist: Option<bool>,
    /// The end of the resolver's recovery grace, if one runs.
    pub grace_end: Option<Instant>,
    /// The length of a recovery grace (zero: none).
    pub grace: Duration,
}

/// What [`Cache::complete`](super::Cache::complete) asks of the read task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completed {
    /// The entry was marked dirty meanwhile: read it again.
    pub again: bool,
    /// The list keeps instances the read did not find: read again at this
    /// time, when the first of them is due to go (its last known lease, or
    /// the recovery grace, has run out).
    pub recheck: Option<Instant>,
}

/// A change event, as far as the cache cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// `register` or `update`: the instance is (back) in the registry.
    Listed(&'a str),
    /// `deregister`: the instance left the registry.
    Removed(&'a str),
    /// `expire`: its lease ran out. A removal, except during a recovery
    /// grace.
    Expired(&'a str),
    /// Anything else.
    Other,
}

#[derive(Default)]
pub(super) struct ReadState {
    pub running: bool,
    pub dirty: bool,
    /// A caller waits for the outcome of the running (or next) read: it
    /// must not queue behind background refreshes.
    pub wanted: bool,
    /// Confirmation that the events channel is subscribed; the first read
    /// waits for it so no change can slip between the read and the
    /// subscription.
    pub subscribed: Option<oneshot::Receiver<()>>,
    /// Events received so far (a read records it when it starts).
    pub generation: u64,
    /// Each instance of the current list, with the deadline of its last
    /// known lease (`None`: no per-instance lease, the Hertz schema). An
    /// instance of the list missing here was removed by an event.
    leases: HashMap<Box<str>, Option<Instant>>,
    /// Instances that an event removed, with the event's generation: a read
    /// that started before it still lists them and must not bring them
    /// back. Dropped once a read started after the event completed.
    /// Fed by anyone who may publish on the events channel, so capped: at
    /// most the listed instances plus [`EXTRA_REMOVALS`]; past that, it is
    /// cleared and `reset` set.
    removed: HashMap<Box<str>, u64>,
    /// `removed` was cleared by the removal of this generation: a read
    /// started before it may list instances removed since (the read that
    /// the event triggers follows it); the first read started at or after
    /// it is trusted alone, keeping no instance it misses.
    reset: Option<u64>,
    /// When a re-read is scheduled to drop kept instances.
    pub recheck: Option<Instant>,
    /// When a read first missed each instance that the list keeps without
    /// Redis listing it: a grace keeps it at most one grace from then, so
    /// graces that follow one another (a flapping connection, a slow
    /// service's timeouts) cannot keep a crashed instance listed for ever.
    missed: HashMap<Box<str>, Instant>,
    /// The latest read found the service's keys (native schema).
    keys_seen: bool,
    /// The end of the service's own recovery grace: started by a read that
    /// found the keys gone after one that found them, or missed an
    /// instance whose known lease still ran.
    grace_until: Option<Instant>,
}

impl ReadState {
    /// The list a read makes, given the `previous` list (the rule of the
    /// module docs of `resolver`): every instance the read lists, except
    /// those an event removed after the read started; plus every instance
    /// of the previous list that the read does not list, that no event
    /// removed and that no override [hides](Read::hidden), until the later of its last known lease and the end of a
    /// running recovery grace (the resolver's, [`Read::grace_end`], or the
    /// service's), but no longer than one grace after a read first missed
    /// it. Returns the list and the earliest such deadline among
    /// the kept instances (when to read again to drop them).
    pub(super) fn merge(
        &mut self,
        read: Read,
        previous: &[Instance],
        now: Instant,
    ) -> (Vec<Instance>, Option<Instant>) {
        let keys_exist = read.keys_exist;
        let mut leases = HashMap::with_capacity(read.instances.len());
        let mut list = Vec::with_capacity(read.instances.len());
        for (instance, deadline) in read.instances {
            let addr = instance.addr();
            if self.removed.get(addr).is_some_and(|&g| g > read.generation) {
                continue; // removed after the read started
            }
            leases.insert(Box::from(addr), deadline);
            list.push(instance);
        }
        let authoritative = self.reset.is_some_and(|g| read.generation >= g);
        if authoritative {
            self.reset = None;
        }
        let previous = if authoritative { &[][..] } else { previous };
        if let Some(exist) = keys_exist {
            // Keys gone after a read found them: lost by the registry
            // (FLUSHALL, restart, failover), or the last instance left
            // (its deregister event removes it at once all the same).
            // Or an instance missing whose lease has not run out and that
            // no event removed: Redis lost it, though a sibling is back
            // already (a FLUSHALL or failover seen only after the first
            // heartbeat re-created the keys).
            // The latter only outside the resolver's grace, which covers
            // it (an `expire` it ignores leaves a live lease missing).
            let keys_lost = !exist && self.keys_seen && !self.in_grace(None, now);
            let live_lost = !self.in_grace(read.grace_end, now)
                && self.misses_a_live_lease(previous, &leases, &read.hidden, now);
            if keys_lost || live_lost {
                self.start_grace(read.grace, now);
            }
            self.keys_seen = exist;
        }
        let grace_end = self.grace_end(read.grace_end, now);
        let mut recheck: Option<Instant> = None;
        let mut missed = HashMap::new();
        for instance in previous {
            let addr = instance.addr();
            let Some(&lease) = self.leases.get(addr) else {
                continue; // removed by an event
            };
            if leases.contains_key(addr)
                || self.removed.contains_key(addr)
                || read.hidden.contains(addr)
            {
                continue; // listed by this read, removed by an event, or disabled
            }
            let missed_since = self.missed.get(addr).copied().unwrap_or(now);
            let grace_end = grace_end.map(|end| end.min(later(missed_since, read.grace)));
            let keep_until = match (lease, grace_end) {
                (Some(lease), Some(grace)) => lease.max(grace),
                (lease, grace) => match lease.or(grace) {
                    Some(until) => until,
                    None => continue, // no lease and no grace
                },
            };
            if keep_until <= now {
                continue; // lease over, no grace
            }
            recheck = Some(recheck.map_or(keep_until, |r| r.min(keep_until)));
            leases.insert(Box::from(addr), lease);
            missed.insert(Box::from(addr), missed_since);
            list.push(instance.clone());
        }
        self.leases = leases;
        self.missed = missed;
        // A removal older than the read is reflected in it.
        self.removed.retain(|_, g| *g > read.generation);
        (list, recheck)
    }

    /// Records a change event about one instance. `resolver_grace` is the
    /// end of the resolver's recovery grace, if one runs: an `expire`
    /// during a grace is not taken as a removal (after a restart from an
    /// old snapshot, the first heartbeat's pruning announces live
    /// siblings whose leases ran out while Redis was away), so the
    /// instance is kept to the grace end like any instance a read misses.
    pub(super) fn on_event(
        &mut self,
        event: Event<'_>,
        resolver_grace: Option<Instant>,
        now: Instant,
    ) {
        self.generation += 1;
        match event {
            Event::Expired(_) if self.in_grace(resolver_grace, now) => {}
            Event::Removed(addr) | Event::Expired(addr) if addr.len() <= MAX_ADDR_LEN => {
                let generation = self.generation;
                self.leases.remove(addr);
                let cap = self.leases.len().saturating_add(EXTRA_REMOVALS);
                if self.removed.len() >= cap && !self.removed.contains_key(addr) {
                    self.removed.clear();
                    self.reset = Some(generation);
                }
                self.removed.insert(Box::from(addr), generation);
            }
            // Too long to be an instance's address: nothing to remove
            // (the read the event triggers still runs).
            Event::Removed(_) | Event::Expired(_) => {}
            Event::Listed(addr) => {
                self.removed.remove(addr);
            }
            Event::Other => {}
        }
    }

    /// Whether an instance of `previous` that the read did not list
    /// (`listed`) nor found disabled (`hidden`) has a known lease that has
    /// not run out at `now`, and no event removed it.
    fn misses_a_live_lease(
        &self,
        previous: &[Instance],
        listed: &HashMap<Box<str>, Option<Instant>>,
        hidden: &HashSet<Box<str>>,
        now: Instant,
    ) -> bool {
        previous.iter().any(|instance| {
            let addr = instance.addr();
            !listed.contains_key(addr)
                && !hidden.contains(addr)
                && !self.removed.contains_key(addr)
                && self
                    .leases
                    .get(addr)
                    .is_some_and(|lease| lease.is_some_and(|lease| lease > now))
        })
    }

    /// The later of the resolver's grace end and the service's, if either
    /// runs at `now`.
    fn grace_end(&self, resolver: Option<Instant>, now: Instant) -> Option<Instant> {
        let service = self.grace_until.filter(|&until| until > now);
        resolver.filter(|&until| until > now).max(service)
    }

    fn in_grace(&self, resolver: Option<Instant>, now: Instant) -> bool {
        self.grace_end(resolver, now).is_some()
    }

    fn start_grace(&mut self, grace: Duration, now: Instant) {
        if !grace.is_zero() {
            self.grace_until = Some(later(now, grace));
        }
    }

    #[cfg(test)]
    pub(crate) fn removals(&self) -> usize {
        self.removed.len()
    }
}
