//! HTTPS and mTLS through the discovery layer (feature `rustls`):
//! certificates made here, real TLS servers on loopback ports.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use redis_discovery::https::ServiceTls;
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tower::{BoxError, Layer, ServiceExt};

/// Generous: a request that does not end by then is retried endlessly.
const DEADLINE: Duration = Duration::from_secs(30);

/// A test CA, issuing server and client certificates.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A certificate and its key, as DER and PEM.
struct Leaf {
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pem: String,
    key_pem: String,
}

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "redis-discovery test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn server(&self, name: &str) -> Leaf {
        self.issue(name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client(&self, name: &str) -> Leaf {
        self.issue(name, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// An HTTPS server on a free loopback port: answers `NAME PATH HOST`;
/// counts the TCP connections it accepted and the handshakes it refused.
struct TlsServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl TlsServer {
    async fn start(name: &'static str, leaf: &Leaf, clients_from: Option<&TestCa>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients_from {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der.clone()).unwrap();
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::Pkcs8(leaf.key.clone_key()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let refused = Arc::new(AtomicUsize::new(0));
        let refusals = refused.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let refusals = refusals.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        refusals.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let answer = hyper::service::service_fn(|req: http::Request<_>| async move {
                        let host = req.headers().get("host").cloned();
                        let text = format!("{name} {} {host:?}", req.uri());
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), answer)
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            refused,
        }
    }

    fn instance(&self) -> Instance {
        Instance::new(self.addr.to_string()).unwrap()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until the server has refused `n` handshakes in all.
    async fn refused(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.refused.load(Ordering::SeqCst) < n {
            assert!(tokio::time::Instant::now() < deadline, "{n} refusals");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

type LayeredClient = redis_discovery::layer::DiscoveryService<
    Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Empty<Bytes>,
    >,
>;

fn client(tls: &ServiceTls, instances: impl IntoIterator<Item = Instance>) -> LayeredClient {
    let resolver = StaticResolver::new()
        .with_service("orders", instances)
        .unwrap();
    let http = Client::builder(TokioExecutor::new()).build(tls.connector());
    DiscoveryLayer::builder(resolver)
        .service_tls(true)
        .build()
        .layer(http)
}

/// Sends `GET https://orders/v1/items` through the layer; the body, or the
/// error with its whole source chain.
async fn get(client: &LayeredClient) -> Result<String, String> {
    let request = http::Request::get("https://orders/v1/items")
        .discover()
        .body(Empty::<Bytes>::new())
        .unwrap();
    let sent = tokio::time::timeout(DEADLINE, client.clone().oneshot(request))
        .await
        .expect("the request ended");
    match sent {
        Ok(response) => {
            let body = response.into_body().collect().await.map_err(chain_of)?;
            Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
        }
        Err(e) => Err(chain_of(e)),
    }
}

fn chain_of(error: impl Into<BoxError>) -> String {
    let error = error.into();
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn tls_trusting(ca: &TestCa) -> redis_discovery::https::ServiceTlsBuilder {
    ServiceTls::builder()
        .server_name("{service}.internal")
        .root_certificates_pem(ca.pem.as_bytes())
        .unwrap()
}

#[tokio::test]
async fn calls_reach_every_instance_verified_by_the_service_name() {
    let ca = TestCa::new();
    let cert = ca.server("orders.internal");
    let a = TlsServer::start("a", &cert, None).await;
    let b = TlsServer::start("b", &cert, None).await;
    let client = client(
        &tls_trusting(&ca).build().unwrap(),
        [a.instance(), b.instance()],
    );

    let mut seen = Vec::new();
    for _ in 0..40 {
        let body = get(&client).await.unwrap();
        assert!(body.ends_with(r#" /v1/items Some("orders")"#), "{body}");
        seen.push(body);
    }
    // Pooled per instance: a connection to one never carries the other's
    // requests, so both answer; and connections are reused.
    assert!(seen.iter().any(|b| b.starts_with("a ")), "{seen:?}");
    assert!(seen.iter().any(|b| b.starts_with("b ")), "{seen:?}");
    assert!(
        a.connections() + b.connections() < 40,
        "{} + {}",
        a.connections(),
        b.connections()
    );

    // Without the layer the certificate is checked against the address.
    let plain = Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(tls_trusting(&ca).build().unwrap().connector());
    let direct = format!("https://{}/", a.addr).parse::<http::Uri>().unwrap();
    let error = plain.get(direct).await.unwrap_err();
    assert!(chain_of(error).contains("certificate not valid for name"));
}

#[tokio::test]
async fn a_certificate_for_another_service_is_refused_without_endless_retries() {
    let ca = TestCa::new();
    let cert = ca.server("payments.internal");
    let a = TlsServer::start("a", &cert, None).await;
    let b = TlsServer::start("b", &cert, None).await;
    let client = client(
        &tls_trusting(&ca).build().unwrap(),
        [a.instance(), b.instance()],
    );

    for round in 1..=3 {
        let error = get(&client).await.unwrap_err();
        assert!(
            error.contains(r#"certificate not valid for name "orders.internal""#),
            "{error}"
        );
        // Each request tries each instance at most once.
        let tried = a.connections() + b.connections();
        assert!(
            tried <= 2 * round,
            "{tried} connections after {round} requests"
        );
    }
}

#[tokio::test]
async fn mtls_accepts_the_configured_client_certificate_only() {
    let ca = TestCa::new();
    let server = TlsServer::start("a", &ca.server("orders.internal"), Some(&ca)).await;
    let me = ca.client("checkout");

    let with_cert = tls_trusting(&ca)
        .client_certificate_pem(me.pem.as_bytes(), me.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let body = get(&client(&with_cert, [server.instance()])).await.unwrap();
    assert!(body.starts_with("a /v1/items"), "{body}");

    let without = tls_trusting(&ca).build().unwrap();
    let error = get(&client(&without, [server.instance()]))
        .await
        .unwrap_err();
    // TLS 1.3: the client's side of the handshake is done before the server
    // checks its certificate, so the refusal comes as an alert (or, had the
    // request already reached the server, a reset) on the first read.
    assert!(
        ["CertificateRequired", "reset", "closed"]
            .iter()
            .any(|why| error.contains(why)),
        "{error}"
    );
    server.refused(1).await;

    // A certificate from another CA is refused too.
    let stranger = TestCa::new().client("checkout");
    let other = tls_trusting(&ca)
        .client_certificate(vec![stranger.der], PrivateKeyDer::Pkcs8(stranger.key))
        .build()
        .unwrap();
    assert!(get(&client(&other, [server.instance()])).await.is_err());
    server.refused(2).await;
}
