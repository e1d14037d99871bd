//! reqwest support: flagging and routing reqwest requests.

use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;

use super::error::DiscoveryError;
use super::request::sealed::{Internal, RoutableRequest};
use super::request::{header_key, is_idempotent, set_host, DISCOVER_HEADER};
use super::DiscoverExt;

impl DiscoverExt for reqwest::RequestBuilder {
    fn discover(self) -> Self {
        self.header(DISCOVER_HEADER, HeaderValue::from_static("1"))
    }
}

impl DiscoverExt for reqwest::Request {
    fn discover(mut self) -> Self {
        self.headers_mut()
            .insert(DISCOVER_HEADER, HeaderValue::from_static("1"));
        self
    }
}

impl RoutableRequest for reqwest::Request {
    fn take_flag(&mut self, _: Internal) -> bool {
        self.headers_mut().remove(&DISCOVER_HEADER).is_some()
    }

    fn host(&self, _: Internal) -> Option<&str> {
        self.url().host_str()
    }

    fn named_port(&self, _: Internal) -> Option<String> {
        // `Url::port` is already `None` for the scheme's default.
        self.url().port().map(|port| port.to_string())
    }

    fn uri_string(&self, _: Internal) -> String {
        self.url().to_string()
    }

    fn is_idempotent(&self, _: Internal) -> bool {
        is_idempotent(self.method())
    }

    fn hash_key(&self, header: Option<&HeaderName>, _: Internal) -> Option<u64> {
        header_key(self.headers(), header)
    }

    fn route_to(
        &mut self,
        authority: &Authority,
        _tls_authority: Option<&Authority>,
        host: Option<&HeaderValue>,
        _: Internal,
    ) -> Result<(), DiscoveryError> {
        let fail = |reason: String| DiscoveryError::Rewrite {
            addr: authority.to_string(),
            reason,
        };
        let url = self.url_mut();
        // An address (what instances nearly always register) skips the
        // host parser: `set_ip_host` cost half of `set_host` (callgrind,
        // benches/reqwest_path.rs: 2 434 against 5 384 instructions with
        // the port).
        let name = authority.host();
        let ip = name
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(name)
            .parse::<std::net::IpAddr>();
        match ip {
            Ok(ip) => url
                .set_ip_host(ip)
                .map_err(|()| fail("the URL cannot take a host".into()))?,
            Err(_) => url.set_host(Some(name)).map_err(|e| fail(e.to_string()))?,
        }
        url.set_port(authority.port_u16())
            .map_err(|()| fail("the URL cannot take a port".into()))?;
        let version = self.version();
        set_host(self.headers_mut(), version, host);
        Ok(())
    }

    fn replay(&self, _: Internal) -> Option<Self> {
        self.try_clone()
    }
}
