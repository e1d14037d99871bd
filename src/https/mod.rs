//! HTTPS and mTLS to discovered instances (feature `rustls`): a connector
//! for hyper-util's client that checks an instance's certificate against
//! its service's name, not against the address the request went to.
//!
//! ```
//! use http_body_util::Empty;
//! use hyper::body::Bytes;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use redis_discovery::https::ServiceTls;
//! use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
//! use redis_discovery::resolver::StaticResolver;
//! use redis_discovery::Instance;
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let ca_pem = rcgen::generate_simple_self_signed(["ca".to_owned()])?.cert.pem();
//! // Instances of `orders` hold certificates for `orders.internal`, issued
//! // by the CA in `ca_pem`; a client certificate is optional.
//! let tls = ServiceTls::builder()
//!     .server_name("{service}.internal")
//!     .root_certificates_pem(ca_pem.as_bytes())?
//!     .build()?;
//! let resolver = StaticResolver::new()
//!     .with_service("orders", [Instance::new("10.0.0.7:8443")?])?;
//! let client = DiscoveryLayer::builder(resolver).service_tls(true).build().layer(
//!     Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(tls.connector()),
//! );
//! // Connects to 10.0.0.7:8443 and expects a certificate for `orders.internal`.
//! let request = http::Request::get("https://orders/v1/items")
//!     .discover()
//!     .body(Empty::<Bytes>::new())?;
//! # let _ = (client, request);
//! # Ok(())
//! # }
//! ```
//!
//! # How the service name reaches the connector
//!
//! hyper-util's client hands its connector only the URI, and keys its
//! connection pool on the URI's scheme and authority. The layer rewrites
//! the authority to the instance's address, so by the time the connector
//! runs the service name is gone. With this feature, the layer writes an
//! `https` request's authority as `SERVICE@HOST:PORT`
//! (`https://~orders@10.0.0.7:8443/v1/items`, when the layer is built with `service_tls(true)`), a change behind the feature
//! and for `https` URIs of `http::Request` only:
//! - the pool key is that whole authority, so connections are pooled per
//!   instance (and service), never shared between instances;
//! - hyper-util's `HttpConnector` dials the URI's host and port and
//!   ignores the user info;
//! - this connector (hyper-rustls's, with a server-name hook) reads the
//!   service back from the user info and checks the certificate against
//!   the name the [pattern](ServiceTlsBuilder::server_name) gives;
//! - the `Host` header is the service name as before (the layer sets it;
//!   an HTTP/1 request line carries only the path).
//!
//! Why not another way: request extensions never reach a hyper-util
//! connector. A per-instance resolver needs a made-up host name per
//! instance (`orders.10-0-0-7.8443`), which rustls would then send as SNI
//! and check, so it takes a custom verifier as well; a client per service
//! loses the one client the layer wraps. The user info is the one part of
//! a URI that the client keeps in its pool key and that no part of the
//! connection uses. The TLS handshake sends the checked name
//! (`orders.internal`) as SNI, so servers that pick a certificate by SNI
//! work.
//!
//! Limits: HTTP/1 only. hyper's HTTP/2 sends the URI authority as
//! `:authority`, user info included, so the connector takes `h2` out of
//! ALPN (of a [`ServiceTls::with_client_config`] configuration too).
//! reqwest cannot use it: reqwest takes no TLS connector (its
//! `connector_layer` wraps a connector that already did TLS) and checks
//! the certificate against the URL's host; its requests are routed as
//! before, to the address.
//!
//! # Trust
//!
//! Root certificates: Mozilla's, from the `webpki-roots` crate (the same on
//! every machine, no system store read) unless custom roots are given,
//! which then replace them ([`webpki_roots`](ServiceTlsBuilder::webpki_roots)
//! adds them back). For the platform's verifier or any other rustls setup,
//! build the `rustls::ClientConfig` yourself:
//! [`ServiceTls::with_client_config`].
//!
//! # Failures
//!
//! A certificate that does not name the service fails the connection:
//! the request's error (hyper-util's connect error) has the rustls error
//! in its source chain (`invalid peer certificate: certificate not valid
//! for name "orders.internal"; certificate is only valid for …`). The layer
//! counts it as a connect failure of that instance: the request is retried
//! on another instance within [`retries`](crate::layer::DiscoveryLayerBuilder::retries)
//! and the retry budget, never on the same instance twice, and the
//! instance counts toward its ejection.

mod builder;
mod server_name;

use std::fmt;
use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::ClientConfig;

pub use self::builder::{ServiceTlsBuilder, TlsConfigError};
pub(crate) use self::server_name::{service_authority, InvalidServerName};
use self::server_name::{ServerNamePattern, ServiceNameResolver};

/// TLS to discovered instances: a rustls client configuration and the
/// name each instance's certificate must hold. Makes hyper-util
/// connectors; cheap to clone.
///
/// ```
/// use redis_discovery::https::ServiceTls;
///
/// # fn main() -> Result<(), redis_discovery::https::TlsConfigError> {
/// // Mozilla's roots; instances of `orders` present `orders.svc.cluster.local`.
/// let tls = ServiceTls::builder()
///     .server_name("{service}.svc.cluster.local")
///     .build()?;
/// let connector = tls.connector();
/// # let _ = connector;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ServiceTls {
    config: Arc<ClientConfig>,
    pattern: ServerNamePattern,
}

impl ServiceTls {
    /// Starts a configuration: server name `{service}`, Mozilla's roots,
    /// no client certificate.
    pub fn builder() -> ServiceTlsBuilder {
        ServiceTlsBuilder::default()
    }

    /// Uses a rustls configuration built elsewhere (the platform's verifier,
    /// a custom verifier, other protocol versions) with the name
    /// `pattern` gives (`{service}` is replaced by the service name).
    ///
    /// ```
    /// use redis_discovery::https::ServiceTls;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = rustls::crypto::ring::default_provider();
    /// let config = rustls::ClientConfig::builder_with_provider(provider.into())
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(rustls::RootCertStore::empty())
    ///     .with_no_client_auth();
    /// let tls = ServiceTls::with_client_config(config, "{service}.internal")?;
    /// # let _ = tls;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_client_config(config: ClientConfig, pattern: &str) -> Result<Self, TlsConfigError> {
        let pattern = ServerNamePattern::new(pattern).map_err(TlsConfigError::new)?;
        Ok(Self {
            config: Arc::new(config),
            pattern,
        })
    }

    /// A connector for `hyper_util::client::legacy::Client`: `https` URIs
    /// over TLS checked against the service's name (or, for a URI the
    /// layer did not route, its host), `http` URIs in plain text.
    ///
    /// ```
    /// use http_body_util::Empty;
    /// use hyper::body::Bytes;
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use redis_discovery::https::ServiceTls;
    ///
    /// # fn main() -> Result<(), redis_discovery::https::TlsConfigError> {
    /// let tls = ServiceTls::builder().build()?;
    /// let client = Client::builder(TokioExecutor::new())
    ///     .build::<_, Empty<Bytes>>(tls.connector());
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connector(&self) -> HttpsConnector<HttpConnector> {
        let mut http = HttpConnector::new();
        // The TLS wrapper, not the TCP connector, decides about the scheme.
        http.enforce_http(false);
        self.wrap_connector(http)
    }

    /// Like [`connector`](Self::connector) over a TCP connector of your
    /// own (timeouts, keepalive, a custom resolver). It must not refuse
    /// `https` URIs (`HttpConnector::enforce_http(false)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hyper_util::client::legacy::connect::HttpConnector;
    /// use redis_discovery::https::ServiceTls;
    ///
    /// # fn main() -> Result<(), redis_discovery::https::TlsConfigError> {
    /// let mut http = HttpConnector::new();
    /// http.enforce_http(false);
    /// http.set_connect_timeout(Some(Duration::from_secs(2)));
    /// let connector = ServiceTls::builder().build()?.wrap_connector(http);
    /// # let _ = connector;
    /// # Ok(())
    /// # }
    /// ```
    pub fn wrap_connector<H>(&self, http: H) -> HttpsConnector<H> {
        let mut config = ClientConfig::clone(&self.config);
        // HTTP/2 would send the user info in `:authority` (module docs).
        // hyper-rustls sets ALPN itself (and asserts none is set): HTTP/1.
        config.alpn_protocols.clear();
        HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .with_server_name_resolver(ServiceNameResolver {
                pattern: self.pattern.clone(),
            })
            .enable_http1()
            .wrap_connector(http)
    }

    /// The rustls configuration in use.
    ///
    /// ```
    /// use redis_discovery::https::ServiceTls;
    ///
    /// # fn main() -> Result<(), redis_discovery::https::TlsConfigError> {
    /// let tls = ServiceTls::builder().build()?;
    /// assert!(!tls.client_config().client_auth_cert_resolver.has_certs());
    /// # Ok(())
    /// # }
    /// ```
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

impl fmt::Debug for ServiceTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration holds the client key: not printed.
        f.debug_struct("ServiceTls")
            .field("pattern", &self.pattern)
            .field(
                "client_certificate",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
