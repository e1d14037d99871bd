//! Instant arithmetic that cannot panic: every deadline the crate computes
//! from a configured period goes through here.

use std::time::Duration;

use tokio::time::Instant;

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
}
