//! The configuration of outlier detection.

use std::time::Duration;

/// When the layer ejects (skips) an instance, for how long, and how many at
/// once: Envoy's outlier detection.
///
/// | setting | default | Envoy's |
/// | --- | --- | --- |
/// | [`consecutive_failures`](Self::consecutive_failures) | 5 | `consecutive_gateway_failure` 5 |
/// | [`ejection_time`](Self::ejection_time) | 10 s, doubling up to 160 s | `base_ejection_time` 30 s, `max_ejection_time` 300 s |
/// | [`max_ejected_percent`](Self::max_ejected_percent) | 50 % | `max_ejection_percent` 10 % |
/// | [`panic_threshold_percent`](Self::panic_threshold_percent) | 50 % | `healthy_panic_threshold` 50 % |
///
/// ```
/// use std::time::Duration;
/// use redis_discovery::layer::{DiscoveryLayer, OutlierDetection};
/// use redis_discovery::resolver::StaticResolver;
///
/// let layer = DiscoveryLayer::builder(StaticResolver::new())
///     .outlier_detection(
///         OutlierDetection::new()
///             .consecutive_failures(3)
///             .ejection_time(Duration::from_secs(5), Duration::MAX),
///     )
///     .build();
/// // Clamped: at most an hour.
/// assert!(format!("{layer:?}").contains("max_ejection: 3600s"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    pub(crate) consecutive_failures: u32,
    pub(crate) base_ejection: Duration,
    pub(crate) max_ejection: Duration,
    pub(crate) max_ejected_percent: u8,
    pub(crate) panic_threshold_percent: u8,
}

impl OutlierDetection {
    /// The longest ejection period: an hour, longer than any lease, so an
    /// instance that is gone is unlisted long before it would be back.
    pub const LONGEST: Duration = Duration::from_secs(3600);

    /// The defaults (see the table above).
    pub const fn new() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(160),
            max_ejected_percent: 50,
            panic_threshold_percent: 50,
        }
    }

    /// No ejection at all: every instance keeps its share whatever it
    /// answers (retries still go elsewhere), and outcomes are not even
    /// counted.
    pub const fn disabled() -> Self {
        let mut off = Self::new();
        off.base_ejection = Duration::ZERO;
        off.max_ejection = Duration::ZERO;
        off
    }

    /// Eject an instance after this many gateway failures in a row
    /// (connect errors, attempt timeouts, lost connections, and responses
    /// the [failure classifier](crate::layer::DiscoveryLayerBuilder::failure_status)
    /// counts: 502, 503 and 504 by default). A refused connection ejects at
    /// once. `0` ejects only on refused connections.
    pub const fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = failures;
        self
    }

    /// The first ejection of an instance lasts `base`; each repeat doubles
    /// it up to `max`. Clamped: each at most [`LONGEST`](Self::LONGEST),
    /// `max` at least `base`. A `base` of zero turns ejection off.
    pub fn ejection_time(mut self, base: Duration, max: Duration) -> Self {
        let base = base.min(Self::LONGEST);
        self.base_ejection = base;
        self.max_ejection = max.clamp(base, Self::LONGEST);
        self
    }

    /// At most this share of a service's usable instances (weight above
    /// 0) is ejected at once, rounded down (clamped to 100); an instance
    /// that would exceed it stays in. One of two or more instances may
    /// always be ejected (Envoy's `always_eject_one_host`, gRPC's rule),
    /// the only one never; `0` ejects none.
    pub fn max_ejected_percent(mut self, percent: u8) -> Self {
        self.max_ejected_percent = percent.min(100);
        self
    }

    /// When fewer than this share of a request's usable instances are not
    /// ejected, ejections are ignored and requests balance over all of
    /// them, rather than overload the few left (clamped to 100; `0` never
    /// panics).
    pub fn panic_threshold_percent(mut self, percent: u8) -> Self {
        self.panic_threshold_percent = percent.min(100);
        self
    }
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self::new()
    }
}
