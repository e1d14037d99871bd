//! Instance addresses (`Instance::new`, `Instance::from_socket_addr`).
//!
//! Invariants: no panic; an accepted address is kept as written, has a port
//! from 1 to 65535, is a valid URI authority (and the authority of
//! `http://ADDR/`), is accepted again, and survives a JSON round trip.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use redis_discovery::{Instance, ServiceName};

fuzz_target!(|data: &[u8]| {
    let Ok(addr) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(instance) = Instance::new(addr) {
        assert_eq!(instance.addr(), addr);
        let authority = instance.authority();
        assert_eq!(authority.as_str(), addr);
        assert!(authority.port_u16().is_some_and(|p| p > 0), "{addr:?}");
        assert!(!authority.host().is_empty(), "{addr:?}");
        let uri: http::Uri = format!("http://{addr}/x")
            .parse()
            .unwrap_or_else(|e| panic!("{addr:?} is not a URI authority: {e}"));
        assert_eq!(uri.authority(), Some(authority));
        assert_eq!(Instance::new(instance.addr()).as_ref(), Ok(&instance));
        let service = ServiceName::new("fuzz").expect("a valid name");
        let json = instance.to_json(&service).expect("encodes");
        assert_eq!(Instance::from_json(json.as_bytes()).as_ref(), Ok(&instance));
    }
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        if let Ok(instance) = Instance::from_socket_addr(socket) {
            assert_eq!(instance.addr().parse::<SocketAddr>(), Ok(socket));
        }
    }
});
