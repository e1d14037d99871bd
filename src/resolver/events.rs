//! [`RegistryEvents`]: every change event the registry publishes, across
//! services (native schema), for consoles, audit logs and dashboards.

use std::fmt;

use crate::error::ResolveError;
use crate::instance::ServiceName;

/// What a registry change event says happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// An instance was registered (new entry).
    Register,
    /// A registered instance changed its weight or tags.
    Update,
    /// An instance was deregistered.
    Deregister,
    /// An instance's lease ran out and a registry writer removed it.
    Expire,
    /// An operator set or cleared an [`Override`](crate::Override).
    Override,
}

impl ChangeKind {
    /// The event's name on the wire: `register`, `update`, `deregister`,
    /// `expire` or `override`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Register => "register",
            ChangeKind::Update => "update",
            ChangeKind::Deregister => "deregister",
            ChangeKind::Expire => "expire",
            ChangeKind::Override => "override",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change event, as published on a service's events channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryChange {
    /// The service.
    pub service: ServiceName,
    /// What happened.
    pub kind: ChangeKind,
    /// The instance's address, `host:port`.
    pub addr: String,
}

/// An item of [`RegistryEvents`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A change the registry published.
    Changed(RegistryChange),
    /// Events may have been lost (the connection dropped and is back, or
    /// the reader fell behind): re-read what you show.
    Missed,
}

/// Every change event of the registry, across services: see
/// [`RedisResolver::events`](super::RedisResolver::events).
pub struct RegistryEvents {
    _private: (),
}

impl RegistryEvents {
    /// The next event; `None` once the resolver is gone.
    pub async fn next(&mut self) -> Option<RegistryEvent> {
        None
    }
}

impl fmt::Debug for RegistryEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryEvents").finish_non_exhaustive()
    }
}

/// Placeholder until the subscription lands.
pub(super) async fn subscribe(
    _service_hint: Option<&ServiceName>,
) -> Result<RegistryEvents, ResolveError> {
    Ok(RegistryEvents { _private: () })
}
