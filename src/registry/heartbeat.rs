//! The registry's one heartbeat task: renews every lease each interval,
//! retries failed services at once on a broken connection and then with a
//! short backoff, and logs per registry, not per registration.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::renewal::Renewal;
use super::Shared;

/// First backoff delay after a failed try; doubles up to [`retry_cap`].
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The longest backoff delay, whatever the interval.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// The longest delay between tries while renewals fail: a quarter of the
/// interval, at most [`MAX_RETRY`], so an entry lost in an outage is back
/// soon after Redis is.
fn retry_cap(interval: Duration) -> Duration {
    (interval / 4).min(MAX_RETRY)
}

/// Starts the heartbeat of the registry `shared` on its runtime. It holds
/// only a weak reference between rounds, so it ends when the registry and
/// all its registrations are gone (their drop cancels `stop`), or at once
/// when `stop` is cancelled (shutdown).
pub(super) fn spawn(shared: &Arc<Shared>, stop: CancellationToken) {
    let interval = shared.heartbeat;
    drop(
        shared
            .runtime
            .spawn(run(Arc::downgrade(shared), interval, stop)),
    );
}

async fn run(shared: Weak<Shared>, interval: Duration, stop: CancellationToken) {
    let start = Instant::now()
        .checked_add(interval)
        .unwrap_or_else(Instant::now);
    let mut ticks = tokio::time::interval_at(start, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut health = Health::default();
    loop {
        let retry_at = health.outage.as_ref().map(|o| o.next_try);
        let full = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = ticks.tick() => true,
            _ = sleep_until(retry_at), if retry_at.is_some() => false,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let only = match (&health.outage, full) {
            (Some(outage), false) => Some(&outage.services),
            _ => None,
        };
        let renewal = shared.renew(only).await;
        drop(shared);
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
struct Health {
    /// Set while renewals fail.
    outage: Option<Outage>,
    /// Whether lost entries were reported since the last clean round.
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

impl Health {
    fn record(&mut self, full: bool, renewal: Renewal, interval: Duration) {
        if renewal.created > 0 {
            self.report_lost(&renewal);
        }
        let Some(error) = renewal.error else {
            if let Some(outage) = self.outage.take() {
                tracing::info!(down_for = ?outage.since.elapsed(), renewed = renewal.written, "heartbeat succeeds again");
            } else if full && renewal.created == 0 {
                // A clean round ends the episode: the next loss is news.
                self.reported_lost = false;
            }
            return;
        };
        let cap = retry_cap(interval);
        let first = self.outage.is_none();
        let outage = self.outage.get_or_insert_with(|| Outage {
            since: Instant::now(),
            services: HashSet::new(),
            next_try: Instant::now(),
            backoff: FIRST_RETRY,
            immediate: false,
        });
        // A failure on a broken connection started a reconnect: a try at
        // once waits for it. Not twice in a row: a refused reconnect fails
        // at once, and then the backoff spaces the tries.
        let delay = if renewal.broke && !outage.immediate {
            outage.immediate = true;
            Duration::ZERO
        } else {
            outage.immediate = false;
            let delay = outage.backoff.min(cap);
            outage.backoff = outage.backoff.saturating_mul(2).min(cap);
            delay
        };
        outage.next_try = Instant::now() + delay;
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
