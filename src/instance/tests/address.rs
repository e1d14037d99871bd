//! Unit tests of addresses and the address policy.

use super::*;

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
        "127.0.0.1:080",
        "127.0.0.1:00080",
        &format!("10.0.0.1:{}80", "0".repeat(300)),
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

/// Address errors say what to change in what was typed.
#[test]
fn address_messages() {
    let message = |addr: &str| match Instance::new(addr) {
        Err(e @ ValidationError::Address { .. }) => e.to_string(),
        other => panic!("{addr:?}: {other:?}"),
    };
    for (addr, expected) in [
        ("http://127.0.0.1:80", "drop the scheme: write host:port"),
        ("https://orders:443/x", "drop the scheme"),
        ("user@host:80", "drop the user info"),
        ("host:80/x", "drop the path"),
        ("127.0.0.1", "the port is missing: write host:port"),
        ("[::1]", "the port is missing"),
        ("orders", "the port is missing"),
        ("127.0.0.1:", "the port is missing"),
        ("127.0.0.1:0", "from 1 to 65535"),
        ("127.0.0.1:http", "from 1 to 65535"),
        ("::1:80", "must be written in brackets: [::1]:8080"),
        ("[zz]:80", "not a valid IPv6 address"),
        ("256.0.0.1:80", "not a valid IPv4 address"),
        (":80", "the host is empty"),
        ("a b:80", "may only hold"),
        ("", "it is empty"),
        ("0.0.0.0:80", "cannot be reached by clients"),
        ("224.0.0.1:80", "multicast"),
        ("255.255.255.255:80", "broadcast"),
        ("169.254.169.254:80", "link-local"),
        ("[fe80::1]:80", "link-local"),
    ] {
        let text = message(addr);
        assert!(text.contains(expected), "{addr:?}: {text}");
        assert!(
            text.contains(&format!("{addr:?}")),
            "names the input: {text}"
        );
    }
    assert!(!message("http://127.0.0.1:80").contains("IPv6"));
}

/// The fixed rules of the address policy, in every spelling of an address.
#[test]
fn address_policy_fixed_rules() {
    let reason = |addr: &str| match Instance::new(addr) {
        Ok(_) => None,
        Err(ValidationError::Address { reason, .. }) => Some(reason),
        Err(other) => panic!("{addr:?}: {other:?}"),
    };
    use AddressProblem::*;
    for (addr, expected) in [
        ("0.0.0.0:80", Unspecified),
        ("0.1.2.3:80", Unspecified),
        ("[::]:80", Unspecified),
        ("[::ffff:0.0.0.0]:80", Unspecified),
        ("224.0.0.1:80", Multicast),
        ("239.255.255.250:1900", Multicast),
        ("[ff02::1]:80", Multicast),
        ("[ff0e::1]:80", Multicast),
        ("[::ffff:224.0.0.1]:80", Multicast),
        ("255.255.255.255:80", Broadcast),
        ("[::ffff:255.255.255.255]:80", Broadcast),
        ("169.254.0.1:80", LinkLocal),
        ("169.254.169.254:80", LinkLocal),
        ("[fe80::1]:80", LinkLocal),
        ("[febf::1]:80", LinkLocal),
        ("[::ffff:169.254.1.1]:80", LinkLocal),
        ("[::FFFF:a9fe:0101]:80", LinkLocal),
        ("[0:0:0:0:0:ffff:169.254.1.1]:80", LinkLocal),
        ("[::ffff:a9fe:a9fe]:80", LinkLocal),
        ("[::169.254.1.1]:80", Ipv4Compatible),
        ("[::10.0.0.1]:80", Ipv4Compatible),
        ("[::2]:80", Ipv4Compatible),
        ("[64:ff9b::169.254.169.254]:80", LinkLocal),
        ("[64:ff9b::a9fe:a9fe]:80", LinkLocal),
        ("[64:ff9b::224.0.0.1]:80", Multicast),
    ] {
        assert_eq!(reason(addr), Some(expected), "{addr}");
        assert!(expected.is_refusal());
    }
    for ok in [
        "127.0.0.1:80",
        "[::1]:80",
        "10.1.2.3:80",
        "172.16.0.1:80",
        "192.168.1.1:80",
        "[fd00::1]:80",
        "[fec0::1]:80",
        "[::ffff:10.0.0.1]:80",
        "[64:ff9b::10.0.0.1]:80",
        "[64:ff9b:1::a9fe:a9fe]:80",
        "223.255.255.255:80",
        "240.0.0.1:80",
        "169.253.0.1:80",
        "orders.internal:80",
    ] {
        assert_eq!(reason(ok), None, "{ok}");
    }
    // Read from the registry, a refused address is a refusal, not corruption.
    let read = Instance::from_json(br#"{"addr":"169.254.169.254:80","weight":1}"#);
    assert!(
        matches!(
            &read,
            Err(EntryError::Refused {
                reason: LinkLocal,
                ..
            })
        ),
        "{read:?}"
    );
    assert!(read.unwrap_err().is_refusal());
    let corrupt = Instance::from_json(br#"{"addr":"nope","weight":1}"#).unwrap_err();
    assert!(!corrupt.is_refusal());
}

#[test]
fn allow_lists() {
    let list = |networks: &[&str], ports: &[std::ops::RangeInclusive<u16>]| {
        let networks: Vec<String> = networks.iter().map(|n| n.to_string()).collect();
        AllowList::new(&networks, ports)
    };
    let check = |list: &AllowList, addr: &str| list.check(&Instance::new(addr).unwrap());
    let open = list(&[], &[]).unwrap();
    assert!(open.is_empty());
    assert_eq!(check(&open, "orders:1"), Ok(()));

    let nets = list(&["10.0.0.0/8", "fd00::/8", "192.168.1.7"], &[]).unwrap();
    assert!(!nets.is_empty());
    assert_eq!(check(&nets, "10.200.0.1:80"), Ok(()));
    assert_eq!(check(&nets, "[::ffff:10.0.0.1]:80"), Ok(()));
    assert_eq!(check(&nets, "[fd12::1]:80"), Ok(()));
    assert_eq!(check(&nets, "192.168.1.7:80"), Ok(()));
    use AddressProblem::*;
    assert_eq!(check(&nets, "192.168.1.8:80"), Err(NetworkNotAllowed));
    assert_eq!(check(&nets, "127.0.0.1:80"), Err(NetworkNotAllowed));
    assert_eq!(check(&nets, "[::1]:80"), Err(NetworkNotAllowed));
    assert_eq!(check(&nets, "orders.internal:80"), Err(HostNameNotAllowed));

    let ports = list(&[], &[8000..=8999, 443..=443]).unwrap();
    assert_eq!(check(&ports, "orders.internal:8080"), Ok(()));
    assert_eq!(check(&ports, "127.0.0.1:443"), Ok(()));
    assert_eq!(check(&ports, "127.0.0.1:9000"), Err(PortNotAllowed));

    // `10.1.2.3/8` is taken as its network.
    let host_bits = list(&["10.1.2.3/8"], &[]).unwrap();
    assert_eq!(check(&host_bits, "10.9.9.9:80"), Ok(()));

    for bad in [
        "10.0.0.0/33",
        "10.0.0/8",
        "nope",
        "",
        "10.0.0.0/8/8",
        "fd00::/129",
    ] {
        assert!(
            matches!(list(&[bad], &[]), Err(ValidationError::Config(_))),
            "{bad:?}"
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    for bad in [0..=80, 9000..=8000] {
        assert!(
            matches!(
                list(&[], std::slice::from_ref(&bad)),
                Err(ValidationError::Config(_))
            ),
            "{bad:?}"
        );
    }
    let many: Vec<String> = (0..=AllowList::MAX_ENTRIES)
        .map(|_| "10.0.0.0/8".into())
        .collect();
    assert!(AllowList::new(&many, &[]).is_err());
}

/// A host ending in a number is dialed as an IPv4 address (WHATWG URL
/// parser, `inet_aton`): only the dotted quad passes, at register and at
/// read, so the policy sees the address that is dialed.
#[test]
fn numeric_hosts_must_be_dotted_quads() {
    use AddressProblem::*;
    for (addr, expected) in [
        ("0xa9fea9fe:80", NumericHost),
        ("0XA9FEA9FE:80", NumericHost),
        ("0xa9.0xfe.0xa9.0xfe:80", NumericHost),
        ("169.0xfe.169.254:80", NumericHost),
        ("0x0:80", NumericHost),
        ("0x:80", NumericHost),
        ("2852039166:80", NumericHost),
        ("127.1:80", NumericHost),
        ("1.2.3:80", NumericHost),
        ("1.2.3.4.5:80", NumericHost),
        ("10.0.0.1.:80", NumericHost),
        ("orders.0x10:80", NumericHost),
        ("orders.123:80", NumericHost),
        ("0251.0376.0251.0376:80", Ipv4LeadingZero),
        ("010.0.0.1:80", Ipv4LeadingZero),
        ("10.0.0.01:80", Ipv4LeadingZero),
    ] {
        let message = match Instance::new(addr) {
            Err(e @ ValidationError::Address { reason, .. }) => {
                assert_eq!(reason, expected, "{addr}");
                e.to_string()
            }
            other => panic!("{addr} accepted: {other:?}"),
        };
        assert!(
            message.contains("write the address as a dotted quad a.b.c.d"),
            "{message}"
        );
        assert!(expected.is_refusal());
        let json = format!(r#"{{"addr":"{addr}","weight":1}}"#);
        for read in [
            Instance::from_json(json.as_bytes()),
            Instance::from_hertz_json(json.as_bytes()),
        ] {
            assert!(
                matches!(&read, Err(EntryError::Refused { reason, .. }) if *reason == expected),
                "{addr}: {read:?}"
            );
        }
        // Well formed: an entry written so can still be removed.
        assert!(check_addr_form(addr).is_ok(), "{addr}");
    }
    // What reqwest's URL parser dials for some of them.
    #[cfg(feature = "reqwest")]
    for (addr, dialed) in [
        ("0xa9fea9fe:80", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe:80", "169.254.169.254"),
        ("169.0xfe.169.254:80", "169.254.169.254"),
        ("2852039166:80", "169.254.169.254"),
        ("0251.0376.0251.0376:80", "169.254.169.254"),
        ("0x0:80", "0.0.0.0"),
        ("010.0.0.1:80", "8.0.0.1"),
    ] {
        let url = reqwest::Url::parse(&format!("http://{addr}/")).unwrap();
        assert_eq!(url.host_str(), Some(dialed), "{addr}");
    }
    assert!(matches!(
        Instance::new("256.1.1.1:80"),
        Err(ValidationError::Address { reason: Ipv4, .. })
    ));
    for ok in [
        "10.0.0.1:80",
        "0x7f.example:80",
        "1e100.net:80",
        "orders.v2:80",
        "x0:80",
        "0xg:80",
        "orders.internal.:80",
    ] {
        assert!(Instance::new(ok).is_ok(), "{ok}");
        let json = format!(r#"{{"addr":"{ok}","weight":1}}"#);
        assert!(Instance::from_json(json.as_bytes()).is_ok(), "{ok}");
    }
}
