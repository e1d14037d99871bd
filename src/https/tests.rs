use http::uri::{Authority, Uri};
use hyper_rustls::ResolveServerName;
use rustls::pki_types::ServerName;

use super::server_name::{service_authority, service_of, ServerNamePattern, ServiceNameResolver};
use super::ServiceTls;

fn routed(service: &str, instance: &str) -> String {
    let service = crate::ServiceName::new(service).unwrap();
    service_authority(&service, &instance.parse::<Authority>().unwrap()).to_string()
}

#[test]
fn https_authorities_keep_the_service() {
    assert_eq!(routed("orders", "10.0.0.7:8443"), "~orders@10.0.0.7:8443");
    assert_eq!(routed("orders", "[::1]:8443"), "~orders@[::1]:8443");
}

#[test]
fn services_are_read_back_only_when_marked() {
    let uri = |s: &str| s.parse::<Uri>().unwrap();
    assert_eq!(
        service_of(&uri("https://~orders@10.0.0.7:8443/")),
        Some("orders")
    );
    assert_eq!(service_of(&uri("https://10.0.0.7:8443/")), None);
    assert_eq!(service_of(&uri("https://@10.0.0.7:8443/")), None);
    // Ordinary user info is never a service (nor shown in an error).
    assert_eq!(service_of(&uri("https://orders@10.0.0.7:8443/")), None);
    assert_eq!(service_of(&uri("https://deploy:tok3n@api.example/")), None);
    assert_eq!(service_of(&uri("https://~a:b@api.example/")), None);
}

#[test]
fn patterns() {
    let name = |p: &str, s: &str| {
        ServerNamePattern::new(p)
            .unwrap()
            .name_for(s)
            .map(|n| n.to_str().into_owned())
    };
    assert_eq!(name("{service}", "orders").unwrap(), "orders");
    assert_eq!(
        name("{service}.internal", "orders").unwrap(),
        "orders.internal"
    );
    assert_eq!(
        name("api.{service}.svc", "orders").unwrap(),
        "api.orders.svc"
    );
    assert_eq!(
        name("gateway.internal", "orders").unwrap(),
        "gateway.internal"
    );
    assert!(name("{service}.internal", "bad name").is_err());
    for bad in ["{service}.{service}", "", "{service} x", "a..b"] {
        assert!(ServerNamePattern::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_resolver_uses_the_service_else_the_host() {
    let resolver = ServiceNameResolver {
        pattern: ServerNamePattern::new("{service}.internal").unwrap(),
    };
    let resolve = |s: &str| {
        resolver
            .resolve(&s.parse().unwrap())
            .map(|n| n.to_str().into_owned())
    };
    assert_eq!(
        resolve("https://~orders@127.0.0.1:8443/").unwrap(),
        "orders.internal"
    );
    // Not marked: the host, never the user info.
    assert_eq!(
        resolve("https://deploy:tok3n@example.com/").unwrap(),
        "example.com"
    );
    assert_eq!(resolve("https://example.com/").unwrap(), "example.com");
    assert_eq!(resolve("https://[::1]:8443/").unwrap(), "::1");
    let err = resolve("https://secret@bad..host/")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid TLS server name"), "{err}");
    assert!(!err.contains("secret"), "user info is never shown: {err}");
    let _: ServerName<'static> = ServerName::try_from("x").unwrap();
}

#[test]
fn builds_check_their_inputs() {
    assert!(ServiceTls::builder().build().is_ok());
    assert!(ServiceTls::builder()
        .root_certificates_pem(b"nothing")
        .is_err());
    assert!(ServiceTls::builder()
        .client_certificate_pem(b"", b"")
        .is_err());
    let no_roots = ServiceTls::builder().webpki_roots(false).build();
    assert!(no_roots.unwrap_err().to_string().contains("no root"));
    let tls = ServiceTls::builder().build().unwrap();
    assert!(format!("{tls:?}").contains("ServiceTls"));
}
