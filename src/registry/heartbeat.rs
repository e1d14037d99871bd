//! The registry's one heartbeat task: renews every lease each interval,
//! retries failed services at once on a broken connection and then with a
//! short backoff, and logs per registry, not per registration.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::renewal::Renewal;
use super::RegistryState;

/// First backoff delay after a failed try; doubles up to [`retry_cap`].
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The longest backoff delay, whatever the interval.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// The spread of a backoff delay: each is drawn from +-25 % of it, so a
/// fleet whose heartbeats failed together does not retry in lockstep.
const JITTER: f64 = 0.25;

/// `delay` spread by [`JITTER`]. An immediate try stays immediate: it
/// waits for the reconnect, not for a slot.
fn jittered(delay: Duration) -> Duration {
    if delay.is_zero() {
        return delay;
    }
    // At most 1.25 x the 1 s cap: no overflow.
    delay.mul_f64(rand::random_range(1.0 - JITTER..=1.0 + JITTER))
}

/// The shortest backoff delay, whatever the interval: the shortest
/// heartbeat interval.
const MIN_RETRY: Duration = super::RegistryBuilder::MIN_HEARTBEAT_INTERVAL;

/// The longest delay between tries while renewals fail: a quarter of the
/// interval, from [`MIN_RETRY`] to [`MAX_RETRY`], so an entry lost in an
/// outage is back soon after Redis is, and a failing Redis is never tried
/// in a spin.
fn retry_cap(interval: Duration) -> Duration {
    (interval / 4).clamp(MIN_RETRY, MAX_RETRY)
}

/// Starts the heartbeat of the registry `state` on its runtime. It ends
/// when `stop` is cancelled: on shutdown, and when the registry and all
/// its registrations are gone (it holds only a weak reference between
/// rounds, and the last one's drop cancels `stop`). Between rounds it ends
/// at once; a round in flight finishes first (within one call limit and
/// the index grace).
pub(super) fn spawn(state: &Arc<RegistryState>, stop: CancellationToken) {
    let interval = state.heartbeat;
    drop(
        state
            .runtime
            .spawn(run(Arc::downgrade(state), interval, stop)),
    );
}

async fn run(state: Weak<RegistryState>, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(crate::time::after(interval), interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut health = HeartbeatHealth::default();
    loop {
        let retry_at = health.outage.as_ref().map(|o| o.next_try);
        let full = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = ticks.tick() => true,
            _ = sleep_until(retry_at), if retry_at.is_some() => false,
        };
        let Some(state) = state.upgrade() else {
            return;
        };
        let only = match (&health.outage, full) {
            (Some(outage), false) => Some(&outage.services),
            _ => None,
        };
        let renewal = state.renew(only).await;
        drop(state);
        health.record(full, renewal, interval);
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// What the heartbeat remembers between rounds, for retries and logs.
#[derive(Default)]
struct HeartbeatHealth {
    /// Set while renewals fail.
    outage: Option<Outage>,
    /// Whether lost entries were reported at info in this episode, which
    /// ends with the outage or with a clean full round: the next loss is
    /// news.
    reported_lost: bool,
}

struct Outage {
    since: Instant,
    /// The services to retry (their group keys).
    services: HashSet<String>,
    next_try: Instant,
    /// The next backoff delay.
    backoff: Duration,
    /// Whether the try that failed last was an immediate one.
    immediate: bool,
}

impl Outage {
    /// An outage starting now, its first backoff [`FIRST_RETRY`].
    fn new() -> Self {
        let now = Instant::now();
        Outage {
            since: now,
            services: HashSet::new(),
            next_try: now,
            backoff: FIRST_RETRY,
            immediate: false,
        }
    }

    /// The delay before the next try, after one failed (`broke`: on a
    /// broken connection).
    fn next_delay(&mut self, broke: bool, cap: Duration) -> Duration {
        // A failure on a broken connection started a reconnect: a try at
        // once waits for it. Not twice in a row: a refused reconnect fails
        // at once, and then the backoff spaces the tries.
        if broke && !self.immediate {
            self.immediate = true;
            return Duration::ZERO;
        }
        self.immediate = false;
        let delay = self.backoff.min(cap);
        self.backoff = self.backoff.saturating_mul(2).min(cap);
        delay
    }
}

impl HeartbeatHealth {
    fn record(&mut self, full: bool, renewal: Renewal, interval: Duration) {
        if renewal.created > 0 {
            self.report_lost(&renewal);
        }
        let Some(error) = renewal.error else {
            if let Some(outage) = self.outage.take() {
                // A retry writes only the failed services: count what it
                // wrote, not the registry.
                tracing::info!(down_for = ?outage.since.elapsed(), instances_written = renewal.written, "heartbeat succeeds again");
                // The outage's losses are reported: the next outage's are
                // news, even within one interval.
                self.reported_lost = false;
            } else if full && renewal.created == 0 {
                // A clean round ends the episode: the next loss is news.
                self.reported_lost = false;
            }
            return;
        };
        let cap = retry_cap(interval);
        let first = self.outage.is_none();
        let outage = self.outage.get_or_insert_with(Outage::new);
        let delay = jittered(outage.next_delay(renewal.broke, cap));
        outage.next_try = crate::time::after(delay);
        outage.services = renewal.failed;
        let services = outage.services.len();
        if first {
            tracing::warn!(services, instances = renewal.failed_instances, %error, retry_in = ?delay, "heartbeat failed; retrying");
        } else {
            tracing::debug!(services, instances = renewal.failed_instances, %error, retry_in = ?delay, "heartbeat still failing");
        }
    }

    /// Entries Redis had lost (restart, `FLUSHALL`, failover) and the
    /// heartbeat re-created: one info line per episode, however many.
    fn report_lost(&mut self, renewal: &Renewal) {
        let examples: Vec<String> = renewal
            .examples
            .iter()
            .map(|(service, addr)| format!("{service}/{addr}"))
            .collect();
        let examples = examples.join(", ");
        if self.reported_lost {
            tracing::debug!(entries = renewal.created, %examples, "more lost registry entries re-created");
        } else {
            self.reported_lost = true;
            tracing::info!(entries = renewal.created, %examples, "registry entries were lost in Redis (restart, FLUSHALL or failover); re-created them");
        }
    }
}

#[cfg(test)]
mod tests;
