//! The handle that owns one registered instance.

use std::fmt;
use std::sync::Arc;

use super::heartbeat::Lease;
use super::Shared;
use crate::error::{RegistryError, ValidationError};
use crate::instance::{Instance, ServiceName};

/// One registered instance, kept alive by a background heartbeat for as
/// long as this handle lives.
///
/// Call [`deregister`](Self::deregister) on shutdown. Dropping the handle
/// stops the heartbeat and deregisters in the background, on a best-effort
/// basis (see the [module docs](super#ending-a-registration)).
#[must_use = "dropping a Registration deregisters the instance"]
pub struct Registration {
    shared: Arc<Shared>,
    lease: Arc<Lease>,
    runtime: tokio::runtime::Handle,
    ended: bool,
}

impl Registration {
    pub(super) fn new(shared: Arc<Shared>, lease: Arc<Lease>) -> Self {
        Registration {
            shared,
            lease,
            // register() is async, so it always runs inside a runtime.
            runtime: tokio::runtime::Handle::current(),
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
    /// new address instead.
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
            .shared
            .keyspace
            .encode(self.lease.service(), &instance)?
            .into();
        self.lease.update(&self.shared, instance, json).await
    }

    /// Stops the heartbeat and removes the instance from Redis, publishing a
    /// `deregister` event. Returns whether Redis still had it.
    pub async fn deregister(mut self) -> Result<bool, RegistryError> {
        self.ended = true;
        self.shared.retire(&self.lease).await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.lease.cancel();
        let (shared, lease) = (self.shared.clone(), self.lease.clone());
        // If the runtime is gone this does nothing and the lease expires.
        drop(self.runtime.spawn(async move {
            if let Err(error) = shared.retire(&lease).await {
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
