//! The operator's overrides: [`Override`], and the [`RedisRegistry`]
//! methods that write, remove and list them.

use std::fmt;

use super::RedisRegistry;
use crate::connection::timed;
use crate::error::RegistryError;
use crate::instance::{check_addr_form, ServiceName};
use crate::schema::KeySchema;

/// What an operator imposes on one instance, whatever its owner registers
/// (native schema): every resolver applies it, and the owner's heartbeats
/// do not undo it.
///
/// Set with [`RedisRegistry::set_override`], removed with
/// [`RedisRegistry::clear_override`]. One override per instance: a new one
/// replaces the old. It outlives the instance's re-registrations and
/// deregistration, and expires with the service's keys once the service
/// is gone (a minute after its latest lease).
///
/// ```
/// use redis_discovery::registry::Override;
///
/// assert_eq!(Override::drain(), Override::Weight(0));
/// assert_eq!(Override::Weight(5).to_string(), "weight=5");
/// assert_eq!(Override::Disabled.to_string(), "disabled");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Override {
    /// Serve the instance with this weight instead of the registered one;
    /// `0` drains it: listed, never picked. An instance whose owner
    /// registers weight 0 (draining itself: shutting down, not ready)
    /// stays drained whatever this weight: a drain from either side holds.
    Weight(u32),
    /// Hide the instance from every resolver, as if it were not
    /// registered.
    Disabled,
}

impl Override {
    /// Weight 0: the instance stays listed but no request is sent to it.
    pub const fn drain() -> Self {
        Override::Weight(0)
    }

    /// The stored form: `{"weight":N}` or `{"disabled":true}`.
    pub(crate) fn to_json(self) -> String {
        match self {
            Override::Weight(weight) => format!(r#"{{"weight":{weight}}}"#),
            Override::Disabled => r#"{"disabled":true}"#.to_owned(),
        }
    }

    /// Reads the stored form; `None` for anything else (a value written
    /// by hand, or by a later version with kinds this one does not know):
    /// resolvers then serve the instance as registered.
    ///
    /// Other fields beside `weight` or `disabled` are ignored: a later
    /// version that adds one (a reason, an author) must not bring a
    /// drained or disabled instance back into this version's rotation.
    pub(crate) fn from_json(json: &[u8]) -> Option<Self> {
        /// Longer than any override this crate writes.
        const MAX_LEN: usize = 256;
        #[derive(serde::Deserialize)]
        struct Stored {
            weight: Option<u32>,
            disabled: Option<bool>,
        }
        if json.len() > MAX_LEN {
            return None;
        }
        match serde_json::from_slice::<Stored>(json).ok()? {
            Stored {
                weight: Some(weight),
                disabled: None,
            } => Some(Override::Weight(weight)),
            Stored {
                weight: None,
                disabled: Some(true),
            } => Some(Override::Disabled),
            _ => None,
        }
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Override::Weight(weight) => write!(f, "weight={weight}"),
            Override::Disabled => f.write_str("disabled"),
        }
    }
}

impl RedisRegistry {
    /// Overrides the instance at `addr` of `service` (see [`Override`]):
    /// every resolver applies it within milliseconds (an `override` event
    /// on the service's channel), whatever the instance's owner
    /// heartbeats, until [`clear_override`](Self::clear_override). It
    /// replaces the instance's previous override, if any.
    ///
    /// The address need not be registered now: the override waits for it
    /// as long as the service's keys live (a minute after the latest
    /// lease of any of its instances; a minute from now if none has one,
    /// so an override set before a service's first instance starts is
    /// gone if that takes longer). Returns whether an instance at `addr`
    /// is registered now (a `false` may be a typo). Fails with [`RegistryError::OverridesUnsupported`]
    /// in the Hertz schema and with [`RegistryError::Invalid`] for a name
    /// or address the registry refuses, writing nothing.
    ///
    /// ```no_run
    /// use redis_discovery::registry::Override;
    /// # use redis_discovery::RedisRegistry;
    ///
    /// # async fn run(registry: RedisRegistry) -> Result<(), redis_discovery::RegistryError> {
    /// registry.set_override("orders", "10.0.0.7:8080", Override::drain()).await?;
    /// // ... maintenance ...
    /// registry.clear_override("orders", "10.0.0.7:8080").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// One script call, atomic in Redis: dropping the future leaves the
    /// override written whole or not at all. So does a timeout (a
    /// [`RegistryError`] after the call was sent): the override may be
    /// written all the same. Setting it again is harmless (no event when
    /// nothing changes).
    pub async fn set_override<S>(
        &self,
        service: S,
        addr: &str,
        value: Override,
    ) -> Result<bool, RegistryError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<RegistryError>,
    {
        let service = self.override_target(service, addr)?;
        let json = value.to_json();
        let mut conn = self.state.conn.clone();
        let call = self
            .state
            .keyspace
            .set_override(&mut conn, &service, addr, &json);
        let live = timed(self.state.call_deadline(), (), call).await?;
        tracing::info!(%service, addr, %value, live, "override set");
        Ok(live)
    }

    /// Removes the override of the instance at `addr` of `service`, if
    /// any: resolvers serve it as registered again. Returns whether there
    /// was one. Fails like [`set_override`](Self::set_override).
    ///
    /// # Cancel safety
    ///
    /// As `set_override`: dropping the future leaves the override removed
    /// or not; removing it again is harmless.
    pub async fn clear_override<S>(&self, service: S, addr: &str) -> Result<bool, RegistryError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<RegistryError>,
    {
        let service = self.override_target(service, addr)?;
        let mut conn = self.state.conn.clone();
        let call = self
            .state
            .keyspace
            .clear_override(&mut conn, &service, addr);
        let removed = timed(self.state.call_deadline(), (), call).await?;
        tracing::info!(%service, addr, removed, "override cleared");
        Ok(removed)
    }

    /// The overrides of `service`, sorted by address, whether or not their
    /// instances are registered now. A stored value this version cannot
    /// read is left out with a warning (resolvers ignore it too).
    ///
    /// Dropping the future drops one read; nothing is left behind.
    pub async fn overrides<S>(&self, service: S) -> Result<Vec<(String, Override)>, RegistryError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<RegistryError>,
    {
        let service: ServiceName = service.try_into().map_err(Into::into)?;
        self.refuse_hertz()?;
        let mut conn = self.state.conn.clone();
        let call = self.state.keyspace.overrides(&mut conn, &service);
        let stored = timed(self.state.call_deadline(), (), call).await?;
        Ok(readable(&service, stored))
    }

    /// The overrides of every service in the services index, sorted by
    /// service, then address. A service whose last instance deregistered
    /// has left the index: its overrides (until they expire with its keys)
    /// are listed by [`overrides`](Self::overrides) only.
    ///
    /// One read per service in the index, 64 at a time, within one call
    /// limit for the whole listing. Dropping the future drops the reads;
    /// nothing is left behind.
    pub async fn all_overrides(
        &self,
    ) -> Result<Vec<(ServiceName, String, Override)>, RegistryError> {
        self.refuse_hertz()?;
        let mut conn = self.state.conn.clone();
        let call = self.state.keyspace.all_overrides(&mut conn);
        let stored = timed(self.state.call_deadline(), (), call).await?;
        let mut all = Vec::new();
        for (name, stored) in stored {
            // Only service names are read (see `Keyspace::all_overrides`).
            let Ok(service) = ServiceName::new(&name) else {
                continue;
            };
            for (addr, value) in readable(&service, stored) {
                all.push((service.clone(), addr, value));
            }
        }
        Ok(all)
    }

    /// The checked service name, once the schema and the address pass.
    fn override_target<S>(&self, service: S, addr: &str) -> Result<ServiceName, RegistryError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<RegistryError>,
    {
        let service: ServiceName = service.try_into().map_err(Into::into)?;
        // The form only, as `deregister`: an entry the address policy
        // refuses (written by someone else) can be overridden too.
        check_addr_form(addr)?;
        self.refuse_hertz()?;
        Ok(service)
    }

    fn refuse_hertz(&self) -> Result<(), RegistryError> {
        match self.state.keyspace.schema() {
            KeySchema::Hertz => Err(RegistryError::OverridesUnsupported),
            _ => Ok(()),
        }
    }
}

/// The overrides this version reads, with a warning for each other one.
fn readable(service: &ServiceName, stored: Vec<(String, Vec<u8>)>) -> Vec<(String, Override)> {
    stored
        .into_iter()
        .filter_map(|(addr, json)| match Override::from_json(&json) {
            Some(value) => Some((addr, value)),
            None => {
                // A field written by hand may be of any length.
                let addr: String = addr.chars().take(256).collect();
                tracing::warn!(%service, addr, "skipping an override this version cannot read; resolvers ignore it");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Override;

    #[test]
    fn stored_forms() {
        for value in [
            Override::drain(),
            Override::Weight(u32::MAX),
            Override::Disabled,
        ] {
            assert_eq!(Override::from_json(value.to_json().as_bytes()), Some(value));
        }
        // A field a later version may add does not undo the override.
        assert_eq!(
            Override::from_json(br#"{"weight":0,"reason":"disk swap"}"#),
            Some(Override::drain())
        );
        assert_eq!(
            Override::from_json(br#"{"disabled":true,"by":"ops"}"#),
            Some(Override::Disabled)
        );
        assert_eq!(Override::drain().to_json(), r#"{"weight":0}"#);
        for unreadable in [
            &br#"{}"#[..],
            br#"{"weight":-1}"#,
            br#"{"weight":"5"}"#,
            br#"{"weight":4294967296}"#,
            br#"{"disabled":false}"#,
            br#"{"weight":1,"disabled":true}"#,
            br#"{"tags":{}}"#,
            b"not json",
            &[b' '; 300],
        ] {
            assert_eq!(Override::from_json(unreadable), None, "{unreadable:?}");
        }
    }
}
