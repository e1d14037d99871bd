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
    #[error("the port must be a number from 1 to 65535, without leading zeros")]
    Port,
    /// An IPv6 address without brackets (`::1:80`).
    #[error("an IPv6 address must be written in brackets: [::1]:8080")]
    Ipv6Brackets,
    /// Something that is not an IPv6 address inside brackets.
    #[error("not a valid IPv6 address inside the brackets")]
    Ipv6,
    /// Four numbers that are not an IPv4 address (`256.0.0.1`).
    #[error("not a valid IPv4 address: each part of a.b.c.d must be a number from 0 to 255")]
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
    /// A host that ends in a number but is not a dotted quad
    /// (`0x7f000001`, `2130706433`, `127.1`, `0x7f.0.0.1`, `1.2.3.4.`):
    /// URL parsers and the system resolver read it as an IPv4 address, one
    /// the policy could not check.
    #[error(
        "a host ending in a number is dialed as an IPv4 address: write the address as a dotted quad a.b.c.d"
    )]
    NumericHost,
    /// A dotted quad with a leading zero (`010.0.0.1`): the system
    /// resolver reads such a part as octal (`010` is 8).
    #[error(
        "a part with a leading zero is read as octal when dialed: write the address as a dotted quad a.b.c.d without leading zeros"
    )]
    Ipv4LeadingZero,
    /// A deprecated IPv4-compatible IPv6 address (`[::a.b.c.d]`, `::/96`
    /// but `[::]` and `[::1]`): no use for it, and it would hide an IPv4
    /// address from the policy.
    #[error("an IPv4-compatible IPv6 address ([::a.b.c.d]) is deprecated: write the IPv4 address a.b.c.d")]
    Ipv4Compatible,
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
                | AddressProblem::NumericHost
                | AddressProblem::Ipv4LeadingZero
                | AddressProblem::Ipv4Compatible
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
    let (authority, host) = parse_form(addr)?;
    match host {
        Host::Ip(ip) => policy::check_ip(ip)?,
        Host::Numeric(problem) => return Err(problem),
        Host::Name => {}
    }
    Ok(authority)
}

/// What the host of a well-formed `host:port` is.
enum Host {
    /// An IP address, in its one accepted spelling.
    Ip(IpAddr),
    /// A DNS name.
    Name,
    /// Another spelling of an IPv4 address: dialed as one, but the policy
    /// would not see which. Refused by the policy, yet well formed, so that
    /// an entry written so can be removed.
    Numeric(AddressProblem),
}

/// `host:port`, and what its host is.
fn parse_form(addr: &str) -> Result<(Authority, Host), AddressProblem> {
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
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (v6, port) = rest.split_once(']').ok_or(AddressProblem::Ipv6)?;
        let v6 = v6.parse::<Ipv6Addr>().map_err(|_| AddressProblem::Ipv6)?;
        let port = match port.strip_prefix(':') {
            Some(port) => port,
            None if port.is_empty() => return Err(AddressProblem::MissingPort),
            None => return Err(AddressProblem::Port),
        };
        (Host::Ip(IpAddr::V6(v6)), port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(AddressProblem::MissingPort);
        };
        if host.contains(':') {
            return Err(AddressProblem::Ipv6Brackets);
        }
        (check_host(host)?, port)
    };
    if port.is_empty() {
        return Err(AddressProblem::MissingPort);
    }
    // One spelling per port (no leading zero, so at most 5 digits): an
    // address names one entry, and its length is bounded.
    if !port.bytes().all(|b| b.is_ascii_digit())
        || port.starts_with('0')
        || !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(AddressProblem::Port);
    }
    let authority = Authority::from_str(addr).map_err(|_| AddressProblem::HostCharacter)?;
    Ok((authority, host))
}

/// Checks a host that is not bracketed and says what it is.
///
/// A host whose last label is a number is taken as IPv4, as the WHATWG URL
/// parser (reqwest's) takes it; the system resolver (`inet_aton`) reads
/// all these spellings as addresses too. Only the dotted quad is accepted:
/// `0x7f000001`, `2130706433`, `127.1` or `0177.0.0.1` would reach an
/// address the policy never saw.
fn check_host(host: &str) -> Result<Host, AddressProblem> {
    if host.is_empty() {
        return Err(AddressProblem::EmptyHost);
    }
    if host.len() > 253 {
        return Err(AddressProblem::HostTooLong);
    }
    let labels = host.strip_suffix('.').unwrap_or(host);
    for label in labels.split('.') {
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
    let last = labels.rsplit('.').next().unwrap_or(labels);
    if !is_number(last) {
        return Ok(Host::Name);
    }
    // The standard library's parser takes the dotted quad only, without
    // leading zeros.
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(v4)));
    }
    let parts: Vec<&str> = labels.split('.').collect();
    let decimal = |part: &&str| part.bytes().all(|b| b.is_ascii_digit());
    if parts.len() == 4 && parts.iter().all(decimal) {
        if parts
            .iter()
            .any(|part| part.len() > 1 && part.starts_with('0'))
        {
            return Ok(Host::Numeric(AddressProblem::Ipv4LeadingZero));
        }
        if parts.iter().any(|part| part.parse::<u8>().is_err()) {
            return Err(AddressProblem::Ipv4);
        }
    }
    Ok(Host::Numeric(AddressProblem::NumericHost))
}

/// The WHATWG URL standard's "ends in a number" test for one label:
/// decimal digits, or `0x`/`0X` and hex digits (none is zero).
fn is_number(label: &str) -> bool {
    match label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}
