//! Picking with ejection: the instance for one attempt of a request,
//! skipping instances the request tried and, while others are left, those
//! passive health ejected.

use std::sync::Arc;

use http::header::HeaderValue;
use http::uri::Authority;

use super::attempts::Tried;
use super::picker_cache::PickerEntry;
use crate::balance::TagFilter;
use crate::instance::ServiceName;
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
/// its snapshot) and an index into the snapshot, so choosing copies nothing.
#[derive(Clone)]
pub(crate) struct Picked {
    entry: Arc<PickerEntry>,
    index: usize,
}

impl Picked {
    #[inline]
    pub(crate) fn authority(&self) -> &Authority {
        self.entry.snapshot.instances()[self.index].authority()
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

    /// What the attempt sent to this instance showed: feeds outlier
    /// detection (a refused connection ejects at once; gateway failures
    /// eject after `consecutive_failures` in a row; a success resets the
    /// count).
    pub(crate) fn record(&self, outcome: Outcome) {
        // STUB: the outlier helper implements consecutive failures.
        if outcome == Outcome::Refused {
            self.entry.health.eject(
                self.service().as_str(),
                self.authority().as_str(),
                self.entry.usable,
            );
        }
    }

    /// An attempt is sent to this instance: counts it in flight while the
    /// guard lives, for balancers that read load ([`Balance::peak_ewma`]).
    /// `None` (nothing measured, nothing to drop) for the others.
    ///
    /// [`Balance::peak_ewma`]: crate::balance::Balance::peak_ewma
    pub(crate) fn start(&self) -> Option<AttemptLoad> {
        None // STUB
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
/// when dropped (a dropped attempt counts as failed, with the time it ran).
#[derive(Debug)]
pub(crate) struct AttemptLoad {
    // STUB: the outlier helper fills it (an `Arc` of the instance's state,
    // the start time, the balancer's `PeakEwma`).
}

impl AttemptLoad {
    /// The attempt ended: response headers (`failed: false`) or a failure.
    pub(crate) fn end(self, failed: bool) {
        let _ = failed; // STUB
    }
}

/// The instance of `entry` to use for `request`: never one the request
/// tried already; an ejected one only if nothing else is left. The entry
/// back when no instance can be picked.
pub(crate) fn pick(
    entry: Arc<PickerEntry>,
    request: PickRequest<'_>,
) -> Result<Picked, Arc<PickerEntry>> {
    match choose(&entry, request) {
        Some(index) => Ok(Picked { entry, index }),
        None => Err(entry),
    }
}

/// Index (into the snapshot) of the instance to use.
fn choose(entry: &PickerEntry, request: PickRequest<'_>) -> Option<usize> {
    let health = &entry.health;
    // Nearly always: nothing ejected, nothing tried, one draw.
    if request.tried.is_none() && !health.any() {
        let index = entry.picker.pick(request.key, request.attempt)?;
        return entry.members.get(index).copied();
    }
    let instances = entry.snapshot.instances();
    let service = entry.snapshot.service().as_str();
    // A member's instance; `None` for an index out of range (a picker
    // of one's own may return one).
    let instance = |i: usize| entry.members.get(i).and_then(|&m| instances.get(m));
    let untried = |i: usize| {
        instance(i).is_some_and(|instance| {
            request
                .tried
                .is_none_or(|tried| !tried.contains(instance.authority()))
        })
    };
    let live =
        |i: usize| instance(i).is_some_and(|instance| !health.is_ejected(service, instance.addr()));
    // The first draw almost always does. Otherwise a few more draws skip
    // ejected and tried instances; then a scan. An ejected instance
    // (it may be back) is better than failing the request.
    let mut ejected = None;
    for attempt in request.attempt..request.attempt.saturating_add(8) {
        match entry.picker.pick(request.key, attempt) {
            Some(i) if untried(i) => {
                if live(i) {
                    return entry.members.get(i).copied();
                }
                ejected.get_or_insert(i);
            }
            Some(_) => {}
            None => return None,
        }
    }
    let candidate = |&i: &usize| instance(i).is_some_and(|c| c.weight() > 0) && untried(i);
    (0..entry.members.len())
        .filter(candidate)
        .find(|&i| live(i))
        .or(ejected)
        .or_else(|| (0..entry.members.len()).find(candidate))
        .and_then(|i| entry.members.get(i).copied())
}
