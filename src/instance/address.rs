//! Instance addresses: `host:port` parsing, and what is wrong with an
//! address that does not parse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::uri::Authority;

use super::policy;
use crate::error::ValidationError;

/// What is wrong with an instance address: the reason of a
/// [`ValidationError::Address`] and of an [`EntryError::Refused`](crate::EntryError::Refused).
///
/// Its `Display` says what to change in what was typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AddressProblem {
    /// Nothing was given.
    #[error("it is empty: write host:port, e.g. 10.0.0.7:8080")]
    Empty,
    /// A URL was given (`http://host:port`).
    #[error("drop the scheme: write host:port, e.g. 10.0.0.7:8080, not a URL")]
    Scheme,
    /// User info was given (`user@host:port`).
    #[error("drop the user info before '@': write host:port")]
    UserInfo,
    /// A path was given (`host:port/x`).
    #[error("drop the path: write host:port only")]
    Path,
    /// No port (`host`, `[::1]`).
    #[error("the port is missing: write host:port, e.g. 10.0.0.7:8080 or [::1]:8080")]
    MissingPort,
    /// The port is not 1 to 65535.
    #[error("the port must be a number from 1 to 65535")]
    Port,
    /// An IPv6 address without brackets (`::1:80`).
    #[error("an IPv6 address must be written in brackets: [::1]:8080")]
    Ipv6Brackets,
    /// Something that is not an IPv6 address inside brackets.
    #[error("not a valid IPv6 address inside the brackets")]
    Ipv6,
    /// Digits and dots that are not an IPv4 address (`256.0.0.1`, `1.2.3`).
    #[error("not a valid IPv4 address")]
    Ipv4,
    /// The host is empty (`:80`).
    #[error("the host is empty: write host:port")]
    EmptyHost,
    /// The host name is longer than 253 bytes.
    #[error("the host name is longer than 253 bytes")]
    HostTooLong,
    /// A part of the host name is empty or longer than 63 bytes.
    #[error("each part of a host name must be 1 to 63 characters long")]
    HostLabel,
    /// The host holds a character a host name may not hold.
    #[error("a host name may only hold A-Z a-z 0-9 - _ and dots")]
    HostCharacter,
    /// A part of the host name starts or ends with `-`.
    #[error("a part of a host name must not start or end with '-'")]
    HostHyphen,
    /// `0.0.0.0/8` or `[::]`.
    #[error(
        "0.0.0.0/8 and [::] cannot be reached by clients; register the address they connect to"
    )]
    Unspecified,
    /// A multicast address (`224.0.0.0/4`, `ff00::/8`).
    #[error("a multicast address (224.0.0.0/4, ff00::/8) cannot take a connection")]
    Multicast,
    /// The broadcast address `255.255.255.255`.
    #[error("the broadcast address 255.255.255.255 cannot take a connection")]
    Broadcast,
    /// A link-local address (`169.254.0.0/16`, `fe80::/10`).
    #[error("a link-local address (169.254.0.0/16, fe80::/10) is reachable on one link only")]
    LinkLocal,
    /// Outside the networks a resolver was told to allow.
    #[error("outside the allowed networks")]
    NetworkNotAllowed,
    /// A host name, while a resolver allows only some networks: it cannot
    /// be checked without resolving it.
    #[error("a host name cannot be checked against the allowed networks; register an IP address")]
    HostNameNotAllowed,
    /// The port is outside the ports a resolver was told to allow.
    #[error("the port is outside the allowed ports")]
    PortNotAllowed,
}

impl AddressProblem {
    /// Whether the address is well formed but refused by the address
    /// policy (one that cannot take traffic, or outside an allow-list).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            AddressProblem::Unspecified
                | AddressProblem::Multicast
                | AddressProblem::Broadcast
                | AddressProblem::LinkLocal
                | AddressProblem::NetworkNotAllowed
                | AddressProblem::HostNameNotAllowed
                | AddressProblem::PortNotAllowed
        )
    }
}

/// Parses `host:port` (IPv4, `[IPv6]`, or DNS name; port 1..=65535) and
/// applies the address policy's fixed rules.
pub(super) fn parse_addr(addr: &str) -> Result<Authority, ValidationError> {
    parse(addr).map_err(|reason| ValidationError::Address {
        addr: addr.chars().take(300).collect(),
        reason,
    })
}

/// Checks that `addr` is `host:port`, without the address policy: what
/// names an entry to remove, since a refused entry must be removable.
pub(crate) fn check_form(addr: &str) -> Result<(), ValidationError> {
    parse_form(addr)
        .map(drop)
        .map_err(|reason| ValidationError::Address {
            addr: addr.chars().take(300).collect(),
            reason,
        })
}

fn parse(addr: &str) -> Result<Authority, AddressProblem> {
    let (authority, ip) = parse_form(addr)?;
    if let Some(ip) = ip {
        policy::check_ip(ip)?;
    }
    Ok(authority)
}

/// `host:port`, and the host if it is an IP address.
fn parse_form(addr: &str) -> Result<(Authority, Option<IpAddr>), AddressProblem> {
    if addr.is_empty() {
        return Err(AddressProblem::Empty);
    }
    // What was typed instead of host:port, most telling first.
    if addr.contains("://") {
        return Err(AddressProblem::Scheme);
    }
    if addr.contains('@') {
        return Err(AddressProblem::UserInfo);
    }
    if addr.contains(['/', '?', '#']) {
        return Err(AddressProblem::Path);
    }
    let (ip, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (v6, port) = rest.split_once(']').ok_or(AddressProblem::Ipv6)?;
        let v6 = v6.parse::<Ipv6Addr>().map_err(|_| AddressProblem::Ipv6)?;
        let port = match port.strip_prefix(':') {
            Some(port) => port,
            None if port.is_empty() => return Err(AddressProblem::MissingPort),
            None => return Err(AddressProblem::Port),
        };
        (Some(IpAddr::V6(v6)), port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(AddressProblem::MissingPort);
        };
        if host.contains(':') {
            return Err(AddressProblem::Ipv6Brackets);
        }
        (check_host(host)?.map(IpAddr::V4), port)
    };
    if port.is_empty() {
        return Err(AddressProblem::MissingPort);
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) || !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return Err(AddressProblem::Port);
    }
    let authority = Authority::from_str(addr).map_err(|_| AddressProblem::HostCharacter)?;
    Ok((authority, ip))
}

/// Checks a host that is not bracketed; returns it if it is an IPv4 address.
fn check_host(host: &str) -> Result<Option<Ipv4Addr>, AddressProblem> {
    if host.is_empty() {
        return Err(AddressProblem::EmptyHost);
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(Some)
            .map_err(|_| AddressProblem::Ipv4);
    }
    if host.len() > 253 {
        return Err(AddressProblem::HostTooLong);
    }
    for label in host.strip_suffix('.').unwrap_or(host).split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(AddressProblem::HostLabel);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AddressProblem::HostCharacter);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressProblem::HostHyphen);
        }
    }
    Ok(None)
}
