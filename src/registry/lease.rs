//! The state of one registration, shared by its handle and the registry's
//! heartbeat.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::RegistryState;
use crate::error::RegistryError;
use crate::instance::{Instance, ServiceName};
use crate::metrics::{registrations, RegistrationGauge};

/// One registered (service, address): the value the heartbeat writes, and
/// which handle owns it.
pub(super) struct Lease {
    service: ServiceName,
    addr: String,
    /// The instance and its stored JSON, as last written.
    current: Mutex<(Instance, Arc<str>)>,
    /// Set when the registration ends: no heartbeat round that starts
    /// afterwards writes it, and updates fail.
    ended: AtomicBool,
    /// The ticket of the handle that owns this lease.
    owner: AtomicU64,
    /// Counts the instance in `redis_discovery.registrations` until the
    /// registration ends.
    counted: Mutex<Option<RegistrationGauge>>,
}

impl Lease {
    pub(super) fn new(
        service: ServiceName,
        instance: Instance,
        json: Arc<str>,
        ticket: u64,
    ) -> Self {
        let counted = registrations(service.as_str());
        Lease {
            owner: AtomicU64::new(ticket),
            service,
            addr: instance.addr().to_owned(),
            current: Mutex::new((instance, json)),
            ended: AtomicBool::new(false),
            counted: Mutex::new(Some(counted)),
        }
    }

    pub(super) fn service(&self) -> &ServiceName {
        &self.service
    }

    pub(super) fn addr(&self) -> &str {
        &self.addr
    }

    pub(super) fn instance(&self) -> Instance {
        self.lock_current().0.clone()
    }

    /// The stored JSON the heartbeat writes.
    pub(super) fn json(&self) -> Arc<str> {
        self.lock_current().1.clone()
    }

    fn lock_current(&self) -> MutexGuard<'_, (Instance, Arc<str>)> {
        // A plain value swap: no invariant a panic could break.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn owner(&self) -> u64 {
        self.owner.load(Ordering::Acquire)
    }

    pub(super) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Marks the registration ended; see [`RegistryState::stop`] for the wait
    /// that must follow before the instance is removed.
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::Release);
        // Taken out under the lock, dropped (counted down) once.
        let counted = self
            .counted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(counted);
    }

    /// Writes a new value now and makes the heartbeat write it from then
    /// on, if the handle `ticket` still owns the lease. Holds the
    /// registry's write lock, so no heartbeat round writes the older value
    /// over it.
    pub(super) async fn update(
        &self,
        state: &RegistryState,
        ticket: u64,
        instance: Instance,
        json: Arc<str>,
    ) -> Result<(), RegistryError> {
        let _writes = state.writes.lock().await;
        if self.ended() || self.owner() != ticket {
            return Err(RegistryError::Detached);
        }
        state.upsert(&self.service, &self.addr, &json).await?;
        *self.lock_current() = (instance, json);
        Ok(())
    }

    /// Like `update`, for a new registration of the same address: writes
    /// the value and hands the lease to `ticket`, atomically with respect
    /// to the older handle's updates and to heartbeat rounds.
    pub(super) async fn take_over(
        &self,
        state: &RegistryState,
        instance: Instance,
        json: Arc<str>,
        ticket: u64,
    ) -> Result<(), RegistryError> {
        let _writes = state.writes.lock().await;
        state.upsert(&self.service, &self.addr, &json).await?;
        *self.lock_current() = (instance, json);
        self.owner.store(ticket, Ordering::Release);
        Ok(())
    }
}
