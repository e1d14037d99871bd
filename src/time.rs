//! Instant arithmetic that cannot panic: every deadline the crate computes
//! from a configured period goes through here.

use std::cell::Cell;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Thirty years: tokio's own "far future", the latest deadline used when
/// `at + period` cannot be represented.
const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `at + period`, saturating: as late as the clock can say rather than a
/// panic on overflow.
pub(crate) fn later(at: Instant, period: Duration) -> Instant {
    at.checked_add(period)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// `period` from now, saturating like [`later`].
pub(crate) fn after(period: Duration) -> Instant {
    later(Instant::now(), period)
}

thread_local! {
    /// This thread's runtime was found to have no timer.
    static NO_TIMER: Cell<bool> = const { Cell::new(false) };
}

/// A tokio timer for `deadline`, or `None` where tokio has none: outside a
/// runtime, or in one built without `enable_time`. tokio offers no way to
/// ask the latter, and `sleep_until` panics there: the panic is caught once
/// per thread (its message still reaches the panic hook), a warning says
/// what to do, and the thread makes no timer afterwards (tokio cannot tell
/// one runtime from another without its unstable API: a thread that later
/// runs another runtime, with time, keeps making none). With
/// `panic = "abort"`, enable time or turn the timeout off.
pub(crate) fn timer(deadline: Instant) -> Option<Sleep> {
    if NO_TIMER.with(Cell::get) || tokio::runtime::Handle::try_current().is_err() {
        return None;
    }
    match std::panic::catch_unwind(|| tokio::time::sleep_until(deadline)) {
        Ok(sleep) => Some(sleep),
        Err(_) => {
            NO_TIMER.with(|no| no.set(true));
            tracing::warn!(
                "the tokio runtime has no timer (build it with `enable_time` or \
                 `enable_all`): attempt timeouts are off on this thread"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(later(now, Duration::MAX) >= now + Duration::from_secs(365 * 86_400));
        assert!(after(Duration::MAX) > now);
    }

    #[test]
    fn no_timer_outside_a_runtime_or_without_time() {
        assert!(timer(Instant::now()).is_none(), "no runtime");
        let no_time = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        no_time.block_on(async {
            assert!(timer(Instant::now()).is_none(), "no time driver");
            assert!(timer(Instant::now()).is_none(), "remembered");
        });
        NO_TIMER.with(|no| no.set(false));
        let with_time = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        with_time.block_on(async { assert!(timer(Instant::now()).is_some()) });
    }
}
