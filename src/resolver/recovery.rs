//! Resolver-wide outage tracking, for the recovery grace: after Redis was
//! unreachable, an instance a read misses is kept for a grace counted
//! from the moment Redis answers again (see the [module docs](super)).
//!
//! Why: an outage longer than the lease TTL lets every known lease run
//! out while nothing can renew it. A read after Redis is back (restarted
//! empty, or from an old snapshot) but before an instance's next
//! heartbeat would drop that live instance; if every instance loses that
//! race, the service resolves to nothing. The grace is one heartbeat plus
//! a margin: long enough for every live registration to come back.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ResolveError;
use crate::time::later;

/// Whether Redis is, or was lately, unreachable, and until when the
/// grace that follows runs. Its lock is a leaf (see the lock order in
/// `engine/membership.rs`): nothing else is taken under it.
pub(crate) struct Recovery {
    grace: Duration,
    state: Mutex<OutageState>,
}

#[derive(Default)]
struct OutageState {
    /// Redis is unreachable (no answer since the loss).
    lost: bool,
    /// The end of the grace that started when Redis answered again.
    until: Option<Instant>,
}

impl Recovery {
    /// `grace` zero turns the grace off: nothing is tracked.
    pub(super) fn new(grace: Duration) -> Self {
        Recovery {
            grace,
            state: Mutex::new(OutageState::default()),
        }
    }

    /// The configured grace.
    pub(super) fn grace(&self) -> Duration {
        self.grace
    }

    /// Redis could not be reached: the event connection was lost, or a
    /// read failed on a broken connection or timed out.
    pub(super) fn lost(&self) {
        if self.grace.is_zero() {
            return;
        }
        let mut state = self.lock();
        if !state.lost {
            state.lost = true;
            tracing::debug!("Redis unreachable: instances reads miss will be kept for the recovery grace once it answers");
        }
    }

    /// Redis answered (a read succeeded, or the event connection is back
    /// and resubscribed): if it was lost, the grace runs from `now`.
    pub(super) fn answered(&self, now: Instant) {
        let mut state = self.lock();
        if !state.lost {
            return;
        }
        state.lost = false;
        let until = later(now, self.grace);
        state.until = Some(state.until.map_or(until, |u| u.max(until)));
        tracing::info!(grace = ?self.grace, "Redis answers again: instances that reads miss are kept for the recovery grace while registrations come back");
    }

    /// The end of the resolver-wide grace, if one runs at `now`. While
    /// Redis is still lost, a grace from `now` (a read that succeeds
    /// then raced with a loss seen elsewhere).
    pub(super) fn grace_end(&self, now: Instant) -> Option<Instant> {
        let state = self.lock();
        if state.lost {
            return Some(later(now, self.grace));
        }
        state.until.filter(|&until| until > now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutageState> {
        // Nothing a panic could leave half-done is protected.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a failed read means Redis is unreachable (the connection
/// broke, was refused, timed out, could not connect), rather than that
/// it answered with an error: a script or decode error that persists for
/// one service must not keep the grace running for all.
pub(crate) fn unreachable(error: &ResolveError) -> bool {
    match error {
        ResolveError::Timeout { .. } => true,
        ResolveError::Redis { source, .. } | ResolveError::Connect { source, .. } => {
            source.is_connection_failure() || source.is_timeout()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RedisFailure;

    #[test]
    fn the_grace_runs_from_the_answer_after_a_loss() {
        let grace = Duration::from_secs(10);
        let recovery = Recovery::new(grace);
        let t0 = Instant::now();
        assert_eq!(recovery.grace_end(t0), None, "no outage, no grace");
        recovery.answered(t0);
        assert_eq!(recovery.grace_end(t0), None, "answers alone start nothing");
        recovery.lost();
        assert_eq!(
            recovery.grace_end(t0),
            Some(t0 + grace),
            "lost: a grace from now"
        );
        let back = t0 + Duration::from_secs(30);
        recovery.answered(back);
        assert_eq!(recovery.grace_end(back), Some(back + grace));
        // A second answer does not extend it.
        recovery.answered(back + Duration::from_secs(5));
        assert_eq!(recovery.grace_end(back), Some(back + grace));
        assert_eq!(recovery.grace_end(back + grace), None, "over");

        let off = Recovery::new(Duration::ZERO);
        off.lost();
        off.answered(t0);
        assert_eq!(off.grace_end(t0), None, "zero turns it off");

        let long = Recovery::new(Duration::MAX);
        long.lost();
        long.answered(t0);
        assert!(long.grace_end(t0).is_some(), "saturates");
    }

    #[test]
    fn only_unreachable_redis_counts() {
        let io = |kind| ResolveError::Redis {
            service: "s".into(),
            source: RedisFailure::new(redis::RedisError::from(std::io::Error::from(kind))),
        };
        assert!(unreachable(&io(std::io::ErrorKind::ConnectionRefused)));
        assert!(unreachable(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(unreachable(&io(std::io::ErrorKind::TimedOut)));
        assert!(unreachable(&ResolveError::Timeout {
            service: "s".into(),
            timeout: Duration::from_secs(1),
        }));
        let script = ResolveError::Redis {
            service: "s".into(),
            source: RedisFailure::new(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "bad reply",
            ))),
        };
        assert!(!unreachable(&script));
        assert!(!unreachable(&ResolveError::Shutdown));
    }
}
