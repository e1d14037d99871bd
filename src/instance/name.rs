//! [`ServiceName`]: a validated, case-insensitive service name.

use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::ValidationError;

/// The logical name of a service, e.g. `orders` or `hertz.test.demo`.
///
/// 1 to 255 bytes of `[A-Za-z0-9._-]`, so a name is always a valid URI host,
/// a valid part of a Redis key and never clashes with the `{…}` hash tag or
/// the `:` separator of the key schema. Cloning is an `Arc` clone.
///
/// **Case-insensitive, like a host name.** A request reaches a service
/// through its URI host, whose case HTTP clients do not keep (reqwest
/// lowercases it), so `Orders` and `orders` are the same service:
/// [`as_str`](Self::as_str), equality, hashing and ordering use the
/// lowercase form, and the native schema's keys and channels are built
/// from it. The spelling the name was created with is kept in
/// [`spelling`](Self::spelling) for one purpose: the Hertz schema's key,
/// `/hertz/{name}/server`, which Go writes with the case of its name.
///
/// ```
/// use redis_discovery::ServiceName;
///
/// let name: ServiceName = "Orders.V2".parse()?;
/// assert_eq!(name.as_str(), "orders.v2");
/// assert_eq!(name.spelling(), "Orders.V2");
/// assert_eq!(name, ServiceName::new("orders.v2")?);
/// assert!("orders/v2".parse::<ServiceName>().is_err());
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Clone)]
pub struct ServiceName {
    /// The lowercase form: what the name is.
    name: Arc<str>,
    /// The spelling given, if it differs from `name`.
    spelling: Option<Arc<str>>,
}

impl ServiceName {
    /// The longest name accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Validates `name`; the name is its lowercase form (see the type's docs).
    pub fn new(name: impl AsRef<str>) -> Result<Self, ValidationError> {
        let given = name.as_ref();
        Self::validate(given)?;
        if given.bytes().any(|b| b.is_ascii_uppercase()) {
            Ok(ServiceName {
                name: Arc::from(given.to_ascii_lowercase()),
                spelling: Some(Arc::from(given)),
            })
        } else {
            Ok(ServiceName {
                name: Arc::from(given),
                spelling: None,
            })
        }
    }

    /// Checks `name` without allocating.
    pub fn validate(name: &str) -> Result<(), ValidationError> {
        if name.is_empty() {
            return Err(ValidationError::EmptyServiceName);
        }
        if name.len() > Self::MAX_LEN {
            return Err(ValidationError::ServiceNameTooLong { len: name.len() });
        }
        if let Some((position, character)) = name
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(ValidationError::ServiceNameCharacter {
                name: name.chars().take(64).collect(),
                character,
                position,
            });
        }
        Ok(())
    }

    /// The name, lowercase.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name as it was given, with its case: only the Hertz schema's
    /// key uses it.
    pub fn spelling(&self) -> &str {
        self.spelling.as_deref().unwrap_or(&self.name)
    }
}

/// `name` in lowercase: `name` itself when it has no capital (the usual
/// case: a scan, no copy) or is too long to name a service (it names none
/// either way; no copy of request input), else a lowercased copy. Host
/// names with capitals are rare, so their allocation is off the usual
/// path; a stack buffer instead cost every request ~10 instructions more
/// (zeroing it, callgrind).
pub(crate) fn lowercase(name: &str) -> Cow<'_, str> {
    if name.len() <= ServiceName::MAX_LEN && name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

impl PartialEq for ServiceName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ServiceName {}

// As `str`'s, so `Borrow<str>` lookups in maps work.
impl Hash for ServiceName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for ServiceName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ServiceName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name.cmp(&other.name)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for ServiceName {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceName::new(s)
    }
}

impl TryFrom<&str> for ServiceName {
    type Error = ValidationError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        ServiceName::new(s)
    }
}

impl TryFrom<String> for ServiceName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ServiceName::new(s)
    }
}

impl TryFrom<&ServiceName> for ServiceName {
    type Error = ValidationError;
    fn try_from(s: &ServiceName) -> Result<Self, Self::Error> {
        Ok(s.clone())
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.name
    }
}
