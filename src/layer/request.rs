//! What the layer needs from a request type: the flag, the logical host,
//! rewriting it to an instance, and replaying it for a retry.

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::uri::{Authority, Scheme, Uri};

use self::sealed::{Internal, RoutableRequest};
use super::error::DiscoveryError;
use super::replay::ReplayBody;
use crate::balance::TagFilter;

/// Marks an `http::Request` for discovery: its URI host is a service name.
///
/// ```
/// use redis_discovery::layer::Discover;
///
/// let request = http::Request::get("http://orders/v1/items")
///     .extension(Discover)
///     .body(String::new())?;
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Discover;

/// A request's key for [`ConsistentHash`](crate::balance::ConsistentHash),
/// set as a request extension. (The layer can also take the key from a
/// header: [`DiscoveryLayerBuilder::hash_header`](super::DiscoveryLayerBuilder::hash_header).)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKey(pub u64);

/// The header that flags a `reqwest::Request` for discovery, since reqwest
/// does not expose request extensions. The layer removes it before the
/// request is sent. Set it with [`DiscoverExt::discover`](super::DiscoverExt).
pub const DISCOVER_HEADER: HeaderName = HeaderName::from_static("x-redis-discovery");

/// A request type the discovery layer can route: `http::Request<B>` (with
/// a [`ReplayBody`]) and, with the `reqwest` feature,
/// `reqwest::Request`.
///
/// Sealed: name it in bounds; the layer alone implements and calls it.
///
/// ```
/// use redis_discovery::layer::{DiscoverRequest, DiscoveryService};
///
/// fn routes<S, Req>(_: &DiscoveryService<S>)
/// where
///     S: tower::Service<Req>,
///     Req: DiscoverRequest,
/// {
/// }
/// ```
pub trait DiscoverRequest: sealed::RoutableRequest {}

impl<T: sealed::RoutableRequest> DiscoverRequest for T {}

pub(crate) mod sealed {
    use http::header::{HeaderName, HeaderValue};
    use http::uri::Authority;

    use super::DiscoveryError;
    use crate::balance::TagFilter;

    /// Proof of a caller inside the crate: every method takes one, so a
    /// bound on [`DiscoverRequest`](super::DiscoverRequest) does not let
    /// code outside the crate call them.
    #[allow(unreachable_pub)]
    #[derive(Debug, Clone, Copy)]
    pub struct Internal;

    /// What the layer needs of a request. Public in a private module, so
    /// that no one outside the crate can implement or call it.
    #[allow(unreachable_pub)]
    pub trait RoutableRequest: Sized + Send + 'static {
        /// Whether the request is flagged for discovery. Removes the flag, so
        /// a routed request passes through any discovery layer further in and
        /// no flag header reaches the server.
        fn take_flag(&mut self, _: Internal) -> bool;

        /// The URI host: the logical service name.
        fn host(&self, _: Internal) -> Option<&str>;

        /// The port the URI names, as written, unless it is empty or the
        /// scheme's default (80 for `http`, 443 for `https`). The layer refuses
        /// a request that names one ([`DiscoveryError::PortInUri`]): the
        /// request goes to the port its instance registered. `None` unless
        /// implemented.
        fn named_port(&self, _: Internal) -> Option<String> {
            None
        }

        /// The URI, for error messages.
        fn uri_string(&self, _: Internal) -> String;

        /// Whether the method is idempotent (RFC 9110, section 9.2.2): such a
        /// request is also retried when a connection closed before any response.
        fn is_idempotent(&self, _: Internal) -> bool;

        /// A per-request tag filter, if the request carries one.
        fn tag_filter(&self, _: Internal) -> Option<&TagFilter> {
            None
        }

        /// The key for consistent hashing: a [`HashKey`](super::HashKey) or the value of `header`.
        fn hash_key(&self, header: Option<&HeaderName>, _: Internal) -> Option<u64>;

        /// Points the request at `authority` (an `https` request at
        /// `tls_authority` if given: see `ServiceTls`); sets `Host` to
        /// `host` if given and the request has no `Host` yet.
        fn route_to(
            &mut self,
            authority: &Authority,
            tls_authority: Option<&Authority>,
            host: Option<&HeaderValue>,
            _: Internal,
        ) -> Result<(), DiscoveryError>;

        /// A copy to send again if the first attempt could not connect; `None`
        /// if the body cannot be replayed (then the request is not retried).
        fn replay(&self, _: Internal) -> Option<Self>;
    }
}

/// The host and the port (as written) of an authority, without user info.
/// A service name holds neither `@` nor `:`, so the usual authority is
/// returned after one short scan.
#[inline]
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if !authority.bytes().any(|b| b == b'@' || b == b':') {
        return (authority, None);
    }
    // The host starts after the last `@` and ends at the last `:` after it,
    // unless that is inside an IPv6 literal (`[…]`: never a service).
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.ends_with(']') {
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host, None),
    }
}

/// The port `uri` names, unless it is empty or the scheme's default.
#[cold]
fn named_port(uri: &Uri) -> Option<String> {
    let port = split_authority(uri.authority()?.as_str())
        .1
        .filter(|port| !port.is_empty())?;
    let default = match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTP => Some(80),
        Some(scheme) if *scheme == Scheme::HTTPS => Some(443),
        _ => None,
    };
    if default.is_some() && port.parse::<u16>().ok() == default {
        return None;
    }
    Some(port.to_owned())
}

/// The service a request flagged for discovery is for: its URI host. A URI
/// without a host, or naming a port (`RoutableRequest::named_port`), is
/// refused.
#[inline]
pub(crate) fn service_of<R: RoutableRequest>(req: &R) -> Result<&str, DiscoveryError> {
    let Some(host) = req.host(Internal) else {
        return Err(DiscoveryError::NoHost {
            uri: req.uri_string(Internal),
        });
    };
    match req.named_port(Internal) {
        None => Ok(host),
        Some(port) => Err(DiscoveryError::PortInUri {
            service: host.to_owned(),
            port,
        }),
    }
}

pub(super) fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// The consistent-hash key from `header`'s value, if configured and present.
pub(super) fn header_key(headers: &HeaderMap, header: Option<&HeaderName>) -> Option<u64> {
    header
        .and_then(|h| headers.get(h))
        .map(|v| hash_bytes(v.as_bytes()))
}

/// Adds `Host: host` unless the request has one, or is HTTP/2: that sends
/// the URI authority as `:authority`, which `Host` must not contradict
/// (RFC 9113, section 8.3.1).
#[inline]
pub(super) fn set_host(
    headers: &mut HeaderMap,
    version: http::Version,
    host: Option<&HeaderValue>,
) {
    if let (Some(host), false) = (host, version == http::Version::HTTP_2) {
        // A scan of the few headers a request has is cheaper than hashing.
        if !headers.keys().any(|name| name == HOST) {
            headers.insert(HOST, host.clone());
        }
    }
}

pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    crate::balance::ConsistentHash::key_of(bytes)
}

impl<B> RoutableRequest for http::Request<B>
where
    B: ReplayBody + Send + 'static,
{
    fn take_flag(&mut self, _: Internal) -> bool {
        let extensions = self.extensions_mut();
        if extensions.get::<Discover>().is_none() {
            return false;
        }
        // Usually the flag is the only extension: then the map is dropped
        // now rather than with the request, so the lookups below and a
        // replay copy cost nothing.
        if extensions.len() == 1 {
            *extensions = http::Extensions::new();
        } else {
            extensions.remove::<Discover>();
        }
        true
    }

    fn host(&self, _: Internal) -> Option<&str> {
        self.uri()
            .authority()
            .map(|a| split_authority(a.as_str()).0)
    }

    #[inline]
    fn named_port(&self, _: Internal) -> Option<String> {
        let authority = self.uri().authority()?.as_str();
        // Nearly always: a service name, no port.
        if !authority.as_bytes().contains(&b':') {
            return None;
        }
        named_port(self.uri())
    }

    fn uri_string(&self, _: Internal) -> String {
        self.uri().to_string()
    }

    fn is_idempotent(&self, _: Internal) -> bool {
        is_idempotent(self.method())
    }

    fn tag_filter(&self, _: Internal) -> Option<&TagFilter> {
        let extensions = self.extensions();
        if extensions.is_empty() {
            return None;
        }
        extensions.get::<TagFilter>()
    }

    fn hash_key(&self, header: Option<&HeaderName>, _: Internal) -> Option<u64> {
        let extensions = self.extensions();
        let key = if extensions.is_empty() {
            None
        } else {
            extensions.get::<HashKey>()
        };
        match key {
            Some(HashKey(key)) => Some(*key),
            None => header_key(self.headers(), header),
        }
    }

    fn route_to(
        &mut self,
        authority: &Authority,
        tls_authority: Option<&Authority>,
        host: Option<&HeaderValue>,
        _: Internal,
    ) -> Result<(), DiscoveryError> {
        let mut parts = std::mem::take(self.uri_mut()).into_parts();
        // For `ServiceTls`, an `https` URI names the service in its user
        // info (`~orders@10.0.0.7:8443`): see `crate::https`.
        let authority = match tls_authority {
            Some(tls) if parts.scheme.as_ref() == Some(&Scheme::HTTPS) => tls,
            _ => authority,
        };
        parts.authority = Some(authority.clone());
        *self.uri_mut() = Uri::from_parts(parts).map_err(|e| DiscoveryError::Rewrite {
            addr: authority.to_string(),
            reason: e.to_string(),
        })?;
        let version = self.version();
        set_host(self.headers_mut(), version, host);
        Ok(())
    }

    fn replay(&self, _: Internal) -> Option<Self> {
        let mut copy = http::Request::new(self.body().replay()?);
        *copy.method_mut() = self.method().clone();
        *copy.uri_mut() = self.uri().clone();
        *copy.version_mut() = self.version();
        *copy.headers_mut() = self.headers().clone();
        if !self.extensions().is_empty() {
            *copy.extensions_mut() = self.extensions().clone();
        }
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::{split_authority, Internal, RoutableRequest};

    #[test]
    fn authorities() {
        assert_eq!(split_authority("orders"), ("orders", None));
        assert_eq!(split_authority("orders:8080"), ("orders", Some("8080")));
        assert_eq!(
            split_authority("user:pw@orders:8080"),
            ("orders", Some("8080"))
        );
        assert_eq!(split_authority("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
        assert_eq!(split_authority("user@orders"), ("orders", None));
        assert_eq!(split_authority("orders:"), ("orders", Some("")));
        assert_eq!(split_authority(""), ("", None));
    }

    #[test]
    fn named_ports() {
        let port = |uri: &str| {
            http::Request::get(uri)
                .body(())
                .unwrap()
                .named_port(Internal)
        };
        for uri in [
            "http://orders/x",
            "http://orders:80/x",
            "https://orders:443/x",
            "http://orders:/x",
            "http://orders:080/x",
        ] {
            assert_eq!(port(uri), None, "{uri}");
        }
        for (uri, named) in [
            ("http://orders:8443/x", "8443"),
            ("https://orders:80/x", "80"),
            ("http://orders:443/x", "443"),
            ("http://orders:99999/x", "99999"),
            ("ws://orders:80/x", "80"),
        ] {
            assert_eq!(port(uri).as_deref(), Some(named), "{uri}");
        }
    }
}
