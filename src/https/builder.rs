//! Building a [`ServiceTls`]: the server name pattern, roots, client
//! certificate.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::server_name::{ServerNamePattern, PLACEHOLDER};
use super::ServiceTls;

/// A bad TLS setting: an invalid server name pattern, certificate or key.
///
/// ```
/// use redis_discovery::https::ServiceTls;
///
/// let error = ServiceTls::builder().server_name("{service} .internal").build();
/// assert!(error.unwrap_err().to_string().contains("server name"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration: {reason}")]
pub struct TlsConfigError {
    reason: String,
}

impl TlsConfigError {
    pub(super) fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Configures a [`ServiceTls`]; from [`ServiceTls::builder`].
///
/// ```
/// use redis_discovery::https::ServiceTls;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let ca = rcgen::generate_simple_self_signed(["ca".to_owned()])?;
/// # let client = rcgen::generate_simple_self_signed(["me".to_owned()])?;
/// # let (ca_pem, cert_pem, key_pem) =
/// #     (ca.cert.pem(), client.cert.pem(), client.signing_key.serialize_pem());
/// let tls = ServiceTls::builder()
///     .server_name("{service}.internal")
///     .root_certificates_pem(ca_pem.as_bytes())?
///     .client_certificate_pem(cert_pem.as_bytes(), key_pem.as_bytes())?
///     .build()?;
/// assert!(tls.client_config().client_auth_cert_resolver.has_certs());
/// # Ok(())
/// # }
/// ```
pub struct ServiceTlsBuilder {
    pattern: String,
    roots: Vec<CertificateDer<'static>>,
    webpki_roots: Option<bool>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Default for ServiceTlsBuilder {
    fn default() -> Self {
        Self {
            pattern: PLACEHOLDER.to_owned(),
            roots: Vec::new(),
            webpki_roots: None,
            client: None,
        }
    }
}

impl fmt::Debug for ServiceTlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTlsBuilder")
            .field("pattern", &self.pattern)
            .field("roots", &self.roots.len())
            .field("webpki_roots", &self.webpki_roots)
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl ServiceTlsBuilder {
    /// The name an instance's certificate must hold: `{service}` is
    /// replaced by the service name (`{service}.internal`: `orders` must
    /// present `orders.internal`); a pattern without it is one name for
    /// every service. Default `{service}`. Checked by
    /// [`build`](Self::build).
    pub fn server_name(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = pattern.into();
        self
    }

    /// Trusts `certificate` (DER) as a root. Custom roots replace
    /// Mozilla's unless [`webpki_roots(true)`](Self::webpki_roots).
    pub fn root_certificate(mut self, certificate: CertificateDer<'static>) -> Self {
        self.roots.push(certificate);
        self
    }

    /// Trusts every certificate in `pem` as a root, as
    /// [`root_certificate`](Self::root_certificate).
    pub fn root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, TlsConfigError> {
        let before = self.roots.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsConfigError::new(format!("root certificate: {e}")))?;
            self.roots.push(cert);
        }
        if self.roots.len() == before {
            return Err(TlsConfigError::new(
                "root certificates: no certificate in the PEM",
            ));
        }
        Ok(self)
    }

    /// Whether to trust Mozilla's roots (the `webpki-roots` crate). Default:
    /// only when no custom root is given.
    pub fn webpki_roots(mut self, trust: bool) -> Self {
        self.webpki_roots = Some(trust);
        self
    }

    /// The client certificate (mTLS): its chain, leaf first, and its key.
    pub fn client_certificate(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.client = Some((chain, key));
        self
    }

    /// The client certificate (mTLS) from PEM: the chain, leaf first, and
    /// the key (PKCS#8, PKCS#1 or SEC1).
    pub fn client_certificate_pem(
        self,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TlsConfigError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsConfigError::new(format!("client certificate: {e}")))?;
        if chain.is_empty() {
            return Err(TlsConfigError::new(
                "client certificate: no certificate in the PEM",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsConfigError::new(format!("client key: {e}")))?;
        Ok(self.client_certificate(chain, key))
    }

    /// Checks the settings and builds the rustls configuration, with the
    /// process's default crypto provider if one is installed, else ring's.
    pub fn build(self) -> Result<ServiceTls, TlsConfigError> {
        let pattern = ServerNamePattern::new(&self.pattern).map_err(TlsConfigError::new)?;
        let mut roots = RootCertStore::empty();
        if self.webpki_roots.unwrap_or(self.roots.is_empty()) {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in self.roots {
            roots
                .add(cert)
                .map_err(|e| TlsConfigError::new(format!("root certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(TlsConfigError::new("no root certificate to trust"));
        }
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::new(e.to_string()))?
            .with_root_certificates(roots);
        let config = match self.client {
            None => config.with_no_client_auth(),
            Some((chain, key)) => config
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsConfigError::new(format!("client certificate: {e}")))?,
        };
        Ok(ServiceTls {
            config: Arc::new(config),
            pattern,
        })
    }
}
