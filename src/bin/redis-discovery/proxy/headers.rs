//! Header rewriting: hop-by-hop headers out (RFC 9110, section 7.6.1),
//! `X-Forwarded-For` and `Forwarded` (RFC 7239) in.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::uri::Authority;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The headers that concern one connection only, never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHORIZATION,
    PROXY_AUTHENTICATE,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes the hop-by-hop headers and those `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one scan of the few headers, no hashing.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        // Bytes, not text: a value with a non-ASCII byte still names the
        // headers it lists.
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client end of a connection: its address, and the forwarding
/// headers made for it once rather than per request.
#[derive(Debug)]
pub(crate) struct Downstream {
    ip: IpAddr,
    /// `X-Forwarded-For`'s element: the bare IP.
    x_forwarded_for: HeaderValue,
    /// `Forwarded`'s `for=` (an IPv6 address quoted, RFC 7239 section 6).
    forwarded_for: String,
    /// The last target of this connection (nearly always its only one).
    last: Mutex<Option<Route>>,
}

/// A target's authority for the URI and its `Forwarded` element.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) authority: Authority,
    pub(crate) forwarded: HeaderValue,
}

impl Downstream {
    pub(crate) fn new(peer: SocketAddr) -> Self {
        // A v4 client on a dual-stack socket shows as `::ffff:a.b.c.d`.
        let ip = peer.ip().to_canonical();
        let forwarded_for = match ip {
            IpAddr::V4(ip) => format!("for={ip}"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\""),
        };
        Downstream {
            ip,
            x_forwarded_for: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded_for,
            last: Mutex::new(None),
        }
    }

    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The route to `authority` (`host` without a port), from the
    /// connection's last one when it is the same; `None` if `authority` is
    /// not a valid URI authority.
    pub(crate) fn route(&self, authority: &str, host: &str) -> Option<Route> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(route) = last.as_ref().filter(|r| r.authority.as_str() == authority) {
            return Some(route.clone());
        }
        // A service name is an RFC 7230 token: `host=` needs no quotes.
        let forwarded = format!("{};proto=http;host={host}", self.forwarded_for);
        let route = Route {
            authority: authority.parse().ok()?,
            forwarded: HeaderValue::from_str(&forwarded).ok()?,
        };
        *last = Some(route.clone());
        Some(route)
    }

    /// Appends the client to `X-Forwarded-For` and `Forwarded`.
    pub(crate) fn add_forwarding(&self, headers: &mut HeaderMap, forwarded: HeaderValue) {
        append(headers, X_FORWARDED_FOR, self.x_forwarded_for.clone());
        append(headers, FORWARDED, forwarded);
    }
}

/// Sets `name` to `value`, after the values it has (as one list).
fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    let mut before = headers.get_all(&name).iter().peekable();
    if before.peek().is_none() {
        headers.insert(name, value);
        return;
    }
    let mut joined = Vec::new();
    for v in before {
        joined.extend_from_slice(v.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    // Made of valid header values and ", ": valid.
    if let Ok(joined) = HeaderValue::from_bytes(&joined) {
        headers.insert(name, joined);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);

        // A `Connection` value that is not text still names headers.
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"x-secret, \xff").unwrap(),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn forwarding_headers() {
        let v4 = Downstream::new("10.1.2.3:5555".parse().unwrap());
        let route = v4.route("orders:80", "orders").unwrap();
        assert_eq!(route.authority.as_str(), "orders:80");
        assert_eq!(route.forwarded, "for=10.1.2.3;proto=http;host=orders");
        let mut headers = HeaderMap::new();
        v4.add_forwarding(&mut headers, route.forwarded.clone());
        assert_eq!(headers[X_FORWARDED_FOR], "10.1.2.3");

        let v6 = Downstream::new("[2001:db8::1]:5555".parse().unwrap());
        let route = v6.route("orders", "orders").unwrap();
        assert_eq!(
            route.forwarded,
            "for=\"[2001:db8::1]\";proto=http;host=orders"
        );
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        headers.append(FORWARDED, HeaderValue::from_static("for=1.1.1.1"));
        v6.add_forwarding(&mut headers, route.forwarded);
        assert_eq!(headers[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 2001:db8::1");
        assert_eq!(
            headers[FORWARDED],
            "for=1.1.1.1, for=\"[2001:db8::1]\";proto=http;host=orders"
        );

        let mapped = Downstream::new("[::ffff:10.0.0.1]:1".parse().unwrap());
        assert_eq!(mapped.ip().to_string(), "10.0.0.1");
    }
}
