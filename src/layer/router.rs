//! The layer's shared state: resolver, balancer, picker cache, outlier
//! state. Synchronous on the hit path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::HeaderValue;

use super::error::DiscoveryError;
use super::options::{HostHeader, Options};
use super::outlier::Outliers;
use super::pick::{pick, PickRequest, Picked};
use super::picker_cache::{PickerCache, PickerEntry};
use crate::balance::{Balance, Fallback, Pick, TagFilter};
use crate::error::ResolveError;
use crate::instance::ServiceName;
use crate::resolver::{Resolve, Snapshot};

pub(crate) type ResolveFuture =
    Pin<Box<dyn Future<Output = Result<Snapshot, ResolveError>> + Send>>;

/// Object-safe view of the router, so futures need not name the resolver
/// and balancer types.
pub(crate) trait Route: Send + Sync + 'static {
    fn options(&self) -> &Options;
    /// Whether the balancer uses request keys (else they are not computed).
    fn uses_key(&self) -> bool;
    /// The hit path: `None` when the service is not cached. The resolver
    /// is not asked while the cached entry's snapshot is current (see
    /// [`PickerEntry::current_without_lookup`]).
    fn pick_cached(
        &self,
        service: &str,
        request: PickRequest<'_>,
    ) -> Option<Result<Picked, DiscoveryError>>;
    /// The miss path: one (single-flight) resolve.
    fn resolve(self: Arc<Self>, service: ServiceName) -> ResolveFuture;
    fn pick_from(
        &self,
        snapshot: Snapshot,
        request: PickRequest<'_>,
    ) -> Result<Picked, DiscoveryError>;

    /// The instance for a retry of the attempt sent to `failed`: from the
    /// current snapshot, or from the failed attempt's when the resolver
    /// has no cache. `None` when every instance was tried.
    fn pick_retry(&self, request: PickRequest<'_>, failed: &Picked) -> Option<Picked> {
        match self.pick_cached(failed.service().as_str(), request) {
            Some(picked) => picked,
            None => self.pick_from(failed.snapshot().clone(), request),
        }
        .ok()
    }
}

pub(crate) struct Router<R, B> {
    resolver: R,
    balance: B,
    options: Options,
    outliers: Outliers,
    pickers: PickerCache,
}

impl<R, B> Router<R, B>
where
    R: Resolve,
    B: Balance,
{
    pub(super) fn new(resolver: R, balance: B, options: Options) -> Self {
        Router {
            resolver,
            balance,
            outliers: Outliers::new(options.outlier),
            options,
            pickers: PickerCache::default(),
        }
    }

    /// The request's own tag filter: `None` when it has none or it is the
    /// layer's (whose pickers are kept under the service alone).
    #[inline]
    fn own_filter<'f>(&self, filter: Option<&'f TagFilter>) -> Option<&'f TagFilter> {
        let filter = filter?;
        let layer_filter = self
            .options
            .filter
            .as_ref()
            .is_some_and(|own| std::ptr::eq(filter, own) || filter == own);
        (!layer_filter).then_some(filter)
    }

    /// The entry for `snapshot` and the request's own `filter`: the cached
    /// one if it was built for this snapshot, else a new one.
    fn entry_for(&self, snapshot: Snapshot, filter: Option<&TagFilter>) -> Arc<PickerEntry> {
        match self.pickers.get(snapshot.service().as_str(), filter) {
            Some(entry) if Snapshot::ptr_eq(&entry.snapshot, &snapshot) => entry,
            _ => {
                let inserted = self.pickers.insert(filter, self.build(snapshot, filter));
                if inserted.stored && !inserted.entry.is_retired() {
                    // A new current list (whatever the filter, the snapshot
                    // is the service's): forget the instances no longer
                    // listed (not for an older list, which would forget
                    // newer ejections).
                    let instances = inserted.entry.snapshot.instances();
                    let listed = instances.iter().map(|i| i.addr());
                    let usable = instances.iter().filter(|i| i.weight() > 0).count();
                    let read_at = inserted.entry.snapshot.read_at();
                    inserted
                        .entry
                        .outliers
                        .retain_listed(listed, usable, read_at);
                }
                inserted.entry
            }
        }
    }

    fn build(&self, snapshot: Snapshot, own_filter: Option<&TagFilter>) -> PickerEntry {
        let filter = own_filter.or(self.options.filter.as_ref());
        let instances = snapshot.instances();
        let mut members: Vec<usize> = match filter {
            Some(f) => (0..instances.len())
                .filter(|&i| f.matches(&instances[i]))
                .collect(),
            None => (0..instances.len()).collect(),
        };
        if filter.is_some()
            && self.options.fallback == Fallback::AllInstances
            && members.iter().all(|&i| instances[i].weight() == 0)
        {
            members = (0..instances.len()).collect();
        }
        let picker: Box<dyn Pick> = if members.len() == instances.len() {
            Box::new(self.balance.build(instances))
        } else {
            let selected: Vec<_> = members.iter().map(|&i| instances[i].clone()).collect();
            Box::new(self.balance.build(&selected))
        };
        // A service name is always a valid header value.
        let host = (self.options.host == HostHeader::Service)
            .then(|| HeaderValue::from_str(snapshot.service().as_str()).ok())
            .flatten();
        let outliers = self.outliers.service(snapshot.service());
        let ewma = self.balance.peak_ewma();
        let entry = PickerEntry::new(snapshot, members, picker, outliers, ewma, host);
        #[cfg(feature = "rustls")]
        let entry = if self.options.service_tls {
            entry.with_service_tls()
        } else {
            entry
        };
        entry
    }

    fn pick_in(
        &self,
        entry: Arc<PickerEntry>,
        request: PickRequest<'_>,
    ) -> Result<Picked, DiscoveryError> {
        pick(entry, request).map_err(|entry| DiscoveryError::NoInstance {
            service: entry.snapshot.service().to_string(),
            filter: request.filter.cloned(),
        })
    }
}

impl<R, B> Route for Router<R, B>
where
    R: Resolve,
    B: Balance,
{
    fn options(&self) -> &Options {
        &self.options
    }

    fn uses_key(&self) -> bool {
        self.balance.uses_key()
    }

    fn pick_cached(
        &self,
        service: &str,
        request: PickRequest<'_>,
    ) -> Option<Result<Picked, DiscoveryError>> {
        let filter = self.own_filter(request.filter);
        let cached = self.pickers.get(service, filter);
        let entry = match cached {
            Some(entry) if entry.current_without_lookup() => entry,
            cached => {
                let snapshot = self.resolver.cached(service)?;
                match cached {
                    Some(entry) if Snapshot::ptr_eq(&entry.snapshot, &snapshot) => {
                        entry.returned_by_cached();
                        entry
                    }
                    _ => self.entry_for(snapshot, filter),
                }
            }
        };
        Some(self.pick_in(entry, request))
    }

    fn resolve(self: Arc<Self>, service: ServiceName) -> ResolveFuture {
        Box::pin(async move { self.resolver.resolve(&service).await })
    }

    fn pick_from(
        &self,
        snapshot: Snapshot,
        request: PickRequest<'_>,
    ) -> Result<Picked, DiscoveryError> {
        let entry = self.entry_for(snapshot, self.own_filter(request.filter));
        self.pick_in(entry, request)
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::Router;
    use crate::balance::RoundRobin;
    use crate::instance::{Instance, ServiceName};
    use crate::resolver::{CacheLink, Snapshot, StaticResolver, UseFlag};

    fn linked(addrs: &[&str]) -> Snapshot {
        let name = ServiceName::new("orders").unwrap();
        let instances = addrs.iter().map(|a| Instance::new(*a).unwrap()).collect();
        let link = CacheLink::new(UseFlag::new(true), None);
        Snapshot::cached_at(name, instances, Instant::now(), link)
    }

    #[tokio::test]
    async fn an_older_list_neither_replaces_the_current_one_nor_forgets_ejections() {
        let router = Router::new(StaticResolver::new(), RoundRobin::new(), Default::default());
        let older = linked(&["a:1", "b:1", "c:1"]);
        router.entry_for(older.clone(), None);
        older.retire();
        let current = linked(&["a:1", "b:1", "c:1", "d:1"]);
        let kept = router.entry_for(current.clone(), None);
        let refused = crate::layer::pick::Outcome::Refused;
        let (d, states) = (&kept.states[3], &kept.states);
        kept.outliers.record(d, refused, "d:1", states, 4);
        let now_ms = || kept.outliers.now_ms(Instant::now());
        // A late resolve answered with the older list.
        let late = router.entry_for(older.clone(), None);
        assert!(Snapshot::ptr_eq(&late.snapshot, &older));
        assert!(late.outliers.is_ejected(d, now_ms()), "ejection kept");
        assert!(std::sync::Arc::ptr_eq(&late.states[2], &kept.states[2]));
        let found = router.entry_for(current, None);
        assert!(std::sync::Arc::ptr_eq(&found, &kept));
    }
}
