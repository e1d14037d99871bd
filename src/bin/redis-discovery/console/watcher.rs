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
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reader = Reader {
        console: &console,
        told_cap: false,
        failing: BTreeSet::new(),
        summaries_changed: false,
    };
    loop {
        let all = tokio::select! {
            _ = console.stop.cancelled() => return,
            _ = tick.tick() => true,
            _ = console.pending.wake.notified() => false,
        };
        let dirty = console.pending.take();
        if !all && !dirty.all && dirty.services.is_empty() {
            continue; // a wake-up whose services the last pass read
        }
        // A pass over many services on a slow Redis must not hold up
        // the exit: the reads are cancel-safe.
        let read = tokio::select! {
            _ = console.stop.cancelled() => return,
            read = async {
                if all || dirty.all {
                    reader.read_all().await
                } else {
                    reader.read_some(dirty.services, false).await
                }
            } => read,
        };
        // One `services` message per pass, whatever it changed.
        if std::mem::take(&mut reader.summaries_changed) {
            console.publish_services();
        }
        match read {
            Ok(()) => {
                if console.set_reachable(true) {
                    tracing::info!("the registry answers again");
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

/// The reads of the refresh loop, and what it has warned of.
struct Reader<'a> {
    console: &'a Console,
    told_cap: bool,
    /// Services whose read failed, warned of once until one succeeds.
    failing: BTreeSet<ServiceName>,
    /// Whether this pass changed a row of the services' summaries.
    summaries_changed: bool,
}

impl Reader<'_> {
    /// Lists the services and re-reads each; forgets those no longer
    /// listed. Fails if the listing fails.
    async fn read_all(&mut self) -> Result<(), Error> {
        let console = self.console;
        let names = console.resolver.services().await?;
        let mut listed: Vec<ServiceName> = names
            .iter()
            .filter_map(|name| ServiceName::new(name).ok())
            .collect();
        if listed.len() > MAX_SERVICES {
            if !self.told_cap {
                self.told_cap = true;
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
                self.summaries_changed = true;
                console.publish(&name, Changed::gone());
            }
        }
        self.read_some(listed, true).await?;
        console.model().prime();
        Ok(())
    }

    /// Re-reads these services: `listed` by the registry's listing (shown
    /// even with no instance), or named by events (a new one is shown
    /// only with instances or overrides). A service whose read fails is
    /// skipped, with one warning until a read of it succeeds; fails only
    /// if every read failed.
    async fn read_some(
        &mut self,
        services: impl IntoIterator<Item = ServiceName>,
        listed: bool,
    ) -> Result<(), Error> {
        let console = self.console;
        let (mut read_any, mut last_error) = (false, None);
        for service in services {
            match read(console, &service).await {
                Ok(read) => {
                    read_any = true;
                    if self.failing.remove(&service) {
                        tracing::info!(%service, "reading the service works again");
                    }
                    let changed = console.model().apply(&service, read, listed, now_ms());
                    self.summaries_changed |= changed.summary;
                    console.publish(&service, changed);
                }
                Err(error) => {
                    if self.failing.len() < MAX_SERVICES && self.failing.insert(service.clone()) {
                        tracing::warn!(%service, %error, "reading the service failed; showing what was last read");
                    }
                    last_error = Some(error);
                }
            }
        }
        match last_error {
            Some(error) if !read_any => Err(error),
            _ => Ok(()),
        }
    }
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
    let mut told = false;
    loop {
        let subscribed = tokio::select! {
            _ = console.stop.cancelled() => return,
            subscribed = console.resolver.events() => subscribed,
        };
        match subscribed {
            Ok(events) => {
                told = false;
                // Events published before the subscription were missed.
                pending.mark(None);
                if !follow(&console, pending, events).await {
                    return;
                }
            }
            // Once: a Redis user without `+psubscribe` fails every time.
            Err(error) if !told => {
                told = true;
                tracing::warn!(%error, "subscribing to the registry's events failed; changes show at the next refresh until it works (retrying)");
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
                console.record_event(&change.service, change.kind, &change.addr);
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
