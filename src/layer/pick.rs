//! Picking with outlier detection: the instance for one attempt of a
//! request, skipping instances the request tried and, while others are
//! left, ejected ones (unless too few are left: the panic threshold); and
//! what an attempt tells of its instance (outcomes, load).

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::uri::Authority;
use tokio::time::Instant;

use super::attempts::Tried;
use super::outlier::InstanceState;
use super::picker_cache::PickerEntry;
use crate::balance::{Loads, PeakEwma, TagFilter};
use crate::instance::ServiceName;
use crate::metrics::{AttemptClass, LayerServiceMetrics, Stopwatch};
use crate::resolver::Snapshot;

/// What one request asks of the router.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PickRequest<'a> {
    pub key: Option<u64>,
    pub filter: Option<&'a TagFilter>,
    pub attempt: u32,
    /// The instances this request was sent to already: a retry goes to
    /// one of the others while one is left.
    pub tried: Option<&'a Tried>,
}

/// The instance chosen for one attempt of a request: the picker entry (with
/// its snapshot and the members' states) and the member's index, so
/// choosing copies nothing.
#[derive(Clone)]
pub(crate) struct Picked {
    entry: Arc<PickerEntry>,
    /// Index into the entry's members (and their states).
    member: usize,
    /// Index into the snapshot.
    index: usize,
}

impl Picked {
    #[inline]
    pub(crate) fn authority(&self) -> &Authority {
        self.entry.snapshot.instances()[self.index].authority()
    }

    /// The authority of an `https` request to this instance when the
    /// layer names the service for `ServiceTls`; `None` otherwise.
    #[inline]
    pub(crate) fn tls_authority(&self) -> Option<&Authority> {
        self.entry.tls_authorities.as_ref()?.get(self.index)
    }

    /// The `Host` header the request gets, if any.
    #[inline]
    pub(crate) fn host(&self) -> Option<&HeaderValue> {
        self.entry.host.as_ref()
    }

    #[inline]
    pub(crate) fn service(&self) -> &ServiceName {
        self.entry.snapshot.service()
    }

    /// How many instances could have been picked (weight above 0).
    #[inline]
    pub(crate) fn usable(&self) -> usize {
        self.entry.usable
    }

    /// The snapshot this pick was made from.
    #[inline]
    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.entry.snapshot
    }

    fn state(&self) -> Option<&Arc<InstanceState>> {
        self.entry.states.get(self.member)
    }

    /// What the attempt sent to this instance showed: feeds outlier
    /// detection (a refused connection ejects at once; gateway failures
    /// eject after `consecutive_failures` in a row; a success resets the
    /// count, writing nothing while it is 0). Ejections stay within the
    /// configured share of the usable instances. Atomics on the instance's
    /// own state; a clock read only for failures.
    pub(crate) fn record(&self, outcome: Outcome) {
        if let Some(state) = self.state() {
            let entry = &self.entry;
            let addr = self.entry.snapshot.instances()[self.index].addr();
            entry
                .outliers
                .record(state, outcome, addr, &entry.states, entry.usable);
        }
    }

    /// The attempt sent to this instance at `started` ended as `class`:
    /// one histogram update through the instance's own handle.
    #[inline]
    pub(crate) fn measure(&self, class: AttemptClass, started: Stopwatch) {
        if let Some(state) = self.state() {
            state.metrics.attempt(class, started);
        }
    }

    /// Started when an attempt is sent to this instance, for its duration:
    /// reads the clock only when a recorder takes it.
    #[inline]
    pub(crate) fn stopwatch(&self) -> Stopwatch {
        self.state()
            .map_or(Stopwatch::IDLE, |state| state.metrics.stopwatch())
    }

    /// The metric handles of the instance's service (retries).
    #[inline]
    pub(crate) fn service_metrics(&self) -> &LayerServiceMetrics {
        self.entry.outliers.metrics()
    }

    /// An attempt is sent to this instance: counts it in flight until the
    /// returned guard ends (or is dropped), for balancers that read load
    /// ([`Balance::peak_ewma`]). `None` (no clock read, no atomic, nothing
    /// to drop) for the others.
    ///
    /// [`Balance::peak_ewma`]: crate::balance::Balance::peak_ewma
    pub(crate) fn start(&self) -> Option<AttemptLoad> {
        let ewma = self.entry.ewma?;
        let state = self.state()?.clone();
        state.load.start();
        Some(AttemptLoad {
            state: Some(state),
            started: Instant::now(),
            ewma,
        })
    }
}

/// What an attempt showed about its instance, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response the failure classifier accepts.
    Success,
    /// The connection was refused: eject at once.
    Refused,
    /// A gateway failure: another connect error, an attempt timeout, a
    /// connection lost before the response, or a response status the
    /// classifier counts (502, 503, 504 by default).
    GatewayFailure,
    /// Anything else (e.g. the client's own errors): not the instance's fault.
    Other,
}

/// An attempt in flight to one instance, for load-aware balancers: ends it
/// exactly once, by [`end`](Self::end) or when dropped (a dropped attempt
/// counts as failed, with the time it ran).
#[derive(Debug)]
pub(crate) struct AttemptLoad {
    /// The instance's state; taken when the attempt ends.
    state: Option<Arc<InstanceState>>,
    started: Instant,
    ewma: PeakEwma,
}

impl AttemptLoad {
    /// The attempt ended: response headers (`failed: false`) or a failure.
    pub(crate) fn end(mut self, failed: bool) {
        self.finish(failed);
    }

    fn finish(&mut self, failed: bool) {
        if let Some(state) = self.state.take() {
            let now = Instant::now();
            let rtt: Duration = now.saturating_duration_since(self.started);
            state.load.end(rtt, failed, now, &self.ewma);
        }
    }
}

impl Drop for AttemptLoad {
    fn drop(&mut self) {
        self.finish(true);
    }
}

/// The instance of `entry` to use for `request`: never one the request
/// tried already while another is left; an ejected one only if nothing
/// else is left, or when too few are not ejected (the panic threshold).
/// The entry back when no instance can be picked.
pub(crate) fn pick(
    entry: Arc<PickerEntry>,
    request: PickRequest<'_>,
) -> Result<Picked, Arc<PickerEntry>> {
    let chosen =
        choose(&entry, request).and_then(|member| Some((member, *entry.members.get(member)?)));
    match chosen {
        Some((member, index)) => Ok(Picked {
            entry,
            member,
            index,
        }),
        None => Err(entry),
    }
}

/// One draw of the entry's picker: with the members' load for a balancer
/// that reads it (reading the clock once per pick), else without.
#[inline]
fn draw(
    entry: &PickerEntry,
    key: Option<u64>,
    attempt: u32,
    now: &mut Option<Instant>,
) -> Option<usize> {
    match entry.ewma {
        None => entry.picker.pick(key, attempt),
        Some(ewma) => {
            let now = *now.get_or_insert_with(Instant::now);
            entry
                .picker
                .pick_loaded(key, attempt, &Loads::new(entry, now, ewma))
        }
    }
}

/// Index (into the entry's members) of the instance to use.
fn choose(entry: &PickerEntry, request: PickRequest<'_>) -> Option<usize> {
    let mut now = None;
    let outliers = &entry.outliers;
    let any_ejected = outliers.any_ejected();
    // Nearly always: nothing ejected, nothing tried, one draw.
    if request.tried.is_none() && !any_ejected {
        return draw(entry, request.key, request.attempt, &mut now);
    }
    let instances = entry.snapshot.instances();
    // A member's instance; `None` for an index out of range (a picker
    // of one's own may return one).
    let instance = |i: usize| entry.members.get(i).and_then(|&m| instances.get(m));
    let usable = |i: &usize| instance(*i).is_some_and(|c| c.weight() > 0);
    let untried = |i: usize| {
        instance(i).is_some_and(|instance| {
            request
                .tried
                .is_none_or(|tried| !tried.contains(instance.authority()))
        })
    };
    // Ejections count unless too few members are left (panic mode).
    let now_ms = any_ejected.then(|| outliers.now_ms(*now.get_or_insert_with(Instant::now)));
    let now_ms = now_ms.filter(|&now_ms| {
        let candidates = (0..entry.members.len())
            .filter(usable)
            .filter_map(|i| entry.states.get(i).map(|s| &**s));
        !outliers.panicking(entry.usable, candidates, now_ms)
    });
    let live = |i: usize| {
        now_ms.is_none_or(|now_ms| {
            entry
                .states
                .get(i)
                .is_some_and(|s| !outliers.is_ejected(s, now_ms))
        })
    };
    // The first draw almost always does. Otherwise a few more draws skip
    // ejected and tried instances; then a scan. An ejected instance
    // (it may be back) is better than failing the request.
    let mut ejected = None;
    for attempt in request.attempt..request.attempt.saturating_add(8) {
        match draw(entry, request.key, attempt, &mut now) {
            Some(i) if untried(i) => {
                if live(i) {
                    return Some(i);
                }
                ejected.get_or_insert(i);
            }
            Some(_) => {}
            None => return None,
        }
    }
    let candidate = |i: &usize| usable(i) && untried(*i);
    (0..entry.members.len())
        .filter(candidate)
        .find(|&i| live(i))
        .or(ejected)
        .or_else(|| (0..entry.members.len()).find(candidate))
}
