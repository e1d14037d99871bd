//! The handle that owns one registered instance.

use std::fmt;
use std::sync::Arc;

use super::lease::Lease;
use super::{run_to_completion, RegistryState};
use crate::error::{RegistryError, ValidationError};
use crate::instance::{Instance, ServiceName};

/// One registered instance, kept alive by the registry's heartbeat for as
/// long as this handle lives.
///
/// Call [`deregister`](Self::deregister) on shutdown. Dropping the handle
/// stops renewing it and deregisters in the background, on a best-effort
/// basis (see the [module docs](super#ending-a-registration)).
#[must_use = "dropping a Registration deregisters the instance"]
pub struct Registration {
    state: Arc<RegistryState>,
    lease: Arc<Lease>,
    runtime: tokio::runtime::Handle,
    /// This handle's claim on the lease; a newer registration of the same
    /// address takes it over.
    ticket: u64,
    ended: bool,
}

impl Registration {
    pub(super) fn new(state: Arc<RegistryState>, lease: Arc<Lease>, ticket: u64) -> Self {
        Registration {
            runtime: state.current_runtime(),
            state,
            lease,
            ticket,
            ended: false,
        }
    }

    /// The service this instance is registered under.
    pub fn service(&self) -> &ServiceName {
        self.lease.service()
    }

    /// The instance as last written.
    pub fn instance(&self) -> Instance {
        self.lease.instance()
    }

    /// Changes the weight or tags now (e.g. weight 0 to drain) and keeps
    /// heartbeating the new value. The address cannot change: register the
    /// new address instead. Fails with [`RegistryError::Detached`] once the
    /// registration was deregistered or replaced by a newer one.
    ///
    /// Dropping the future does not stop the update once it is polled: it
    /// runs to its end in the background, and the new value is then the
    /// one heartbeated (see [cancel safety](super#cancel-safety)).
    pub async fn update(&self, instance: Instance) -> Result<(), RegistryError> {
        if instance.addr() != self.lease.addr() {
            return Err(ValidationError::Config(format!(
                "update cannot change the address from {} to {}; register the new address instead",
                self.lease.addr(),
                instance.addr()
            ))
            .into());
        }
        let json = self
            .state
            .keyspace
            .encode(self.lease.service(), &instance)?
            .into();
        let (state, lease, ticket) = (self.state.clone(), self.lease.clone(), self.ticket);
        run_to_completion(&self.runtime, async move {
            lease.update(&state, ticket, instance, json).await
        })
        .await
    }

    /// Stops renewing the instance and removes it from Redis, publishing a
    /// `deregister` event. Returns whether Redis still had it.
    ///
    /// Dropping the future does not stop the deregistration: it runs to
    /// its end in the background, within two call limits: the heartbeat
    /// round in flight, then the removal (see [cancel
    /// safety](super#cancel-safety)). If Redis cannot be reached
    /// then, it is no longer renewed all the same and the instance
    /// disappears when its lease runs out.
    pub async fn deregister(mut self) -> Result<bool, RegistryError> {
        // From here on the task below ends the registration, not `Drop`.
        self.ended = true;
        let (state, lease, ticket) = (self.state.clone(), self.lease.clone(), self.ticket);
        run_to_completion(
            &self.runtime,
            async move { state.retire(&lease, ticket).await },
        )
        .await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (state, lease, ticket) = (self.state.clone(), self.lease.clone(), self.ticket);
        // If the runtime is gone this does nothing and the lease expires.
        drop(self.runtime.spawn(async move {
            if let Err(error) = state.retire(&lease, ticket).await {
                tracing::warn!(service = %lease.service(), addr = lease.addr(), %error, "deregister on drop failed");
            }
        }));
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("service", self.service())
            .field("instance", &self.instance())
            .finish()
    }
}
