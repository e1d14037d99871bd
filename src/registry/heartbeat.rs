//! The per-registration heartbeat task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::error::RegistryError;
use crate::instance::{Instance, ServiceName};
use crate::schema::Upserted;

/// First retry delay after a failed heartbeat; doubles up to the interval.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The state of one registration, shared by its handle and its heartbeat.
pub(super) struct Lease {
    service: ServiceName,
    current: Mutex<(Instance, Arc<str>)>,
    /// Held around every write, so an update and a heartbeat never race to
    /// leave an older value in Redis.
    write: tokio::sync::Mutex<()>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    addr: String,
    /// The ticket of the handle that owns this lease.
    owner: AtomicU64,
}

impl Lease {
    pub(super) fn new(
        service: ServiceName,
        instance: Instance,
        json: Arc<str>,
        ticket: u64,
    ) -> Self {
        Lease {
            owner: AtomicU64::new(ticket),
            service,
            addr: instance.addr().to_owned(),
            current: Mutex::new((instance, json)),
            write: tokio::sync::Mutex::new(()),
            cancel: CancellationToken::new(),
            task: Mutex::new(None),
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

    fn json(&self) -> Arc<str> {
        self.lock_current().1.clone()
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, (Instance, Arc<str>)> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn owner(&self) -> u64 {
        self.owner.load(Ordering::Acquire)
    }

    /// Writes a new value now and makes the heartbeat write it from then
    /// on, if the handle `ticket` still owns the lease.
    pub(super) async fn update(
        &self,
        shared: &Shared,
        ticket: u64,
        instance: Instance,
        json: Arc<str>,
    ) -> Result<(), RegistryError> {
        let _write = self.write.lock().await;
        if self.cancel.is_cancelled() || self.owner() != ticket {
            return Err(RegistryError::Detached);
        }
        shared.upsert(&self.service, &self.addr, &json).await?;
        *self.lock_current() = (instance, json);
        Ok(())
    }

    /// Like `update`, for a new registration of the same address: writes
    /// the value and hands the lease to `ticket`, atomically with respect
    /// to the older handle's updates.
    pub(super) async fn take_over(
        &self,
        shared: &Shared,
        instance: Instance,
        json: Arc<str>,
        ticket: u64,
    ) -> Result<(), RegistryError> {
        let _write = self.write.lock().await;
        shared.upsert(&self.service, &self.addr, &json).await?;
        *self.lock_current() = (instance, json);
        self.owner.store(ticket, Ordering::Release);
        Ok(())
    }

    /// Stops the heartbeat at once (no new write starts) and waits for a
    /// write in flight to finish.
    pub(super) async fn stop(&self) {
        self.cancel.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            // The task ends by itself; a JoinError only means it was aborted.
            let _ = task.await;
        }
        // An update in flight holds the write lock: let it finish too.
        drop(self.write.lock().await);
    }
}

/// Starts the heartbeat of `lease`; it ends when the lease is cancelled.
pub(super) fn spawn(shared: Arc<Shared>, lease: Arc<Lease>) {
    let task = shared
        .current_runtime()
        .spawn(run(shared.clone(), lease.clone()));
    *lease.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
}

async fn run(shared: Arc<Shared>, lease: Arc<Lease>) {
    let interval = shared.heartbeat;
    let mut delay = interval;
    let mut retry = FIRST_RETRY;
    loop {
        tokio::select! {
            _ = lease.cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        // A write that has started is let finish: stop() waits for it.
        let result = {
            let _write = lease.write.lock().await;
            if lease.cancel.is_cancelled() {
                return;
            }
            shared
                .upsert(&lease.service, &lease.addr, &lease.json())
                .await
        };
        match result {
            Ok(upserted) => {
                if upserted == Upserted::Created {
                    tracing::info!(service = %lease.service, addr = %lease.addr, "registry entry was lost; re-created it");
                }
                delay = interval;
                retry = FIRST_RETRY;
            }
            Err(error) => {
                tracing::warn!(service = %lease.service, addr = %lease.addr, %error, retry_in = ?retry, "heartbeat failed");
                delay = retry.min(interval);
                retry = (retry * 2).min(interval);
            }
        }
    }
}
