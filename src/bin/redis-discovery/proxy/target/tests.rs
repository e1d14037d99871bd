//! Tests of [`target`](super::target).

use super::*;

fn of(uri: &str, host: Option<&str>, method: Method) -> Request<()> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(host) = host {
        builder = builder.header(HOST, host);
    }
    builder.body(()).unwrap()
}

fn service(host: &str, authority: &str, from_host_header: bool) -> Target<'static> {
    // Leaked: the tests compare with borrowed targets.
    Target::Service {
        host: Box::leak(host.to_owned().into_boxed_str()),
        authority: Box::leak(authority.to_owned().into_boxed_str()),
        from_host_header,
    }
}

#[test]
fn services_by_host_header_and_absolute_uri() {
    let get = Method::GET;
    let r = of("/v1", Some("orders"), get.clone());
    assert_eq!(target(&r), Ok(service("orders", "orders", true)));
    let r = of("/v1", Some("Orders:80"), get.clone());
    assert_eq!(target(&r), Ok(service("Orders", "Orders:80", true)));
    // Absolute-form: the URI wins over Host.
    let r = of("http://orders/v1", Some("other"), get.clone());
    assert_eq!(target(&r), Ok(service("orders", "orders", false)));
    // `/healthz` of a service goes to the service.
    let r = of("/healthz", Some("orders"), get);
    assert_eq!(target(&r), Ok(service("orders", "orders", true)));
}

#[test]
fn the_proxy_itself() {
    for host in [
        None,
        Some("127.0.0.1:15001"),
        Some("localhost"),
        Some("[::1]:80"),
    ] {
        assert_eq!(
            target(&of("/healthz", host, Method::GET)),
            Ok(Target::Health)
        );
    }
    assert_eq!(
        target(&of("http://127.0.0.1:15001/healthz", None, Method::HEAD)),
        Ok(Target::Health)
    );
    assert_eq!(
        target(&of("/v1", Some("127.0.0.1:15001"), Method::GET)),
        Err(Refusal::NotService("127.0.0.1:15001"))
    );
    assert!(matches!(
        target(&of("/v1", None, Method::GET)),
        Err(Refusal::Malformed(_))
    ));
}

#[test]
fn refusals() {
    let get = Method::GET;
    for (host, refused) in [
        ("orders:8080", "orders:8080"),
        ("10.0.0.7", "10.0.0.7"),
        ("bad!name", "bad!name"),
    ] {
        assert_eq!(
            target(&of("/", Some(host), get.clone())),
            Err(Refusal::NotService(refused))
        );
    }
    assert!(matches!(
        target(&of("https://orders/", None, get.clone())),
        Err(Refusal::Malformed(_))
    ));
    assert!(matches!(
        target(&of("http://u:p@orders/", None, get.clone())),
        Err(Refusal::Malformed(_))
    ));
    assert_eq!(
        target(&of("orders:80", None, Method::CONNECT)),
        Err(Refusal::Connect)
    );
    let two = Request::get("/")
        .header(HOST, "a")
        .header(HOST, "b")
        .body(())
        .unwrap();
    assert!(matches!(target(&two), Err(Refusal::Malformed(_))));
}

#[test]
fn host_and_port() {
    assert_eq!(split_host_port("a"), ("a", None));
    assert_eq!(split_host_port("a:80"), ("a", Some("80")));
    assert_eq!(split_host_port("[::1]"), ("[::1]", None));
    assert_eq!(split_host_port("[::1]:8"), ("[::1]", Some("8")));
}
