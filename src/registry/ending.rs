//! Ending registrations: one (deregister, drop), or all (shutdown), after
//! the heartbeat has let go of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;

use super::lease::Lease;
use super::RegistryState;
use crate::error::RegistryError;

/// Removals of a shutdown in flight at once.
const MAX_REMOVALS_IN_FLIGHT: usize = 256;

impl RegistryState {
    /// Stops the heartbeat, removes every instance and refuses new
    /// registrations. Tries all of them; returns the first error.
    pub(super) async fn shut_down(&self) -> Result<(), RegistryError> {
        let _ops = self.ops.lock().await;
        self.closed.store(true, Ordering::Release);
        self.heartbeat_stop.cancel();
        let leases: Vec<Arc<Lease>> = self.lock().drain().map(|(_, l)| l).collect();
        for lease in &leases {
            lease.end();
        }
        // A round in flight may still write them: let it finish first.
        drop(self.writes.lock().await);
        let removals = futures_util::stream::iter(leases)
            .map(|lease: Arc<Lease>| async move {
                let removed = self.remove(lease.service(), lease.addr()).await;
                if let Err(e) = &removed {
                    tracing::warn!(service = %lease.service(), addr = lease.addr(), error = %e, "deregister on shutdown failed");
                }
                removed
            })
            .buffer_unordered(MAX_REMOVALS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        removals
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    /// Ends `lease` for the heartbeat: no round that starts now writes it,
    /// and a round in flight (which may) has finished when this returns.
    /// After this, removing the instance is final.
    pub(super) async fn stop(&self, lease: &Lease) {
        lease.end();
        drop(self.writes.lock().await);
    }

    /// Ends the registration `ticket` of `lease` if it still owns its
    /// address: stops the heartbeat and removes the instance. A detached
    /// handle (replaced by a newer registration, or already ended) changes
    /// nothing.
    pub(super) async fn retire(
        &self,
        lease: &Arc<Lease>,
        ticket: u64,
    ) -> Result<bool, RegistryError> {
        let _ops = self.ops.lock().await;
        let key = (lease.service().clone(), lease.addr().to_owned());
        let owned = {
            let mut map = self.lock();
            match map.get(&key) {
                Some(current) if Arc::ptr_eq(current, lease) && lease.owner() == ticket => {
                    map.remove(&key);
                    true
                }
                _ => false,
            }
        };
        if !owned {
            return Ok(false);
        }
        self.stop(lease).await;
        self.remove(lease.service(), lease.addr()).await
    }
}
