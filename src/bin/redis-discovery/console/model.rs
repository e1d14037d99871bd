//! What the console knows of the registry: each service's instances as
//! last read, and the feed of events, newest last. Pure data: the reads
//! that fill it are in [`super::watcher`].

use std::collections::{BTreeMap, VecDeque};

use std::time::Duration;

use redis_discovery::resolver::{ChangeKind, Listed};
use redis_discovery::{Instance, Override, ServiceName, Tags};
use serde::Serialize;

/// The most services shown; more are left out with a warning, so a
/// registry with a runaway number of names cannot grow the console.
pub(super) const MAX_SERVICES: usize = 1000;
/// The most events kept for the feed.
pub(super) const MAX_EVENTS: usize = 500;
/// For a service read for the first time: a registry event this recent
/// announced its instances.
const ANNOUNCED_WITHIN_MS: u64 = 30_000;
/// An event that came this long before the previous read may still have
/// been published after it (a read and a publish race).
const READ_RACE_MS: u64 = 1_000;
/// The registry events that announce an instance's arrival, its
/// departure, and a change of its weight or tags.
const ARRIVALS: &[ChangeKind] = &[
    ChangeKind::Register,
    ChangeKind::Update,
    ChangeKind::Override,
];
const DEPARTURES: &[ChangeKind] = &[
    ChangeKind::Deregister,
    ChangeKind::Expire,
    ChangeKind::Override,
];
const CHANGES: &[ChangeKind] = &[
    ChangeKind::Update,
    ChangeKind::Override,
    ChangeKind::Register,
];
/// Lease expiries that moved less than this are the same lease (reads at
/// different moments compute it a few milliseconds apart).
const LEASE_JITTER_MS: u64 = 1_000;

/// One instance as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct InstanceView {
    pub(super) addr: String,
    pub(super) weight: u32,
    pub(super) registered_weight: Option<u32>,
    #[serde(rename = "override")]
    pub(super) overridden: Option<OverrideView>,
    pub(super) tags: Tags,
    pub(super) lease_expires_ms: Option<u64>,
    pub(super) health: &'static str,
}

/// An operator's override, as JSON: `{"weight":N}` or `{"disabled":true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(super) enum OverrideView {
    Weight { weight: u32 },
    Disabled { disabled: bool },
}

impl OverrideView {
    /// `None` for a kind this console does not know.
    pub(super) fn of(value: Override) -> Option<Self> {
        match value {
            Override::Weight(weight) => Some(OverrideView::Weight { weight }),
            Override::Disabled => Some(OverrideView::Disabled { disabled: true }),
            _ => None,
        }
    }
}

/// An override whose address has no listed instance (disabled, or not
/// registered yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct PendingOverride {
    pub(super) addr: String,
    #[serde(rename = "override")]
    pub(super) overridden: OverrideView,
}

/// An instance as a read lists it (the library's `Listed`, which only it
/// builds).
#[derive(Debug, Clone)]
pub(super) struct ReadInstance {
    pub(super) instance: Instance,
    pub(super) lease_left: Option<Duration>,
    pub(super) registered_weight: Option<u32>,
}

impl From<Listed> for ReadInstance {
    fn from(l: Listed) -> Self {
        ReadInstance {
            instance: l.instance,
            lease_left: l.lease_left,
            registered_weight: l.registered_weight,
        }
    }
}

/// One read of a service: its listed instances and its overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ServiceRead {
    pub(super) instances: Vec<InstanceView>,
    pub(super) pending_overrides: Vec<PendingOverride>,
}

impl ServiceRead {
    /// Joins a read's listed instances with the service's overrides.
    pub(super) fn new(
        listed: Vec<ReadInstance>,
        overrides: Vec<(String, Override)>,
        now_ms: u64,
    ) -> Self {
        let mut overrides: BTreeMap<String, OverrideView> = overrides
            .into_iter()
            .filter_map(|(addr, value)| Some((addr, OverrideView::of(value)?)))
            .collect();
        let instances = listed
            .into_iter()
            .map(|l| {
                let addr = l.instance.addr().to_owned();
                InstanceView {
                    overridden: overrides.remove(&addr),
                    weight: l.instance.weight(),
                    registered_weight: l.registered_weight,
                    tags: l.instance.tags().clone(),
                    lease_expires_ms: l.lease_left.map(|left| {
                        now_ms.saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
                    }),
                    health: if l.instance.weight() == 0 {
                        "drained"
                    } else {
                        "live"
                    },
                    addr,
                }
            })
            .collect();
        let pending_overrides = overrides
            .into_iter()
            .map(|(addr, overridden)| PendingOverride { addr, overridden })
            .collect();
        ServiceRead {
            instances,
            pending_overrides,
        }
    }
}

/// A service as the console last read it.
#[derive(Debug, Clone, Default)]
pub(super) struct ServiceState {
    pub(super) read: ServiceRead,
    pub(super) last_change_ms: Option<u64>,
    /// When it was last read.
    read_ms: u64,
}

/// One entry of the events feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct EventView {
    pub(super) id: u64,
    pub(super) at_ms: u64,
    pub(super) service: String,
    #[serde(serialize_with = "kind_name")]
    pub(super) event: ChangeKind,
    pub(super) addr: String,
    pub(super) source: Source,
}

/// Who told of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Source {
    /// Published on the service's events channel.
    Registry,
    /// A change the console saw in a read, which no event announced.
    Console,
}

/// A kind by its name on the wire.
fn kind_name<S: serde::Serializer>(kind: &ChangeKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.as_str())
}

/// What a new read changed, for the live streams.
#[derive(Debug, Default)]
pub(super) struct Changed {
    /// The service's view changed (instances, overrides, leases).
    pub(super) service: bool,
    /// Its summary row changed (or it appeared or went).
    pub(super) summary: bool,
    /// Events the console added to the feed.
    pub(super) events: Vec<EventView>,
}

impl Changed {
    /// A service the registry no longer lists.
    pub(super) fn gone() -> Self {
        Changed {
            service: true,
            summary: true,
            events: Vec::new(),
        }
    }
}

/// The registry as the console knows it.
#[derive(Debug, Default)]
pub(super) struct Model {
    services: BTreeMap<ServiceName, ServiceState>,
    events: VecDeque<EventView>,
    next_id: u64,
    /// Set after the first read of every service: what that read finds
    /// was there before the console, not a change to announce.
    primed: bool,
}

impl Model {
    pub(super) fn services(&self) -> &BTreeMap<ServiceName, ServiceState> {
        &self.services
    }

    pub(super) fn service(&self, name: &ServiceName) -> Option<&ServiceState> {
        self.services.get(name)
    }

    /// The newest `limit` events, newest first.
    pub(super) fn events(&self, limit: usize) -> impl Iterator<Item = &EventView> {
        self.events.iter().rev().take(limit)
    }

    /// Adds an event to the feed (dropping the oldest past
    /// [`MAX_EVENTS`]) and returns it.
    pub(super) fn record(
        &mut self,
        service: &ServiceName,
        event: ChangeKind,
        addr: &str,
        source: Source,
        at_ms: u64,
    ) -> EventView {
        self.next_id = self.next_id.saturating_add(1);
        let view = EventView {
            id: self.next_id,
            at_ms,
            service: service.to_string(),
            event,
            addr: addr.to_owned(),
            source,
        };
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(view.clone());
        view
    }

    /// From now on, changes no event announced go to the feed.
    pub(super) fn prime(&mut self) {
        self.primed = true;
    }

    /// Whether a registry event of one of these kinds about this instance
    /// came since `since_ms`.
    fn announced(
        &self,
        service: &ServiceName,
        addr: &str,
        kinds: &[ChangeKind],
        since_ms: u64,
    ) -> bool {
        let service = service.as_str();
        self.events
            .iter()
            .rev()
            .take_while(|e| e.at_ms >= since_ms)
            .any(|e| {
                e.source == Source::Registry
                    && e.addr == addr
                    && e.service == service
                    && kinds.contains(&e.event)
            })
    }

    /// Stores a new read of `service` and says what changed. Changes no
    /// registry event announced since the previous read (an instance
    /// whose lease ran out with no one to announce it, a Hertz registry,
    /// a lost message) are added to the feed as the console's. A new
    /// service is left out when [`MAX_SERVICES`] are shown already, and
    /// when it is empty and not `listed` by the registry's listing.
    pub(super) fn apply(
        &mut self,
        service: &ServiceName,
        read: ServiceRead,
        listed: bool,
        now_ms: u64,
    ) -> Changed {
        let mut changed = Changed::default();
        let full = self.services.len() >= MAX_SERVICES;
        let (old, since_ms) = match self.services.get_mut(service) {
            Some(state) => (
                std::mem::take(&mut state.read),
                state.read_ms.saturating_sub(READ_RACE_MS),
            ),
            None if full => return changed,
            // Named by an event, with nothing in it: not shown (a name
            // anyone can publish must not take a place).
            None if !listed && read == ServiceRead::default() => return changed,
            None => {
                changed.summary = true;
                changed.service = true;
                (
                    ServiceRead::default(),
                    now_ms.saturating_sub(ANNOUNCED_WITHIN_MS),
                )
            }
        };
        let before: BTreeMap<&str, &InstanceView> =
            old.instances.iter().map(|i| (i.addr.as_str(), i)).collect();
        let after: BTreeMap<&str, &InstanceView> = read
            .instances
            .iter()
            .map(|i| (i.addr.as_str(), i))
            .collect();
        let mut unannounced = Vec::new();
        for (addr, now) in &after {
            match before.get(addr) {
                None => unannounced.push((ChangeKind::Register, ARRIVALS, *addr)),
                Some(was) if !same_instance(was, now) => {
                    unannounced.push((ChangeKind::Update, CHANGES, *addr))
                }
                Some(was) if !same_lease(was, now) => changed.service = true,
                Some(_) => {}
            }
        }
        for (addr, was) in before.iter().filter(|(a, _)| !after.contains_key(*a)) {
            // Gone with time left on its lease: removed, not expired.
            let event = match was.lease_expires_ms {
                Some(expiry) if expiry > now_ms.saturating_add(LEASE_JITTER_MS) => {
                    ChangeKind::Deregister
                }
                _ => ChangeKind::Expire,
            };
            unannounced.push((event, DEPARTURES, *addr));
        }
        if !unannounced.is_empty() || old.pending_overrides != read.pending_overrides {
            changed.service = true;
            changed.summary = true;
        }
        let unannounced: Vec<(ChangeKind, String)> = unannounced
            .into_iter()
            .filter(|_| self.primed)
            .filter(|(_, kinds, addr)| !self.announced(service, addr, kinds, since_ms))
            .map(|(event, _, addr)| (event, addr.to_owned()))
            .collect();
        for (event, addr) in unannounced {
            changed
                .events
                .push(self.record(service, event, &addr, Source::Console, now_ms));
        }
        let state = self.services.entry(service.clone()).or_default();
        if changed.summary {
            state.last_change_ms = Some(now_ms);
        }
        state.read = read;
        state.read_ms = now_ms;
        changed
    }

    /// Forgets a service the registry no longer lists. `true` if it was
    /// shown.
    pub(super) fn forget(&mut self, service: &ServiceName) -> bool {
        self.services.remove(service).is_some()
    }
}

/// The same instance apart from its lease.
fn same_instance(a: &InstanceView, b: &InstanceView) -> bool {
    a.weight == b.weight
        && a.registered_weight == b.registered_weight
        && a.overridden == b.overridden
        && a.tags == b.tags
}

fn same_lease(a: &InstanceView, b: &InstanceView) -> bool {
    match (a.lease_expires_ms, b.lease_expires_ms) {
        (Some(a), Some(b)) => a.abs_diff(b) < LEASE_JITTER_MS,
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests;
