//! What keeps cached services fresh besides callers: change events, the
//! refresh after the event connection reconnects, and the periodic refresh
//! and idle sweep ([`maintain`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::ResolverEngine;
use crate::resolver::cache::Event;
use crate::resolver::events::wire::EventMessage;
use crate::resolver::events::ChangeKind;
use crate::resolver::skipped;
use crate::time::after;

/// The most characters of a change event logged (anyone who may publish
/// on the channel chooses its size).
const MAX_LOGGED_EVENT_CHARS: usize = 512;

impl ResolverEngine {
    /// An event arrived on `channel`: refresh its service if cached.
    pub(in crate::resolver) fn on_event(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        let Some(service) = self.keyspace.service_of_channel(channel) else {
            return;
        };
        if tracing::enabled!(tracing::Level::TRACE) {
            // Four bytes per character at most.
            let head = &payload[..payload.len().min(4 * MAX_LOGGED_EVENT_CHARS)];
            let payload = String::from_utf8_lossy(head);
            let event = skipped::truncated(&payload, MAX_LOGGED_EVENT_CHARS);
            tracing::trace!(service, event, "change event");
        }
        if let Some(entry) = self.cache.get(service) {
            let message = EventMessage::parse(payload);
            let event = match message.as_ref().map(|m| (m.kind(), m.addr())) {
                Some((Some(ChangeKind::Register | ChangeKind::Update), addr)) => {
                    Event::Listed(addr)
                }
                Some((Some(ChangeKind::Deregister), addr)) => Event::Removed(addr),
                Some((Some(ChangeKind::Expire), addr)) => Event::Expired(addr),
                _ => Event::Other,
            };
            entry.on_event(event, self.recovery.grace_end(Instant::now()));
            if entry.mark_dirty() {
                self.spawn_read(entry);
            }
        }
    }

    /// Reads every cached service again, after the running reads (which
    /// may have missed events): on reconnect of the event connection.
    pub(in crate::resolver) fn refresh_all(self: &Arc<Self>) {
        for entry in self.cache.entries() {
            // A negative entry is not subscribed: it missed nothing.
            if entry.refreshable() && entry.mark_dirty() {
                self.spawn_read(entry);
            }
        }
    }

    /// The periodic refresh: reads every cached service that is not being
    /// read already. A running read stands for this one, so when Redis is
    /// slow the queue of reads drains instead of growing.
    fn refresh_periodic(self: &Arc<Self>) {
        for entry in self.cache.entries() {
            // A negative entry is read again when asked for after its
            // negative-cache time, or dropped by the sweep.
            if entry.refreshable() && entry.start_if_idle() {
                self.spawn_read(entry);
            }
        }
    }
}

/// Periodic refresh and idle sweep, until the resolver is dropped.
pub(super) async fn maintain(engine: Arc<ResolverEngine>) {
    let refresh_every = engine.refresh_interval;
    let mut refresh = tokio::time::interval_at(after(refresh_every), refresh_every);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let sweep_every = (engine.idle_expiry / 4)
        .min(engine.negative_ttl)
        .max(Duration::from_millis(10));
    let mut sweep = tokio::time::interval_at(after(sweep_every), sweep_every);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = engine.cancel.cancelled() => return,
            _ = refresh.tick() => {
                tracing::trace!(services = engine.cache.len(), "periodic refresh");
                engine.refresh_periodic();
            }
            _ = sweep.tick() => engine.sweep(),
        }
    }
}
