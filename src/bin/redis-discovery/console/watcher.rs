//! The background tasks that keep the model current: the registry's
//! change events (each one re-reads its service at once) and a periodic
//! re-read of every service (lease expiries, and changes no event
//! announced). Both end when the console stops.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_discovery::resolver::{RegistryEvent, RegistryEvents};
use redis_discovery::{KeySchema, ServiceName};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::model::{Changed, ServiceRead, MAX_SERVICES};
use super::state::{now_ms, Console};
use crate::Error;

/// The pause before subscribing to the events again after a failure.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Services an event named, to re-read before the next periodic refresh.
#[derive(Debug, Default)]
struct Dirty {
    services: BTreeSet<ServiceName>,
    /// Re-read everything (events were missed, or too many named).
    all: bool,
}

#[derive(Debug, Default)]
pub(super) struct Pending {
    dirty: Mutex<Dirty>,
    wake: Notify,
}

impl Pending {
    /// Re-reads `service` (all services for `None`) soon.
    pub(super) fn mark(&self, service: Option<ServiceName>) {
        {
            let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            match service {
                // Bounded: past the cap, one full re-read stands for all.
                Some(service) if dirty.services.len() < MAX_SERVICES => {
                    dirty.services.insert(service);
                }
                _ => {
                    dirty.all = true;
                    dirty.services.clear();
                }
            }
        }
        self.wake.notify_one();
    }

    fn take(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Starts the tasks; they end when `console.stop` is cancelled.
pub(super) fn spawn(console: Arc<Console>, refresh: Duration) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(refresh_loop(console.clone(), refresh))];
    if !matches!(console.schema, KeySchema::Hertz) {
        tasks.push(tokio::spawn(events_loop(console)));
    }
    tasks
}

/// Re-reads every service at start and each `refresh`, and the services
/// events named as soon as they come.
async fn refresh_loop(console: Arc<Console>, refresh: Duration) {
    let pending = &console.pending;
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut told_cap = false;
    loop {
        let all = tokio::select! {
            _ = console.stop.cancelled() => return,
            _ = tick.tick() => true,
            _ = pending.wake.notified() => false,
        };
        let dirty = pending.take();
        let read = if all || dirty.all {
            read_all(&console, &mut told_cap).await
        } else {
            read_some(&console, dirty.services).await
        };
        match read {
            Ok(()) => {
                if console.set_reachable(true) {
                    tracing::info!("Redis answers again");
                }
            }
            Err(error) => {
                if console.set_reachable(false) {
                    tracing::warn!(%error, "reading the registry failed; showing what was last read");
                }
            }
        }
    }
}

/// Lists the services and re-reads each; forgets those no longer listed.
async fn read_all(console: &Console, told_cap: &mut bool) -> Result<(), Error> {
    let names = console.resolver.services().await?;
    let mut listed: Vec<ServiceName> = names
        .iter()
        .filter_map(|name| ServiceName::new(name).ok())
        .collect();
    if listed.len() > MAX_SERVICES {
        if !*told_cap {
            *told_cap = true;
            tracing::warn!(
                services = listed.len(),
                shown = MAX_SERVICES,
                "the registry lists more services than the console shows"
            );
        }
        listed.truncate(MAX_SERVICES);
    }
    let keep: BTreeSet<&ServiceName> = listed.iter().collect();
    let gone: Vec<ServiceName> = console
        .model()
        .services()
        .keys()
        .filter(|name| !keep.contains(name))
        .cloned()
        .collect();
    for name in gone {
        if console.model().forget(&name) {
            let changed = Changed {
                summary: true,
                service: true,
                events: Vec::new(),
            };
            console.publish(&name, changed);
        }
    }
    read_some(console, listed).await?;
    console.model().prime();
    Ok(())
}

/// Re-reads these services.
async fn read_some(
    console: &Console,
    services: impl IntoIterator<Item = ServiceName>,
) -> Result<(), Error> {
    for service in services {
        let read = read(console, &service).await?;
        let changed = console.model().apply(&service, read, now_ms());
        console.publish(&service, changed);
    }
    Ok(())
}

/// One service's instances and overrides.
async fn read(console: &Console, service: &ServiceName) -> Result<ServiceRead, Error> {
    let listed = console.resolver.list(service.clone()).await?;
    let overrides = match console.schema {
        KeySchema::Hertz => Vec::new(),
        _ => console.registry.overrides(service.clone()).await?,
    };
    let listed = listed.into_iter().map(Into::into).collect();
    Ok(ServiceRead::new(listed, overrides, now_ms()))
}

/// Feeds the registry's events into the feed, and their services into
/// the next re-read.
async fn events_loop(console: Arc<Console>) {
    let pending = &console.pending;
    loop {
        let subscribed = tokio::select! {
            _ = console.stop.cancelled() => return,
            subscribed = console.resolver.events() => subscribed,
        };
        match subscribed {
            Ok(events) => {
                // Events published before the subscription were missed.
                pending.mark(None);
                if !follow(&console, pending, events).await {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(%error, "subscribing to the registry's events failed; retrying");
            }
        }
        tokio::select! {
            _ = console.stop.cancelled() => return,
            _ = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
        }
    }
}

/// `false` once the console stops.
async fn follow(console: &Console, pending: &Pending, mut events: RegistryEvents) -> bool {
    loop {
        let event = tokio::select! {
            _ = console.stop.cancelled() => return false,
            event = events.next() => event,
        };
        match event {
            Some(RegistryEvent::Changed(change)) => {
                console.record_event(&change.service, change.kind.as_str(), &change.addr);
                pending.mark(Some(change.service));
            }
            Some(RegistryEvent::Missed) => pending.mark(None),
            // A kind this console does not know.
            Some(_) => {}
            // The stream ended: subscribe again.
            None => return true,
        }
    }
}
