//! Service names and instances: validation and their stored (JSON) form.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::uri::Authority;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// The logical name of a service, e.g. `orders` or `hertz.test.demo`.
///
/// 1 to 255 bytes of `[A-Za-z0-9._-]`, so a name is always a valid URI host,
/// a valid part of a Redis key and never clashes with the `{…}` hash tag or
/// the `:` separator of the key schema. Cloning is an `Arc` clone.
///
/// ```
/// use redis_discovery::ServiceName;
///
/// let name: ServiceName = "orders.v2".parse()?;
/// assert_eq!(name.as_str(), "orders.v2");
/// assert!("orders/v2".parse::<ServiceName>().is_err());
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(Arc<str>);

impl ServiceName {
    /// The longest name accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Validates `name`.
    pub fn new(name: impl AsRef<str>) -> Result<Self, ValidationError> {
        let name = name.as_ref();
        Self::validate(name)?;
        Ok(ServiceName(Arc::from(name)))
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

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
        ServiceName::validate(&s)?;
        Ok(ServiceName(Arc::from(s)))
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
        &self.0
    }
}

impl Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Tags of an instance: string keys to string values, e.g. `zone=a`.
pub type Tags = BTreeMap<String, String>;

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
    /// reach it at) and for IPv6 addresses with a scope id.
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
        let tags: Tags = tags
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        validate_tags(&tags)?;
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
        self.tags.get(key).map(String::as_str)
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
            service_name: service.as_str(),
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
        validate_tags(&tags).map_err(EntryError::Invalid)?;
        Ok(Instance {
            authority: parse_addr(&addr).map_err(EntryError::Invalid)?,
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

fn validate_tag(key: &str, value: &str) -> Result<(), ValidationError> {
    if key.is_empty() {
        return Err(ValidationError::EmptyTagKey);
    }
    if key.len() > Instance::MAX_TAG_LEN || value.len() > Instance::MAX_TAG_LEN {
        return Err(ValidationError::TagTooLong {
            key: key.chars().take(64).collect(),
        });
    }
    Ok(())
}

fn validate_tags(tags: &Tags) -> Result<(), ValidationError> {
    if tags.len() > Instance::MAX_TAGS {
        return Err(ValidationError::TooManyTags { count: tags.len() });
    }
    tags.iter().try_for_each(|(k, v)| validate_tag(k, v))
}

/// Parses `host:port` (IPv4, `[IPv6]`, or DNS name; port 1..=65535).
fn parse_addr(addr: &str) -> Result<Authority, ValidationError> {
    let err = |reason| ValidationError::Address {
        addr: addr.chars().take(300).collect(),
        reason,
    };
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (v6, port) = rest
            .split_once("]:")
            .ok_or_else(|| err("expected [IPv6]:port"))?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| err("not a valid IPv6 address inside the brackets"))?;
        (None, port)
    } else {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| err("expected host:port"))?;
        if host.contains(':') {
            return Err(err(
                "an IPv6 address must be written in brackets: [::1]:port",
            ));
        }
        (Some(host), port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("the port must be a number from 1 to 65535"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(err("the port must be a number from 1 to 65535")),
    }
    if let Some(host) = host {
        validate_host(host).map_err(err)?;
    }
    let unspecified = match host {
        Some(h) => h.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_unspecified()),
        None => addr
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .and_then(|(v6, _)| v6.parse::<Ipv6Addr>().ok())
            .is_some_and(|ip| ip.is_unspecified()),
    };
    if unspecified {
        return Err(err(
            "0.0.0.0 and [::] cannot be reached by clients; register the address they connect to",
        ));
    }
    Authority::from_str(addr).map_err(|_| err("not a valid URI authority"))
}

fn validate_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(drop)
            .map_err(|_| "not a valid IPv4 address");
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 bytes");
    }
    for label in host.strip_suffix('.').unwrap_or(host).split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each part of a host name must be 1 to 63 characters long");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("a host name may only hold A-Z a-z 0-9 - _ and dots");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part of a host name must not start or end with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for ok in [
            "a",
            "orders",
            "hertz.test.demo",
            "A-b_c.9",
            &"x".repeat(255),
        ] {
            assert!(ServiceName::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(ServiceName::new(""), Err(ValidationError::EmptyServiceName));
        assert!(matches!(
            ServiceName::new("x".repeat(256)),
            Err(ValidationError::ServiceNameTooLong { len: 256 })
        ));
        for (bad, ch, pos) in [
            ("a b", ' ', 1),
            ("{svc}", '{', 0),
            ("a}", '}', 1),
            ("a:b", ':', 1),
            ("a/b", '/', 1),
            ("a\nb", '\n', 1),
            ("zürich", 'ü', 1),
        ] {
            match ServiceName::new(bad) {
                Err(ValidationError::ServiceNameCharacter {
                    character,
                    position,
                    ..
                }) => assert_eq!((character, position), (ch, pos), "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let err = ServiceName::new("a b").unwrap_err().to_string();
        assert!(err.contains("' '") && err.contains("position 1"), "{err}");
    }

    #[test]
    fn addresses() {
        for ok in [
            "127.0.0.1:80",
            "[::1]:8080",
            "[2001:db8::1]:65535",
            "orders-1.svc.cluster.local:8080",
            "my_host:1",
            "localhost:9",
        ] {
            let i = Instance::new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(i.addr(), ok);
            assert_eq!(i.authority().as_str(), ok);
        }
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:-1",
            "127.0.0.1:+80",
            "256.0.0.1:80",
            "1.2.3:80",
            "::1:80",
            "[::1]",
            "[zz]:80",
            ":80",
            "a b:80",
            "user@host:80",
            "host/x:80",
            "-bad.example:80",
            "a..b:80",
            "http://host:80",
            "0.0.0.0:80",
            "[::]:80",
        ] {
            assert!(
                matches!(Instance::new(bad), Err(ValidationError::Address { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn tags_limits() {
        let i = Instance::new("h:1").unwrap();
        assert!(i.clone().with_tag("", "v").is_err());
        assert!(i.clone().with_tag("k".repeat(257), "v").is_err());
        assert!(i.clone().with_tag("k", "v".repeat(257)).is_err());
        assert!(i
            .clone()
            .with_tags((0..65).map(|n| (n.to_string(), "v")))
            .is_err());
        assert!(i.with_tags((0..64).map(|n| (n.to_string(), "v"))).is_ok());
    }

    #[test]
    fn json_round_trip_uses_hertz_field_names() {
        let svc = ServiceName::new("orders").unwrap();
        let i = Instance::new("10.0.0.1:80")
            .unwrap()
            .with_weight(0)
            .with_tag("zone", "a")
            .unwrap();
        let json = i.to_json(&svc).unwrap();
        assert_eq!(
            json,
            r#"{"service_name":"orders","addr":"10.0.0.1:80","weight":0,"tags":{"zone":"a"}}"#
        );
        assert_eq!(Instance::from_json(json.as_bytes()).unwrap(), i);
        let bare = Instance::new("10.0.0.1:80").unwrap();
        assert_eq!(
            bare.to_hertz_json(&svc).unwrap(),
            r#"{"service_name":"orders","addr":"10.0.0.1:80","weight":10,"tags":null}"#
        );
        assert!(bare.to_json(&svc).unwrap().ends_with(r#""tags":{}}"#));
    }

    #[test]
    fn oversized_entry_is_refused() {
        let svc = ServiceName::new("orders").unwrap();
        let big = Instance::new("h:1")
            .unwrap()
            .with_tags((0..64).map(|n| (format!("k{n}"), "v".repeat(256))))
            .unwrap();
        assert!(matches!(
            big.to_json(&svc),
            Err(ValidationError::EntryTooLarge { .. })
        ));
    }

    #[test]
    fn strict_and_hertz_decoding() {
        let e = |s: &str| Instance::from_json(s.as_bytes());
        let h = |s: &str| Instance::from_hertz_json(s.as_bytes());
        assert!(matches!(e("not json"), Err(EntryError::Json(_))));
        assert!(matches!(
            e(r#"{"addr":"h:1","weight":-5}"#),
            Err(EntryError::Weight(-5))
        ));
        assert!(matches!(
            e(r#"{"addr":"h:1"}"#),
            Err(EntryError::Missing("weight"))
        ));
        assert!(matches!(
            e(r#"{"addr":"nope","weight":1}"#),
            Err(EntryError::Invalid(_))
        ));
        assert!(matches!(
            e(r#"{"addr":"h:1","weight":"1"}"#),
            Err(EntryError::Json(_))
        ));
        assert!(e(r#"{"addr":"h:1","weight":1,"tags":null}"#).is_ok());
        assert_eq!(h(r#"{"addr":"h:1","weight":-5}"#).unwrap().weight(), 10);
        assert_eq!(h(r#"{"addr":"h:1","weight":0}"#).unwrap().weight(), 10);
        assert_eq!(h(r#"{"addr":"h:1"}"#).unwrap().weight(), 10);
        assert_eq!(
            h(r#"{"addr":"h:1","weight":7,"tags":null}"#)
                .unwrap()
                .weight(),
            7
        );
        let huge = format!(
            r#"{{"addr":"h:1","weight":1,"x":"{}"}}"#,
            "a".repeat(20_000)
        );
        assert!(matches!(e(&huge), Err(EntryError::TooLarge { .. })));
    }
}
