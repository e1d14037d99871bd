//! Service names and instances: validation, the address policy and their
//! stored (JSON) form.

mod address;
mod name;
mod policy;
mod tags;

use std::fmt;
use std::net::SocketAddr;

use http::uri::Authority;
use serde::{Deserialize, Serialize};

pub(crate) use self::address::check_form as check_addr_form;
use self::address::parse_addr;
pub use self::address::AddressProblem;
pub(crate) use self::name::lowercase;
pub use self::name::ServiceName;
pub(crate) use self::policy::AllowList;
use self::tags::validate_tag;
pub use self::tags::{Tags, TagsIter};
use crate::error::ValidationError;

/// One instance of a service: its address, weight and tags.
///
/// The address is `host:port` where host is an IPv4 address, a bracketed
/// IPv6 address (`[::1]:8080`) or a DNS name, and port is 1 to 65535. The
/// weight is relative to the other instances of the service; `0` means
/// *drained*: registered and listed, but never picked.
///
/// ```
/// use redis_discovery::Instance;
///
/// let instance = Instance::new("10.0.0.7:8080")?
///     .with_weight(20)
///     .with_tag("zone", "eu-1a")?;
/// assert_eq!(instance.addr(), "10.0.0.7:8080");
/// assert_eq!(instance.weight(), 20);
/// assert_eq!(instance.tag("zone"), Some("eu-1a"));
/// assert!(Instance::new("10.0.0.7").is_err()); // no port
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Instance {
    authority: Authority,
    weight: u32,
    tags: Tags,
}

impl Instance {
    /// The weight of an instance unless set otherwise (Hertz's default too).
    pub const DEFAULT_WEIGHT: u32 = 10;
    /// The most tags an instance may have.
    pub const MAX_TAGS: usize = 64;
    /// The longest tag key or value, in bytes.
    pub const MAX_TAG_LEN: usize = 256;
    /// The largest stored (JSON) form of an instance, in bytes.
    pub const MAX_ENTRY_LEN: usize = 16 * 1024;

    /// An instance at `addr` (`host:port`) with the default weight and no tags.
    ///
    /// Fails, saying what to change, for anything but `host:port`, and for
    /// an address the [address policy](crate::resolver#the-address-policy)
    /// refuses: unspecified, multicast, broadcast and link-local addresses
    /// (`0.0.0.0`, `224.0.0.1`, `255.255.255.255`, `169.254.1.1`, `[fe80::1]`, …),
    /// and IPv4 written other than as a dotted quad (`0xa9fea9fe`, `010.0.0.1`).
    pub fn new(addr: impl AsRef<str>) -> Result<Self, ValidationError> {
        Ok(Instance {
            authority: parse_addr(addr.as_ref())?,
            weight: Self::DEFAULT_WEIGHT,
            tags: Tags::new(),
        })
    }

    /// An instance at a socket address, e.g. the local address of a listener.
    ///
    /// Fails for port 0, for an unspecified address (`0.0.0.0`, `[::]`: a
    /// listener bound to all interfaces must register the address clients
    /// reach it at), for IPv6 addresses with a scope id and for any other
    /// address [`new`](Self::new) refuses.
    pub fn from_socket_addr(addr: SocketAddr) -> Result<Self, ValidationError> {
        Self::new(addr.to_string())
    }

    /// Sets the weight; `0` drains the instance.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Adds (or replaces) one tag.
    pub fn with_tag(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        let (key, value) = (key.into(), value.into());
        validate_tag(&key, &value)?;
        self.tags.insert(key, value);
        if self.tags.len() > Self::MAX_TAGS {
            return Err(ValidationError::TooManyTags {
                count: self.tags.len(),
            });
        }
        Ok(self)
    }

    /// Replaces all tags.
    pub fn with_tags<K, V>(
        mut self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ValidationError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let tags: Tags = tags.into_iter().collect();
        tags.validate()?;
        self.tags = tags;
        Ok(self)
    }

    /// The address, `host:port`.
    #[inline]
    pub fn addr(&self) -> &str {
        self.authority.as_str()
    }

    /// The address as a URI authority, ready to put into a request URI.
    #[inline]
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The weight; `0` means drained.
    #[inline]
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// All tags.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// The value of one tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key)
    }

    /// The stored form: JSON with Hertz's field names,
    /// `{"service_name":…,"addr":…,"weight":…,"tags":{…}}`.
    ///
    /// Fails if it would be larger than [`MAX_ENTRY_LEN`](Self::MAX_ENTRY_LEN).
    pub fn to_json(&self, service: &ServiceName) -> Result<String, ValidationError> {
        self.encode(service, false)
    }

    /// The form Go's Hertz writes: as [`to_json`](Self::to_json), but no
    /// tags are `"tags":null` (Go's nil map).
    pub fn to_hertz_json(&self, service: &ServiceName) -> Result<String, ValidationError> {
        self.encode(service, true)
    }

    fn encode(
        &self,
        service: &ServiceName,
        null_if_no_tags: bool,
    ) -> Result<String, ValidationError> {
        let entry = EntryRef {
            // Hertz's `service_name` is the name as its program spells it.
            service_name: if null_if_no_tags {
                service.spelling()
            } else {
                service.as_str()
            },
            addr: self.addr(),
            weight: self.weight,
            tags: (!(null_if_no_tags && self.tags.is_empty())).then_some(&self.tags),
        };
        // Serializing strings and integers cannot fail.
        let json = serde_json::to_string(&entry).unwrap_or_default();
        if json.len() > Self::MAX_ENTRY_LEN {
            return Err(ValidationError::EntryTooLarge { len: json.len() });
        }
        Ok(json)
    }

    /// Parses a stored entry strictly (the native schema): `addr` and
    /// `weight` (0 to 2^32-1) are required, `tags` may be an object or null.
    pub fn from_json(json: &[u8]) -> Result<Self, EntryError> {
        Self::decode(json, WeightRule::Strict)
    }

    /// Parses an entry the way Hertz does: a missing or `<= 0` weight is 10,
    /// missing fields take their zero value.
    pub fn from_hertz_json(json: &[u8]) -> Result<Self, EntryError> {
        Self::decode(json, WeightRule::Hertz)
    }

    fn decode(json: &[u8], rule: WeightRule) -> Result<Self, EntryError> {
        if json.len() > Self::MAX_ENTRY_LEN {
            return Err(EntryError::TooLarge { len: json.len() });
        }
        let entry: EntryOwned =
            serde_json::from_slice(json).map_err(|e| EntryError::Json(e.to_string()))?;
        let addr = entry.addr.ok_or(EntryError::Missing("addr"))?;
        let weight = match (rule, entry.weight) {
            (WeightRule::Strict, None) => return Err(EntryError::Missing("weight")),
            (WeightRule::Strict, Some(w)) => u32::try_from(w).map_err(|_| EntryError::Weight(w))?,
            (WeightRule::Hertz, w) => match w {
                Some(w) if w > 0 => u32::try_from(w).map_err(|_| EntryError::Weight(w))?,
                _ => Self::DEFAULT_WEIGHT,
            },
        };
        let tags = entry.tags.unwrap_or_default();
        tags.validate().map_err(EntryError::Invalid)?;
        let authority = parse_addr(&addr).map_err(|error| match error {
            ValidationError::Address { addr, reason } if reason.is_refusal() => {
                EntryError::Refused { addr, reason }
            }
            other => EntryError::Invalid(other),
        })?;
        Ok(Instance {
            authority,
            weight,
            tags,
        })
    }
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("addr", &self.addr())
            .field("weight", &self.weight)
            .field("tags", &self.tags)
            .finish()
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.addr())
    }
}

/// Why a registry entry read from Redis was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The value is not the expected JSON.
    #[error("value is not a valid entry: {0}")]
    Json(String),
    /// A required field is missing.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// The weight is negative or too large.
    #[error("field `weight` is out of range: {0}")]
    Weight(i64),
    /// The value is larger than [`Instance::MAX_ENTRY_LEN`].
    #[error("value is {len} bytes, at most 16384 are allowed")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The address or tags are invalid.
    #[error(transparent)]
    Invalid(ValidationError),
    /// The address is well formed, but the address policy refuses it: it
    /// cannot take traffic (link-local, multicast, …) or is outside the
    /// resolver's allow-list.
    #[error("address {addr:?} is refused: {reason}")]
    Refused {
        /// The address (cut to 300 characters).
        addr: String,
        /// Why.
        reason: AddressProblem,
    },
}

impl EntryError {
    /// Whether the entry was skipped by the address policy rather than
    /// for being corrupt.
    pub fn is_refusal(&self) -> bool {
        matches!(self, EntryError::Refused { .. })
    }
}

#[derive(Clone, Copy)]
enum WeightRule {
    Strict,
    Hertz,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    service_name: &'a str,
    addr: &'a str,
    weight: u32,
    tags: Option<&'a Tags>,
}

#[derive(Deserialize)]
struct EntryOwned {
    addr: Option<String>,
    weight: Option<i64>,
    tags: Option<Tags>,
}

#[cfg(test)]
mod tests;
