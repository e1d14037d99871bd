//! The address policy: which instance addresses may take traffic.
//!
//! One policy, in two parts:
//!
//! * **Fixed rules**, applied wherever an address becomes an [`Instance`]:
//!   when it is registered ([`Instance::new`]) and when a registry entry is
//!   read. Refused: unspecified (`0.0.0.0/8`, `[::]`), multicast
//!   (`224.0.0.0/4`, `ff00::/8`), broadcast (`255.255.255.255`) and
//!   link-local (`169.254.0.0/16`, `fe80::/10`) addresses, also written as
//!   IPv4-mapped IPv6 (`[::ffff:169.254.0.1]`) or behind NAT64's
//!   well-known prefix (`[64:ff9b::169.254.0.1]`); the deprecated
//!   IPv4-compatible form (`[::a.b.c.d]`) is refused. Loopback and private ranges
//!   are allowed: they are normal in development and inside a network.
//!   IPv4 is accepted only as a dotted quad without leading zeros: a host
//!   ending in a number (`0x7f000001`, `2130706433`, `127.1`, `0177.0.0.1`)
//!   is dialed as an IPv4 address by URL parsers and the system resolver,
//!   so any other spelling would hide the address from these rules.
//!   The fixed rules cannot check a DNS name: it is resolved only when
//!   dialed, to whatever its DNS answers, link-local included.
//! * **An allow-list**, opt-in on a resolver
//!   ([`allow_networks`](crate::resolver::ResolverBuilder::allow_networks),
//!   [`allow_ports`](crate::resolver::ResolverBuilder::allow_ports)):
//!   entries outside it are skipped. Its networks also refuse host names,
//!   which closes the gap the fixed rules leave.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use ipnet::IpNet;

use super::{AddressProblem, Instance};
use crate::error::ValidationError;

/// The fixed rules, for an IP address.
pub(super) fn check_ip(ip: IpAddr) -> Result<(), AddressProblem> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4),
        // `::ffff:a.b.c.d` is dialed as a.b.c.d. (Not `to_ipv4`: it would
        // also read `::1` as 0.0.0.1.)
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => check_v4(v4),
            None => check_v6(v6),
        },
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), AddressProblem> {
    if ip.octets()[0] == 0 {
        Err(AddressProblem::Unspecified)
    } else if ip.is_broadcast() {
        Err(AddressProblem::Broadcast)
    } else if ip.is_multicast() {
        Err(AddressProblem::Multicast)
    } else if ip.is_link_local() {
        Err(AddressProblem::LinkLocal)
    } else {
        Ok(())
    }
}

fn check_v6(ip: Ipv6Addr) -> Result<(), AddressProblem> {
    let bits = u128::from(ip);
    // `::a.b.c.d`, deprecated (`::` and `::1` are not of this kind).
    if bits > 1 && bits <= u128::from(u32::MAX) {
        return Err(AddressProblem::Ipv4Compatible);
    }
    // NAT64's well-known prefix `64:ff9b::/96` reaches the IPv4 address in
    // its last 32 bits, so that address must pass the IPv4 rules.
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return check_v4(Ipv4Addr::from(bits as u32));
    }
    if ip.is_unspecified() {
        Err(AddressProblem::Unspecified)
    } else if ip.is_multicast() {
        Err(AddressProblem::Multicast)
    } else if ip.is_unicast_link_local() {
        Err(AddressProblem::LinkLocal)
    } else {
        Ok(())
    }
}

/// The allow-list part of the address policy: the networks and ports a
/// resolver accepts instances at. Empty (the default) allows every address
/// the fixed rules allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowList {
    networks: Vec<IpNet>,
    ports: Vec<RangeInclusive<u16>>,
}

impl AllowList {
    /// The most networks, and the most port ranges, one list may hold (a
    /// check walks them all).
    pub(crate) const MAX_ENTRIES: usize = 1024;

    /// Parses the networks (CIDR notation, e.g. `10.0.0.0/8`, `fd00::/8`;
    /// a bare address is one host) and checks the port ranges.
    pub(crate) fn new(
        networks: &[String],
        ports: &[RangeInclusive<u16>],
    ) -> Result<Self, ValidationError> {
        let config = |message: String| Err(ValidationError::Config(message));
        if networks.len() > Self::MAX_ENTRIES || ports.len() > Self::MAX_ENTRIES {
            return config(format!(
                "at most {} allowed networks and {} allowed port ranges",
                Self::MAX_ENTRIES,
                Self::MAX_ENTRIES
            ));
        }
        let mut parsed = Vec::with_capacity(networks.len());
        for network in networks {
            let text = network.trim();
            let net = match text.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match text.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        let shown: String = text.chars().take(64).collect();
                        return config(format!(
                            "allowed network {shown:?} is not in CIDR notation (e.g. 10.0.0.0/8 or fd00::/8)"
                        ));
                    }
                },
            };
            // The network itself, so `10.1.2.3/8` means 10.0.0.0/8.
            parsed.push(net.trunc());
        }
        for range in ports {
            if range.is_empty() || *range.start() == 0 {
                return config(format!(
                    "allowed ports {}..={} must be a range within 1..=65535",
                    range.start(),
                    range.end()
                ));
            }
        }
        Ok(AllowList {
            networks: parsed,
            ports: ports.to_vec(),
        })
    }

    /// Whether nothing is restricted.
    pub(crate) fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.ports.is_empty()
    }

    /// Whether `instance` is inside the list. With networks set, an
    /// instance at a host name is refused: it cannot be checked without
    /// resolving the name.
    pub(crate) fn check(&self, instance: &Instance) -> Result<(), AddressProblem> {
        if self.is_empty() {
            return Ok(());
        }
        let authority = instance.authority();
        if !self.ports.is_empty() {
            let port = authority.port_u16().unwrap_or(0);
            if !self.ports.iter().any(|range| range.contains(&port)) {
                return Err(AddressProblem::PortNotAllowed);
            }
        }
        if !self.networks.is_empty() {
            let host = authority.host();
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let Ok(ip) = host.parse::<IpAddr>() else {
                return Err(AddressProblem::HostNameNotAllowed);
            };
            // `::ffff:10.0.0.1` is inside `10.0.0.0/8`.
            let mapped = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
                IpAddr::V4(_) => None,
            };
            let inside = |ip: IpAddr| self.networks.iter().any(|net| net.contains(&ip));
            if !inside(ip) && !mapped.is_some_and(inside) {
                return Err(AddressProblem::NetworkNotAllowed);
            }
        }
        Ok(())
    }
}
