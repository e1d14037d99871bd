//! Which host a request is for: the proxy itself (`/healthz`), a service,
//! or something refused.

use std::net::IpAddr;

use http::header::HOST;
use http::uri::Scheme;
use http::{Method, Request};
use redis_discovery::ServiceName;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// `/healthz` of the proxy itself.
    Health,
    /// A service: `host` is its name as written (case kept), `authority`
    /// the request's authority (`orders` or `orders:80`).
    Service {
        host: &'a str,
        authority: &'a str,
        /// The authority came from `Host`, not the request target, so the
        /// URI must be made absolute.
        from_host_header: bool,
    },
}

/// Why a request is refused before anything is sent anywhere.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal<'a> {
    /// 400: no usable target.
    Malformed(&'static str),
    /// 403: the host is not a service (or names a port).
    NotService(&'a str),
    /// 405: `CONNECT` (tunnels are not proxied).
    Connect,
}

/// Reads the target of `req`: the authority of an absolute URI (a forward
/// proxy's request, or HTTP/2's `:authority`), else the `Host` header.
pub(crate) fn target<B>(req: &Request<B>) -> Result<Target<'_>, Refusal<'_>> {
    if req.method() == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    let uri = req.uri();
    let (authority, from_host_header) = match uri.authority() {
        Some(authority) => {
            if uri.scheme() != Some(&Scheme::HTTP) {
                return Err(Refusal::Malformed(
                    "only http:// targets are proxied: ask for http://SERVICE/PATH",
                ));
            }
            (Some(authority.as_str()), false)
        }
        None => {
            let mut hosts = req.headers().get_all(HOST).iter();
            let host = hosts.next();
            if hosts.next().is_some() {
                return Err(Refusal::Malformed("more than one Host header"));
            }
            match host.map(|h| h.to_str()) {
                None => (None, true),
                Some(Ok(host)) => (Some(host), true),
                Some(Err(_)) => return Err(Refusal::Malformed("the Host header is not text")),
            }
        }
    };
    let Some(authority) = authority.filter(|a| !a.is_empty()) else {
        return if is_health(req) {
            Ok(Target::Health)
        } else {
            Err(Refusal::Malformed(
                "no Host header: name the service in Host or in an absolute URI (http://SERVICE/PATH)",
            ))
        };
    };
    if authority.contains('@') {
        return Err(Refusal::Malformed(
            "user info in the target is not accepted",
        ));
    }
    let (host, port) = split_host_port(authority);
    if is_proxy_itself(host) {
        return if is_health(req) {
            Ok(Target::Health)
        } else {
            Err(Refusal::NotService(authority))
        };
    }
    // A service is addressed by name alone: its instances have their own
    // ports. Port 80 is `http`'s own, so it names none.
    if port.is_some_and(|p| p != "80") || ServiceName::validate(host).is_err() {
        return Err(Refusal::NotService(authority));
    }
    Ok(Target::Service {
        host,
        authority,
        from_host_header,
    })
}

fn is_health<B>(req: &Request<B>) -> bool {
    req.uri().path() == "/healthz" && matches!(*req.method(), Method::GET | Method::HEAD)
}

/// An IP literal or `localhost`: the proxy's own address, never a service.
fn is_proxy_itself(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with('[')
        || host.parse::<IpAddr>().is_ok()
}

/// `host[:port]`, `[v6][:port]`: the host and the port if any.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.rsplit_once("]:") {
            Some((host, port)) => (&authority[..host.len() + 1], Some(port)),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests;
