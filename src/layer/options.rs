//! The options of a discovery layer, as its builder sets them, and what
//! they make of an attempt's end.

use std::time::Duration;

use http::header::HeaderName;
use http::StatusCode;

use super::budget::RetryTokens;
use super::outlier::OutlierDetection;
use super::verdict::AttemptRules;
use crate::balance::{Fallback, TagFilter};

/// What `Host` header a discovered request carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostHeader {
    /// `Host: SERVICE`, the logical name (the default), unless the request
    /// already has a `Host` header. Virtual hosts on the instances keep
    /// working as they would behind a load balancer.
    #[default]
    Service,
    /// The instance address: no `Host` is added, so the HTTP client sets it
    /// from the rewritten URI.
    Instance,
}

/// The default failure classifier: the gateway errors 502, 503 and 504
/// (Envoy's `gateway-error`).
pub(crate) fn is_gateway_error(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// The options of a [`DiscoveryLayer`](super::DiscoveryLayer).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub filter: Option<TagFilter>,
    pub fallback: Fallback,
    pub host: HostHeader,
    pub discover_all: bool,
    pub hash_header: Option<HeaderName>,
    pub retries: u32,
    pub outlier: OutlierDetection,
    pub rules: AttemptRules,
    pub budget: RetryTokens,
    /// Name the service in `https` authorities for `ServiceTls`.
    #[cfg(feature = "rustls")]
    pub service_tls: bool,
}

impl Options {
    /// The default attempt timeout: Envoy's route timeout.
    pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
}

impl Default for Options {
    fn default() -> Self {
        Options {
            filter: None,
            fallback: Fallback::Fail,
            host: HostHeader::Service,
            discover_all: false,
            hash_header: None,
            retries: 2,
            outlier: OutlierDetection::new(),
            rules: AttemptRules {
                timeout: Some(Self::ATTEMPT_TIMEOUT),
                is_failure: is_gateway_error,
                retry_lost_connections: true,
            },
            budget: RetryTokens::default(),
            #[cfg(feature = "rustls")]
            service_tls: false,
        }
    }
}
