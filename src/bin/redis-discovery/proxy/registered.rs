//! Whether a host is a registered service: what keeps the proxy from
//! being an open proxy.
//!
//! A host is a service when the resolver holds live instances of it (the
//! hot path: a lock-free cache read), or when the registry lists it
//! (`RedisResolver::services`: a service that has had instances, even with
//! none live now, so that it gets 503 rather than 403). The listing is
//! read at most once per [`FRESH`], by one request at a time, so a flood
//! of made-up hosts costs Redis one listing a second and the proxy one set
//! of names, bounded by [`MAX_NAMES`]. A service registered a moment ago
//! is known within [`FRESH`].

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis_discovery::resolver::{RedisResolver, Resolve};

/// How long a listing answers for hosts it does not hold.
pub(crate) const FRESH: Duration = Duration::from_secs(1);
/// The most names kept from a listing.
const MAX_NAMES: usize = 100_000;

/// Whether a host is a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Service,
    NotService,
    /// The registry could not be listed (Redis unreachable).
    Unknown,
}

/// The registry's services, as last listed.
pub(crate) struct Registered {
    resolver: RedisResolver,
    listing: Mutex<Listing>,
    /// Held while listing: one listing at a time.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Listing {
    /// Lowercase names.
    names: HashSet<String>,
    read_at: Option<Instant>,
    failed: bool,
}

impl Registered {
    pub(crate) fn new(resolver: RedisResolver) -> Self {
        Registered {
            resolver,
            listing: Mutex::default(),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether `host` (a valid service name) is a service.
    ///
    /// Cancel safety: dropping the future while it lists leaves the
    /// listing as it was (the next caller lists again) and frees the turn.
    pub(crate) async fn knows(&self, host: &str) -> Known {
        if self.resolver.cached(host).is_some_and(|s| !s.is_empty()) {
            return Known::Service;
        }
        let name = host.to_ascii_lowercase();
        if let Some(known) = self.listed_answer(&name) {
            return known;
        }
        let _turn = self.reading.lock().await;
        // Another request may have listed while this one waited.
        if let Some(known) = self.listed_answer(&name) {
            return known;
        }
        let listed = self.resolver.services().await;
        let mut listing = self.lock();
        listing.read_at = Some(Instant::now());
        match listed {
            Ok(names) => {
                if names.len() > MAX_NAMES {
                    tracing::warn!(
                        services = names.len(),
                        "the registry lists more than {MAX_NAMES} services; the proxy knows the first {MAX_NAMES}"
                    );
                }
                listing.names = names
                    .into_iter()
                    .take(MAX_NAMES)
                    .map(|n| n.to_ascii_lowercase())
                    .collect();
                listing.failed = false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the registry's services");
                listing.failed = true;
            }
        }
        answer(&listing, &name)
    }

    /// The answer of a fresh listing; `None` if it must be read again.
    fn listed_answer(&self, name: &str) -> Option<Known> {
        let listing = self.lock();
        let fresh = listing.read_at.is_some_and(|at| at.elapsed() < FRESH);
        (fresh || listing.names.contains(name)).then(|| answer(&listing, name))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Listing> {
        self.listing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn answer(listing: &Listing, name: &str) -> Known {
    if listing.names.contains(name) {
        Known::Service
    } else if listing.failed {
        Known::Unknown
    } else {
        Known::NotService
    }
}
