//! The router's outlier state: one [`ServiceOutliers`] per service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{OutlierDetection, ServiceOutliers};
use crate::instance::ServiceName;

/// Sweeps start once this many services are held.
const MIN_SWEEP: usize = 64;

/// The outlier state of each service a router has built pickers for. Read
/// when a picker entry is built (once per snapshot change), never on a
/// request's path.
///
/// Bounded: a service no picker entry holds any more is dropped by the
/// next sweep, which runs when the map has doubled since the last one
/// (amortized O(1) per new service); picker entries are bounded by the
/// picker cache (and so by the resolver's services).
#[derive(Debug)]
pub(crate) struct Outliers {
    config: OutlierDetection,
    epoch: Instant,
    services: Mutex<Services>,
}

#[derive(Debug)]
struct Services {
    map: HashMap<ServiceName, Arc<ServiceOutliers>>,
    sweep_at: usize,
}

impl Outliers {
    pub(crate) fn new(config: OutlierDetection) -> Self {
        Outliers {
            config,
            epoch: Instant::now(),
            services: Mutex::new(Services {
                map: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    /// The state of `service`'s instances: the same while any picker entry
    /// of the service holds it.
    pub(crate) fn service(&self, service: &ServiceName) -> Arc<ServiceOutliers> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = services.map.get(service) {
            return found.clone();
        }
        if services.map.len() >= services.sweep_at {
            // Held by the map alone: no picker entry routes with it.
            services.map.retain(|_, s| Arc::strong_count(s) > 1);
            services.sweep_at = services.map.len().saturating_mul(2).max(MIN_SWEEP);
        }
        let made = Arc::new(ServiceOutliers::new(
            service.clone(),
            self.config,
            self.epoch,
        ));
        services.map.insert(service.clone(), made.clone());
        made
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }
}
