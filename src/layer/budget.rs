//! The retry budget: retries limited to a share of requests, so that a
//! fleet-wide failure cannot multiply the load (Finagle's retry budget).
//! tower's `TpsBudget` does the accounting; this file validates its
//! configuration (tower's constructor panics on values out of range).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

/// How many retries the layer may make: a share of the requests of the
/// last `window`, plus a floor of retries per second for quiet services
/// (Finagle's and tower's `TpsBudget` model). A request refused a retry
/// returns its attempt's error or response.
///
/// Default: 20 % of requests plus 10 retries per second, over 10 s.
/// Clones of a layer share one budget, across all its services.
///
/// ```
/// use std::time::Duration;
/// use redis_discovery::layer::{DiscoveryLayer, RetryBudget};
/// use redis_discovery::resolver::StaticResolver;
///
/// let layer = DiscoveryLayer::builder(StaticResolver::new())
///     .retry_budget(RetryBudget::new().percent(10).min_per_second(5))
///     .build();
/// let unlimited = DiscoveryLayer::builder(StaticResolver::new())
///     .retry_budget(RetryBudget::unlimited())
///     .build();
/// # let _ = (layer, unlimited);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    /// `None`: unlimited.
    limits: Option<Limits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    percent: u32,
    min_per_second: u32,
    window: Duration,
}

const DEFAULT_LIMITS: Limits = Limits {
    percent: 20,
    min_per_second: 10,
    window: Duration::from_secs(10),
};

impl RetryBudget {
    /// The largest share: ten retries per request.
    pub const MAX_PERCENT: u32 = 1000;

    /// 20 % of requests plus 10 retries per second, over 10 s.
    pub const fn new() -> Self {
        RetryBudget {
            limits: Some(DEFAULT_LIMITS),
        }
    }

    /// No budget: every retry the other rules allow is made.
    pub const fn unlimited() -> Self {
        RetryBudget { limits: None }
    }

    /// Retries as a percentage of requests (clamped to
    /// [`MAX_PERCENT`](Self::MAX_PERCENT)).
    pub fn percent(self, percent: u32) -> Self {
        self.with(|l| l.percent = percent.min(Self::MAX_PERCENT))
    }

    /// Retries per second allowed however few requests there were
    /// (clamped to a million).
    pub fn min_per_second(self, retries: u32) -> Self {
        self.with(|l| l.min_per_second = retries.min(1_000_000))
    }

    /// The window requests and retries are counted over (clamped to 1 to
    /// 60 s, tower's bounds).
    pub fn window(self, window: Duration) -> Self {
        self.with(|l| l.window = window.clamp(Duration::from_secs(1), Duration::from_secs(60)))
    }

    /// Changes the limits; an unlimited budget gets the defaults first.
    fn with(self, change: impl FnOnce(&mut Limits)) -> Self {
        let mut limits = self.limits.unwrap_or(DEFAULT_LIMITS);
        change(&mut limits);
        RetryBudget {
            limits: Some(limits),
        }
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new()
    }
}

/// A layer's budget in use: shared by its clones and all their requests.
#[derive(Clone)]
pub(crate) struct RetryTokens {
    config: RetryBudget,
    budget: Option<Arc<TpsBudget>>,
}

impl RetryTokens {
    pub(crate) fn new(config: RetryBudget) -> Self {
        let budget = config.limits.map(|l| {
            // In tower's ranges: window 1..=60 s, percent <= 1000 %
            // (a ratio of 10), min_per_second < i32::MAX.
            Arc::new(TpsBudget::new(
                l.window,
                l.min_per_second,
                l.percent as f32 / 100.0,
            ))
        });
        RetryTokens { config, budget }
    }

    /// A request is sent: it earns a share of a retry.
    #[inline]
    pub(crate) fn deposit(&self) {
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
    }

    /// Takes a retry from the budget; `false` when it is spent.
    pub(crate) fn withdraw(&self) -> bool {
        self.budget.as_ref().is_none_or(|budget| budget.withdraw())
    }
}

impl fmt::Debug for RetryTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.config, f)
    }
}

impl Default for RetryTokens {
    fn default() -> Self {
        Self::new(RetryBudget::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_accepted() {
        for percent in [0, 1, 20, 100, 1000, u32::MAX] {
            for min in [0, 1, u32::MAX] {
                for window in [Duration::ZERO, Duration::from_secs(10), Duration::MAX] {
                    let config = RetryBudget::new()
                        .percent(percent)
                        .min_per_second(min)
                        .window(window);
                    let tokens = RetryTokens::new(config);
                    tokens.deposit();
                    let _ = tokens.withdraw();
                }
            }
        }
        assert!(RetryTokens::new(RetryBudget::unlimited()).withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_requests() {
        let tokens = RetryTokens::new(RetryBudget::new().percent(20).min_per_second(0));
        assert!(!tokens.withdraw(), "nothing deposited, no floor");
        for _ in 0..100 {
            tokens.deposit();
        }
        let granted = (0..100).filter(|_| tokens.withdraw()).count();
        assert_eq!(granted, 20);
    }
}
