//! How the service name travels from the layer to the TLS handshake: as
//! the user info of the routed URI (`https://~orders@10.0.0.7:8443/…`),
//! written by a layer built with `service_tls(true)`.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use http::uri::{Authority, Uri};
use hyper_rustls::ResolveServerName;
use rustls::pki_types::ServerName;

use crate::instance::ServiceName;

/// The placeholder a [`ServerNamePattern`] replaces with the service name.
pub(crate) const PLACEHOLDER: &str = "{service}";

/// What marks a service in the user info of a URI the layer routed: a
/// character no service name has, so ordinary user info
/// (`https://user:secret@host/`) is never taken for one.
const MARK: char = '~';

/// The authority the layer writes for an `https` request routed to
/// `instance` of `service` with `ServiceTls`: `~SERVICE@HOST:PORT`.
/// hyper-util's pool keys on the whole authority, so connections stay per
/// instance (and service); its connector dials the host and port, ignoring
/// the user info; the connector here reads the service back from it. An
/// instance whose authority cannot take it keeps its own.
pub(crate) fn service_authority(service: &ServiceName, instance: &Authority) -> Authority {
    // A service name's characters are all allowed in user info.
    Authority::try_from(format!("{MARK}{service}@{instance}")).unwrap_or_else(|_| instance.clone())
}

/// The service an `https` URI routed by the layer names in its user info;
/// `None` for any other user info.
pub(crate) fn service_of(uri: &Uri) -> Option<&str> {
    let (info, _) = uri.authority()?.as_str().rsplit_once('@')?;
    let service = info.strip_prefix(MARK)?;
    ServiceName::validate(service).ok().map(|()| service)
}

/// The name an instance's certificate must hold, from its service's name:
/// `{service}` (the default) or a pattern such as `{service}.internal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerNamePattern {
    /// Before and after the placeholder; `None`: a fixed name.
    parts: Option<(Arc<str>, Arc<str>)>,
    fixed: Arc<str>,
}

impl ServerNamePattern {
    /// Checks the pattern once: at most one `{service}`, and a valid DNS
    /// name for a sample service.
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        let parts = match pattern.split_once(PLACEHOLDER) {
            Some((_, after)) if after.contains(PLACEHOLDER) => {
                return Err(format!("{pattern:?} names {PLACEHOLDER} more than once"))
            }
            Some((before, after)) => Some((Arc::from(before), Arc::from(after))),
            None => None,
        };
        let this = Self {
            parts,
            fixed: Arc::from(pattern),
        };
        this.name_for("service")
            .map(|_| this.clone())
            .map_err(|e| format!("{pattern:?} is no server name pattern: {e}"))
    }

    /// The server name for `service`.
    pub(crate) fn name_for(&self, service: &str) -> Result<ServerName<'static>, InvalidServerName> {
        let name = match &self.parts {
            Some((before, after)) => format!("{before}{service}{after}"),
            None => self.fixed.to_string(),
        };
        ServerName::try_from(name.as_str())
            .map(|n| n.to_owned())
            .map_err(|_| InvalidServerName { name })
    }
}

/// A service whose pattern gives no valid DNS name or IP address.
#[derive(Debug)]
pub(crate) struct InvalidServerName {
    name: String,
}

impl fmt::Display for InvalidServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a valid TLS server name", self.name)
    }
}

impl StdError for InvalidServerName {}

/// hyper-rustls's hook: the server name from the URI's service, or its
/// host for a URI the layer did not route (a plain `https://host/`).
#[derive(Debug)]
pub(crate) struct ServiceNameResolver {
    pub(crate) pattern: ServerNamePattern,
}

impl ResolveServerName for ServiceNameResolver {
    fn resolve(&self, uri: &Uri) -> Result<ServerName<'static>, Box<dyn StdError + Sync + Send>> {
        if let Some(service) = service_of(uri) {
            return Ok(self.pattern.name_for(service)?);
        }
        let host = uri.host().unwrap_or_default();
        // An IPv6 literal is bracketed in a URI, never in a server name.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        ServerName::try_from(host)
            .map(|n| n.to_owned())
            .map_err(|_| {
                InvalidServerName {
                    name: host.to_owned(),
                }
                .into()
            })
    }
}
