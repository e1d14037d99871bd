//! Errors of the discovery layer.

use crate::balance::TagFilter;
use crate::error::{ResolveError, ValidationError};

/// Why a request flagged for discovery could not be routed.
///
/// The layer's error type is tower's `BoxError`; errors of the inner
/// service pass through as they are, and this type can be found with
/// `err.downcast_ref::<DiscoveryError>()`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The service has no instance that may be picked (none registered,
    /// all drained to weight 0, or none matching the tag filter).
    #[error("no live instance of service {service}{}", filter_note(.filter))]
    NoInstance {
        /// The service asked for.
        service: String,
        /// The tag filter in force, if any.
        filter: Option<TagFilter>,
    },
    /// The instances of the service could not be read.
    #[error("cannot resolve service {service}: {source}")]
    Resolve {
        /// The service asked for.
        service: String,
        /// What went wrong.
        #[source]
        source: ResolveError,
    },
    /// The request URI has no host to take the service name from.
    #[error(
        "request flagged for discovery has no host in its URI ({uri}); use http://SERVICE/path"
    )]
    NoHost {
        /// The request URI.
        uri: String,
    },
    /// The request URI names a port. A discovered request goes to the
    /// port its instance registered, so the port would be ignored: the
    /// request is refused instead. The scheme's default port (80 for
    /// `http`, 443 for `https`) counts as none.
    #[error(
        "request for service {service} names port {port} in its URI, but goes to the port its instance registered; remove the port from the URI"
    )]
    PortInUri {
        /// The service asked for.
        service: String,
        /// The port, as written in the URI.
        port: String,
    },
    /// The URI host is not a valid service name.
    #[error(transparent)]
    InvalidService(#[from] ValidationError),
    /// An attempt sent no response headers within the attempt timeout
    /// ([`attempt_timeout`](super::DiscoveryLayerBuilder::attempt_timeout))
    /// and was not retried (the request is not idempotent, its body cannot
    /// be replayed, no other instance is left, or the retry budget is spent).
    #[error("instance {instance} of service {service} sent no response within {timeout:?}")]
    AttemptTimeout {
        /// The service asked for.
        service: String,
        /// The instance that did not answer.
        instance: String,
        /// The attempt timeout.
        timeout: std::time::Duration,
    },
    /// The picked instance could not be put into the request URI.
    #[error("cannot route the request to {addr}: {reason}")]
    Rewrite {
        /// The picked instance.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

fn filter_note(filter: &Option<TagFilter>) -> String {
    match filter {
        Some(f) => format!(" matching tags {f}"),
        None => String::new(),
    }
}
