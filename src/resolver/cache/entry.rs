//! One cached service ([`CacheEntry`]) and its read state machine: whether a
//! read runs or is wanted, the events seen, the outcome sent to waiting
//! callers, and the watchers of its snapshots. The rule that makes a
//! read's list from the previous one is in [`read_state`](super::read_state).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use super::read_state::{Event, Outcome, ReadState};
use crate::error::ResolveError;
use crate::instance::ServiceName;
use crate::metrics::{cache_metrics, Stopwatch};
use crate::resolver::skipped::SkippedEntries;
use crate::resolver::snapshot::{Inner as SnapshotInner, Snapshot, UseFlag};

mod completion;

/// The watchers of an entry's snapshots.
enum Watchers {
    /// In the map: the sender, once something watched.
    Open(Option<watch::Sender<Snapshot>>),
    /// Out of the map: a watch gets a receiver that is closed already.
    Closed,
}

/// One cached service.
pub(crate) struct CacheEntry {
    pub(super) service: ServiceName,
    pub(super) hash: u64,
    /// The events channel (native schema).
    channel: Option<String>,
    /// The current snapshot (also in the entry's slot, for hits).
    pub(super) snapshot: ArcSwapOption<SnapshotInner>,
    /// Set on every use; cleared by the idle sweep. Shared with the
    /// entry's snapshots, whose holders mark it ([`Snapshot::mark_used`]).
    /// Also holds the service's metric handles, made with the entry.
    used: UseFlag,
    /// Last sweep that saw the entry used, ms since the resolver started.
    last_used_ms: AtomicU64,
    /// Subscribed to its events channel (requested, at least): set once
    /// a read found instances, or by a watch.
    subscribed: AtomicBool,
    /// The latest read failed (to log a failure once, not at every retry).
    failing: AtomicBool,
    pub(super) state: Mutex<ReadState>,
    /// Wakes a read waiting for a refresh permit when a caller starts
    /// waiting for it (it then takes a caller permit instead).
    wanted_notify: Notify,
    outcome: watch::Sender<Outcome>,
    /// The sender to the entry's watchers: taken out and dropped when the
    /// entry leaves the map ([`close_watchers`](Self::close_watchers)), so
    /// they learn it at once, not when the last `Arc` of the entry goes
    /// (the map frees removed values late). A leaf lock: taken under the
    /// read state and under a write stripe, takes neither.
    watchers: Mutex<Watchers>,
    /// The skipped registry entries already warned about: freed with the
    /// entry, so bounded by the cache cap.
    skipped: SkippedEntries,
}

impl CacheEntry {
    pub(super) fn new(
        service: ServiceName,
        hash: u64,
        channel: Option<String>,
        now_ms: u64,
    ) -> Self {
        let metrics = cache_metrics(service.as_str());
        CacheEntry {
            service,
            hash,
            channel,
            snapshot: ArcSwapOption::empty(),
            used: UseFlag::with_metrics(true, metrics), // used at creation
            last_used_ms: AtomicU64::new(now_ms),
            subscribed: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            state: Mutex::new(ReadState::default()),
            wanted_notify: Notify::new(),
            outcome: watch::Sender::new(None),
            watchers: Mutex::new(Watchers::Open(None)),
            skipped: SkippedEntries::default(),
        }
    }

    pub(crate) fn service(&self) -> &ServiceName {
        &self.service
    }

    pub(crate) fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// The skipped registry entries already warned about.
    pub(crate) fn skipped(&self) -> &SkippedEntries {
        &self.skipped
    }

    /// Marks the entry used.
    #[inline]
    pub(crate) fn touch(&self) {
        self.used.mark();
    }

    /// Counts a lookup answered from the cache.
    #[inline]
    pub(crate) fn count_hit(&self) {
        if let Some(metrics) = self.used.metrics() {
            metrics.hit();
        }
    }

    /// Counts a lookup that waits for a read from Redis.
    pub(crate) fn count_miss(&self) {
        if let Some(metrics) = self.used.metrics() {
            metrics.miss();
        }
    }

    /// Records a read of the service from Redis that ended, either way:
    /// how long it took.
    pub(crate) fn count_read(&self, took: Stopwatch) {
        if let Some(metrics) = self.used.metrics() {
            metrics.resolved(took);
        }
    }

    /// Records how long ago Redis last confirmed the cached list (after a
    /// read or refresh attempt); nothing before the first good read.
    pub(crate) fn record_staleness(&self) {
        if let (Some(metrics), Some(snapshot)) =
            (self.used.metrics(), self.snapshot.load().as_ref())
        {
            let age = Instant::now().saturating_duration_since(snapshot.read_at());
            metrics.staleness(age);
        }
    }

    /// The current snapshot, if any.
    pub(crate) fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot.load_full().map(Snapshot::from_arc)
    }

    /// The current snapshot if it is no older than its maximum age (what
    /// a hit would return).
    #[inline]
    pub(crate) fn fresh(&self) -> Option<Snapshot> {
        let snapshot = self.snapshot()?;
        match snapshot.max_age() {
            Some(max) if snapshot.age() > max => None,
            _ => Some(snapshot),
        }
    }

    /// Whether the current list has an instance.
    pub(crate) fn serves(&self) -> bool {
        self.snapshot
            .load()
            .as_ref()
            .is_some_and(|s| !s.instances().is_empty())
    }

    /// Negative: read, no instance, neither subscribed nor watched.
    pub(crate) fn is_negative(&self) -> bool {
        self.snapshot
            .load()
            .as_ref()
            .is_some_and(|s| s.instances().is_empty())
            && !self.is_subscribed()
            && !self.is_watched()
    }

    /// Whether a background refresh (periodic, or after a reconnect)
    /// should read the entry: it has a list that is not negative, or it is
    /// watched. A service never read (its first read failed, or was
    /// dropped unsent: see [`abandon_if_unwanted`](Self::abandon_if_unwanted))
    /// is read when a caller asks for it, not in the background.
    pub(crate) fn refreshable(&self) -> bool {
        self.is_watched() || (self.snapshot.load().is_some() && !self.is_negative())
    }

    pub(crate) fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Records that the entry is subscribed; `false` if it already was.
    pub(crate) fn set_subscribed(&self) -> bool {
        !self.subscribed.swap(true, Ordering::Relaxed)
    }

    /// For the idle sweep: whether the entry was used since the last look
    /// (clears the flag) or is watched; records `now_ms` as its last use if
    /// so. Returns how long it has been idle.
    pub(crate) fn idle_for(&self, now_ms: u64) -> Duration {
        self.look(now_ms);
        Duration::from_millis(now_ms.saturating_sub(self.last_used_ms.load(Ordering::Relaxed)))
    }

    /// Records a use since the last look (by the sweep or an eviction), or
    /// a watch, as a use at `now_ms`. Returns the last use recorded before,
    /// if there was one since.
    pub(super) fn look(&self, now_ms: u64) -> Option<u64> {
        let used = self.used.take() || self.is_watched();
        used.then(|| self.last_used_ms.swap(now_ms, Ordering::Relaxed))
    }

    /// Whether the entry has been used since the last sweep or is watched.
    pub(crate) fn in_use(&self) -> bool {
        self.used.get() || self.is_watched()
    }

    pub(crate) fn is_watched(&self) -> bool {
        matches!(&*lock(&self.watchers), Watchers::Open(Some(tx)) if tx.receiver_count() > 0)
    }

    /// Sends a new snapshot to the watchers, if any.
    pub(super) fn notify_watchers(&self, snapshot: &Snapshot) {
        if let Watchers::Open(Some(tx)) = &*lock(&self.watchers) {
            tx.send_replace(snapshot.clone());
        }
    }

    /// The entry left the map: its watchers' receivers end now.
    pub(super) fn close_watchers(&self) {
        // Dropped outside the lock: wakes the receivers.
        let _closed = std::mem::replace(&mut *lock(&self.watchers), Watchers::Closed);
    }

    /// A receiver of read outcomes that has seen the current one.
    pub(crate) fn outcomes(&self) -> watch::Receiver<Outcome> {
        self.outcome.subscribe()
    }

    /// Whether a caller waits for a read outcome (holds a receiver).
    pub(crate) fn is_awaited(&self) -> bool {
        self.outcome.receiver_count() > 0
    }

    /// A caller needs a read: returns `true` if the caller must start one
    /// (none is running, and none has finished since `seen` was taken).
    /// Either way the read the caller waits for is marked
    /// [wanted](Self::is_wanted).
    pub(crate) fn join_or_start(&self, seen: &watch::Receiver<Outcome>) -> bool {
        let mut state = lock(&self.state);
        if seen.has_changed().unwrap_or(true) {
            return false; // an outcome is already there
        }
        state.wanted = true;
        if state.running {
            drop(state);
            // The read may be queued for a refresh permit: let it jump.
            self.wanted_notify.notify_one();
            return false;
        }
        state.running = true;
        true
    }

    /// Whether a caller waits for the running read.
    pub(crate) fn is_wanted(&self) -> bool {
        lock(&self.state).wanted
    }

    /// Completes when a caller may have started waiting for the read (see
    /// [`is_wanted`](Self::is_wanted); can also wake spuriously).
    pub(crate) async fn wanted(&self) {
        self.wanted_notify.notified().await;
    }

    /// Something changed (event, reconnect): returns `true` if the caller
    /// must start a read; otherwise the running read is followed by one
    /// more.
    pub(crate) fn mark_dirty(&self) -> bool {
        let mut state = lock(&self.state);
        if state.running {
            state.dirty = true;
            return false;
        }
        state.running = true;
        true
    }

    /// The periodic refresh: returns `true` if the caller must start a
    /// read, `false` if one is running already (it is recent enough: not
    /// marked dirty, so a slow Redis does not grow a backlog of reads).
    pub(crate) fn start_if_idle(&self) -> bool {
        let mut state = lock(&self.state);
        if state.running {
            return false;
        }
        state.running = true;
        true
    }

    /// A read starts: returns the entry's event generation, to hand back
    /// in its [`Read`](super::Read).
    pub(crate) fn begin_read(&self) -> u64 {
        lock(&self.state).generation
    }

    /// Records a change event about one instance (the read it triggers
    /// is started separately, with [`mark_dirty`](Self::mark_dirty)).
    /// `resolver_grace`: the end of the resolver's recovery grace, if one
    /// runs (an `expire` is then no removal).
    pub(crate) fn on_event(&self, event: Event<'_>, resolver_grace: Option<Instant>) {
        lock(&self.state).on_event(event, resolver_grace, Instant::now());
    }

    /// The re-read scheduled for `at` is due: another may be scheduled.
    pub(crate) fn recheck_due(&self, at: Instant) {
        let mut state = lock(&self.state);
        if state.recheck == Some(at) {
            state.recheck = None;
        }
    }

    /// Records that the first read must wait for `subscribed`.
    pub(crate) fn set_subscription(&self, subscribed: oneshot::Receiver<()>) {
        lock(&self.state).subscribed = Some(subscribed);
    }

    /// The pending subscription confirmation, if the first read has not
    /// waited for it yet.
    pub(crate) fn take_subscription(&self) -> Option<oneshot::Receiver<()>> {
        lock(&self.state).subscribed.take()
    }

    /// A read that queues for a permit (or just got one) is dropped unsent if no caller
    /// waits for it (they gave up while it queued) and nothing watches
    /// the entry, and either the entry was `evicted` meanwhile (its result
    /// would go nowhere) or this is its first read (nothing is served from
    /// it yet). During a Redis stall, a flood of names whose callers gave
    /// up so leaves no backlog of reads ahead of a real service's first
    /// read, however many of those names the cache still holds. Returns
    /// `true` if dropped: the entry is released with no outcome sent, so
    /// the next caller starts a read of its own.
    ///
    /// Checked under the read state: a caller holds its outcome receiver
    /// before it joins, and joins under that lock, so it either counts
    /// here (the read is sent) or finds no read running (and starts one).
    pub(crate) fn abandon_if_unwanted(&self, evicted: bool) -> bool {
        let mut state = lock(&self.state);
        let unwanted = !self.is_awaited() && self.abandonable(evicted);
        if unwanted {
            state.running = false;
            state.dirty = false;
            state.wanted = false;
        }
        unwanted
    }

    /// Whether a read of the entry would be dropped unsent once no caller
    /// waits for it: nothing watches the entry, and either it was
    /// `evicted` or it was never read (see
    /// [`abandon_if_unwanted`](Self::abandon_if_unwanted)).
    pub(crate) fn abandonable(&self, evicted: bool) -> bool {
        !self.is_watched() && (evicted || self.snapshot.load().is_none())
    }

    /// Completes when no caller waits for a read outcome (at once if none
    /// does now).
    pub(crate) async fn unawaited(&self) {
        self.outcome.closed().await;
    }

    /// Ends a read that was cut short (shutdown, its runtime gone, a
    /// panic): waiting callers get `error`, and the next caller or refresh
    /// starts a new read. One critical section, like [`complete`](Self::complete).
    pub(crate) fn interrupt(&self, error: ResolveError) {
        let mut state = lock(&self.state);
        self.outcome.send_replace(Some(Err(error)));
        state.running = false;
        state.dirty = false;
        state.wanted = false;
    }

    /// A receiver of every new snapshot, starting with the current one
    /// (`fallback` if there is none yet).
    pub(crate) fn watch(&self, fallback: Snapshot) -> watch::Receiver<Snapshot> {
        let _state = lock(&self.state);
        match &mut *lock(&self.watchers) {
            Watchers::Open(tx) => tx
                .get_or_insert_with(|| watch::Sender::new(self.snapshot().unwrap_or(fallback)))
                .subscribe(),
            // Removed meanwhile: as if its last `Arc` had gone.
            Watchers::Closed => watch::Sender::new(fallback).subscribe(),
        }
    }

    /// Records whether the latest read failed; returns the previous state.
    pub(crate) fn set_failing(&self, failing: bool) -> bool {
        self.failing.swap(failing, Ordering::Relaxed)
    }

    /// The last use recorded by a look, ms since the resolver started.
    pub(super) fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing a panic could leave half-done is protected: carry on.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
