//! The options of a discovery layer, as its builder sets them.

use http::header::HeaderName;

use super::failure::Failure;
use super::outlier::OutlierDetection;
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

/// The options of a [`DiscoveryLayer`](super::DiscoveryLayer).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub filter: Option<TagFilter>,
    pub fallback: Fallback,
    pub host: HostHeader,
    pub discover_all: bool,
    pub hash_header: Option<HeaderName>,
    pub retries: u32,
    pub retry_lost_connections: bool,
    pub outlier: OutlierDetection,
}

impl Options {
    /// Whether a request that failed so may be sent again: a connection
    /// that was never made, or (idempotent requests, if allowed) one lost
    /// before any response.
    pub(crate) fn retries_after(&self, failure: Failure, idempotent: bool) -> bool {
        match failure {
            Failure::Connect => true,
            Failure::ConnectionLost => idempotent && self.retry_lost_connections,
            Failure::Other => false,
        }
    }
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
            retry_lost_connections: true,
            outlier: OutlierDetection::new(),
        }
    }
}
