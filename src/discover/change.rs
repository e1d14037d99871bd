//! What a change stream yields: [`InstanceChange`], keyed by [`InstanceAddr`].

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use http::uri::Authority;

use crate::instance::Instance;

/// The key of an instance in a change stream: its address, `host:port`,
/// exactly as registered. Cheap to clone (the address's bytes are shared).
///
/// Two keys are equal when their addresses are the same bytes, as the
/// [`Snapshot`](crate::Snapshot)'s list tells instances apart
/// (`Host:80` and `host:80` are two entries there, so two keys here).
/// It borrows as `str`, so a map keyed by it can be looked up by address.
///
/// ```
/// use std::collections::HashMap;
/// use redis_discovery::Instance;
/// use redis_discovery::discover::InstanceAddr;
///
/// let instance = Instance::new("10.0.0.1:8080")?;
/// let key = InstanceAddr::from(&instance);
/// assert_eq!(key.as_str(), "10.0.0.1:8080");
/// assert_eq!(key.authority(), instance.authority());
/// let map = HashMap::from([(key, "ready")]);
/// assert_eq!(map.get("10.0.0.1:8080"), Some(&"ready"));
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Clone)]
pub struct InstanceAddr(Authority);

impl InstanceAddr {
    /// The address, `host:port`.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The address as a URI authority, ready to put into a request URI.
    #[inline]
    pub fn authority(&self) -> &Authority {
        &self.0
    }
}

impl From<&Instance> for InstanceAddr {
    fn from(instance: &Instance) -> Self {
        InstanceAddr(instance.authority().clone())
    }
}

// Byte equality, not `Authority`'s case-insensitive one: keys must be as
// distinct as the entries of the list they come from.
impl PartialEq for InstanceAddr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for InstanceAddr {}

impl Hash for InstanceAddr {
    // As `str` hashes, so that `Borrow<str>` holds.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for InstanceAddr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InstanceAddr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Borrow<str> for InstanceAddr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for InstanceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InstanceAddr").field(&self.as_str()).finish()
    }
}

impl fmt::Display for InstanceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to the list of a service's instances, as
/// [`InstanceChanges`](super::InstanceChanges) yields it.
///
/// An instance whose weight or tags changed is removed, then inserted
/// again with the new values: the remove of an address always comes
/// before the insert of that address in the same change.
///
/// ```
/// use redis_discovery::Instance;
/// use redis_discovery::discover::InstanceChange;
///
/// let change = InstanceChange::Insert(Instance::new("10.0.0.1:8080")?);
/// assert!(change.is_insert());
/// assert_eq!(change.addr().as_str(), "10.0.0.1:8080");
/// assert_eq!(change.instance().weight(), Instance::DEFAULT_WEIGHT);
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceChange {
    /// The instance joined the list (or is back with a new weight or tags).
    Insert(Instance),
    /// The instance left the list (or is replaced: an insert of its
    /// address follows). Holds the instance as it was listed.
    Remove(Instance),
}

impl InstanceChange {
    /// The instance inserted, or the one removed as it was listed.
    pub fn instance(&self) -> &Instance {
        match self {
            InstanceChange::Insert(instance) | InstanceChange::Remove(instance) => instance,
        }
    }

    /// The key of the instance: its address.
    pub fn addr(&self) -> InstanceAddr {
        InstanceAddr::from(self.instance())
    }

    /// Whether this is an [`Insert`](Self::Insert).
    pub fn is_insert(&self) -> bool {
        matches!(self, InstanceChange::Insert(_))
    }
}
