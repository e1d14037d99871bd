//! The layer's shared state: resolver, balancer, pickers cached per
//! snapshot, passive health. Synchronous on the hit path.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;

use super::attempts::Tried;
use super::error::DiscoveryError;
use super::future::Failure;
use super::health::{Ejection, Health};
use crate::balance::{Balance, Fallback, Pick, TagFilter};
use crate::error::ResolveError;
use crate::instance::ServiceName;
use crate::resolver::{Resolve, Snapshot};

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
    pub ejection: Ejection,
}

impl Options {
    /// Whether a request that failed so may be sent again: a connection
    /// that was never made, or (idempotent requests, if allowed) one lost
    /// before any response.
    pub fn retries_after(&self, failure: Failure, idempotent: bool) -> bool {
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
            ejection: Ejection::default(),
        }
    }
}

/// A picker built for one snapshot (and one tag filter). Kept in the
/// snapshot itself where it can be (so a hit needs no second lookup), so it
/// must not hold the snapshot.
struct Built {
    /// Snapshot indexes of the instances the picker was built over.
    members: Vec<usize>,
    picker: Box<dyn Pick>,
    /// Members with a weight above 0: what "half the instances" means for
    /// ejection.
    usable: usize,
    /// The router's passive health, so an attempt can eject its instance
    /// without holding the router.
    health: Arc<Health>,
}

/// Where a pick's [`Built`] lives.
#[derive(Clone)]
enum BuiltRef {
    /// In the snapshot's slot, under this router id.
    Slot(u64),
    /// In a router-side cache (other routers took all the snapshot's
    /// slots, or the request has its own tag filter).
    Own(Arc<Built>),
}

/// The instance chosen for one attempt of a request: the snapshot and an
/// index into it, so choosing copies nothing.
#[derive(Clone)]
pub(crate) struct Picked {
    snapshot: Snapshot,
    built: BuiltRef,
    index: usize,
    /// [`Built::usable`], copied so the hit path looks the picker up once.
    usable: usize,
    /// Whether the request gets `Host: SERVICE` ([`HostHeader::Service`]).
    service_host: bool,
}

impl Picked {
    fn built(&self) -> Option<&Built> {
        match &self.built {
            BuiltRef::Slot(owner) => self.snapshot.derived_ref::<Built>(*owner),
            BuiltRef::Own(built) => Some(built),
        }
    }

    #[inline]
    pub fn authority(&self) -> &Authority {
        self.snapshot.instances()[self.index].authority()
    }

    /// The `Host` header the request gets, if any.
    #[inline]
    pub fn host(&self) -> Option<&HeaderValue> {
        if self.service_host {
            self.snapshot.host_header()
        } else {
            None
        }
    }

    #[inline]
    pub fn service(&self) -> &ServiceName {
        self.snapshot.service()
    }

    /// How many instances could have been picked (weight above 0).
    #[inline]
    pub fn usable(&self) -> usize {
        self.usable
    }

    /// The snapshot this pick was made from.
    #[inline]
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The instance refused a connection: skip it for a while.
    pub fn eject(&self) {
        if let Some(built) = self.built() {
            built.health.eject(
                self.service().as_str(),
                self.authority().as_str(),
                built.usable,
            );
        }
    }
}

/// The snapshot a [`DiscoveryService`](super::DiscoveryService) routed by
/// last, reused without a resolver lookup for as long as the resolver would
/// still return it (only resolvers that allow it,
/// [`Resolve::may_reuse_cached`], like `RedisResolver`).
///
/// It keeps to its first service until that snapshot is out of date (a
/// changed list, or the service left the resolver's cache after its idle
/// expiry), so requests alternating between services do not churn it. It
/// remembers nothing before its service value's second request: a value
/// cloned for one request (`svc.clone().oneshot(req)`) would only pay to
/// fill it. A clone starts with the original's snapshot.
#[derive(Default)]
pub(crate) struct Memo {
    snapshot: Option<Snapshot>,
    /// This service value has routed a request before.
    served: bool,
}

impl Clone for Memo {
    fn clone(&self) -> Self {
        Memo {
            snapshot: self.snapshot.clone(),
            served: false,
        }
    }
}

impl Memo {
    /// The remembered snapshot of `service`, if still current.
    #[inline]
    fn get(&self, service: &str) -> Option<Snapshot> {
        let snapshot = self.snapshot.as_ref()?;
        if snapshot.service().as_str() != service || !snapshot.still_cached() {
            return None;
        }
        snapshot.mark_used();
        Some(snapshot.clone())
    }

    /// Remembers `found` (what a lookup just found) unless another
    /// service's current snapshot is remembered, or this is the service
    /// value's first request.
    fn offer(&mut self, found: Option<&Snapshot>) {
        let first = !std::mem::replace(&mut self.served, true);
        let Some(snapshot) = found.filter(|_| !first) else {
            return;
        };
        if snapshot.is_linked()
            && self
                .snapshot
                .as_ref()
                .is_none_or(|kept| kept.service() == snapshot.service() || !kept.still_cached())
        {
            self.snapshot = Some(snapshot.clone());
        }
    }
}

/// What one request asks of the router.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PickRequest<'a> {
    pub key: Option<u64>,
    pub filter: Option<&'a TagFilter>,
    pub attempt: u32,
    /// The instances this request was sent to already: a retry goes to
    /// one of the others while one is left.
    pub tried: Option<&'a Tried>,
}

pub(crate) type ResolveFuture =
    Pin<Box<dyn Future<Output = Result<Snapshot, ResolveError>> + Send>>;

/// Object-safe view of the router, so futures need not name the resolver
/// and balancer types.
pub(crate) trait Route: Send + Sync + 'static {
    fn options(&self) -> &Options;
    /// Whether the balancer uses request keys (else they are not computed).
    fn uses_key(&self) -> bool;
    /// The hit path: `None` when the service is not cached. A `memo` (a
    /// service value's) saves the resolver lookup of a service routed by
    /// before.
    fn pick_cached(
        &self,
        service: &str,
        request: PickRequest<'_>,
        memo: Option<&mut Memo>,
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
        match self.pick_cached(failed.service().as_str(), request, None) {
            Some(picked) => picked,
            None => self.pick_from(failed.snapshot().clone(), request),
        }
        .ok()
    }
}

/// Router ids: the owner key of the pickers they keep in snapshots.
static NEXT_ROUTER_ID: AtomicU64 = AtomicU64::new(1);

/// The most pickers kept outside snapshots; beyond, that cache starts over.
const MAX_CACHED_PICKERS: usize = 1024;

type PickerCache<K> = HashMap<K, (Snapshot, Arc<Built>), foldhash::fast::RandomState>;

pub(crate) struct Router<R, B> {
    id: u64,
    resolver: R,
    balance: B,
    options: Options,
    health: Arc<Health>,
    /// Pickers for snapshots whose slots other routers took (more layers
    /// on one resolver than a snapshot has slots): lock-free reads,
    /// copy-on-write.
    shared: ArcSwap<PickerCache<ServiceName>>,
    /// Pickers for requests with their own tag filter (the slow path).
    filtered: Mutex<PickerCache<(ServiceName, TagFilter)>>,
}

impl<R, B> Router<R, B>
where
    R: Resolve,
    B: Balance,
{
    pub fn new(resolver: R, balance: B, options: Options) -> Self {
        Router {
            id: NEXT_ROUTER_ID.fetch_add(1, Ordering::Relaxed),
            resolver,
            balance,
            health: Arc::new(Health::new(options.ejection)),
            options,
            shared: ArcSwap::default(),
            filtered: Mutex::default(),
        }
    }

    /// Whether `filter` is the layer's own (then its picker may live in the
    /// snapshot's slot).
    fn is_layer_filter(&self, filter: &TagFilter) -> bool {
        self.options
            .filter
            .as_ref()
            .is_some_and(|own| std::ptr::eq(filter, own) || filter == own)
    }

    /// The picker for the layer's own filter in the snapshot's slot, unless
    /// other routers took every slot first.
    fn slot<'s>(&self, snapshot: &'s Snapshot) -> Option<&'s Built> {
        let mut fresh = false;
        let slot = snapshot.derived(self.id, || {
            fresh = true;
            self.build(snapshot, self.options.filter.as_ref())
        });
        if fresh && slot.is_some() {
            self.health.retain_listed(
                snapshot.service().as_str(),
                snapshot.instances().iter().map(|i| i.addr()),
            );
        }
        slot
    }

    /// The picker for the layer's own filter when another router owns the
    /// snapshot's slot: from the lock-free shared cache.
    fn built_shared(&self, snapshot: &Snapshot) -> Arc<Built> {
        if let Some((cached, built)) = self.shared.load().get(snapshot.service().as_str()) {
            if Snapshot::ptr_eq(cached, snapshot) {
                return built.clone();
            }
        }
        let built = Arc::new(self.build(snapshot, self.options.filter.as_ref()));
        let service = snapshot.service().clone();
        self.shared.rcu(|cache| {
            let mut cache = PickerCache::clone(cache);
            if cache.len() >= MAX_CACHED_PICKERS {
                cache.clear();
            }
            cache.insert(service.clone(), (snapshot.clone(), built.clone()));
            cache
        });
        built
    }

    /// The picker for a request's own tag filter, cached per (snapshot,
    /// filter) so stateful balancers keep their state.
    fn built_filtered(&self, snapshot: &Snapshot, filter: &TagFilter) -> Arc<Built> {
        let key = (snapshot.service().clone(), filter.clone());
        let mut cache = self.filtered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, built)) = cache.get(&key) {
            if Snapshot::ptr_eq(cached, snapshot) {
                return built.clone();
            }
        }
        let built = Arc::new(self.build(snapshot, Some(filter)));
        if cache.len() >= MAX_CACHED_PICKERS {
            cache.clear();
        }
        cache.insert(key, (snapshot.clone(), built.clone()));
        built
    }

    fn build(&self, snapshot: &Snapshot, filter: Option<&TagFilter>) -> Built {
        let instances = snapshot.instances();
        let mut members: Vec<usize> = match filter {
            Some(f) => (0..instances.len())
                .filter(|&i| f.matches(&instances[i]))
                .collect(),
            None => (0..instances.len()).collect(),
        };
        let weighted = |members: &[usize]| {
            members
                .iter()
                .filter(|&&i| instances[i].weight() > 0)
                .count()
        };
        if weighted(&members) == 0
            && filter.is_some()
            && self.options.fallback == Fallback::AllInstances
        {
            members = (0..instances.len()).collect();
        }
        let usable = weighted(&members);
        let picker: Box<dyn Pick> = if members.len() == instances.len() {
            Box::new(self.balance.build(instances))
        } else {
            let selected: Vec<_> = members.iter().map(|&i| instances[i].clone()).collect();
            Box::new(self.balance.build(&selected))
        };
        Built {
            members,
            picker,
            usable,
            health: self.health.clone(),
        }
    }

    /// Index (into the snapshot) of the instance to use: never one the
    /// request tried already; an ejected one only if nothing else is left.
    fn choose(
        &self,
        snapshot: &Snapshot,
        built: &Built,
        request: PickRequest<'_>,
    ) -> Option<usize> {
        // Nearly always: nothing ejected, nothing tried, one draw.
        if request.tried.is_none() && !self.health.any() {
            let index = built.picker.pick(request.key, request.attempt)?;
            return built.members.get(index).copied();
        }
        let instances = snapshot.instances();
        let service = snapshot.service().as_str();
        // A member's instance; `None` for an index out of range (a picker
        // of one's own may return one).
        let instance = |i: usize| built.members.get(i).and_then(|&m| instances.get(m));
        let untried = |i: usize| {
            instance(i).is_some_and(|instance| {
                request
                    .tried
                    .is_none_or(|tried| !tried.contains(instance.authority()))
            })
        };
        let live = |i: usize| {
            instance(i).is_some_and(|instance| !self.health.is_ejected(service, instance.addr()))
        };
        // The first draw almost always does. Otherwise a few more draws skip
        // ejected and tried instances; then a scan. An ejected instance
        // (it may be back) is better than failing the request.
        let mut ejected = None;
        for attempt in request.attempt..request.attempt.saturating_add(8) {
            match built.picker.pick(request.key, attempt) {
                Some(i) if untried(i) => {
                    if live(i) {
                        return built.members.get(i).copied();
                    }
                    ejected.get_or_insert(i);
                }
                Some(_) => {}
                None => return None,
            }
        }
        let candidate = |&i: &usize| instance(i).is_some_and(|c| c.weight() > 0) && untried(i);
        (0..built.members.len())
            .filter(candidate)
            .find(|&i| live(i))
            .or(ejected)
            .or_else(|| (0..built.members.len()).find(candidate))
            .and_then(|i| built.members.get(i).copied())
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
        memo: Option<&mut Memo>,
    ) -> Option<Result<Picked, DiscoveryError>> {
        let Some(memo) = memo.filter(|_| self.resolver.may_reuse_cached()) else {
            let snapshot = self.resolver.cached(service)?;
            return Some(self.pick_from(snapshot, request));
        };
        let snapshot = match memo.get(service) {
            Some(snapshot) => snapshot,
            None => {
                let found = self.resolver.cached(service);
                memo.offer(found.as_ref());
                found?
            }
        };
        Some(self.pick_from(snapshot, request))
    }

    fn resolve(self: Arc<Self>, service: ServiceName) -> ResolveFuture {
        Box::pin(async move { self.resolver.resolve(&service).await })
    }

    fn pick_from(
        &self,
        snapshot: Snapshot,
        request: PickRequest<'_>,
    ) -> Result<Picked, DiscoveryError> {
        let choose = |built: &Built| {
            self.choose(&snapshot, built, request)
                .map(|index| (index, built.usable))
        };
        let (chosen, built) = match request.filter {
            Some(filter) if !self.is_layer_filter(filter) => {
                let built = self.built_filtered(&snapshot, filter);
                (choose(&built), BuiltRef::Own(built))
            }
            _ => match self.slot(&snapshot) {
                Some(built) => (choose(built), BuiltRef::Slot(self.id)),
                None => {
                    let built = self.built_shared(&snapshot);
                    (choose(&built), BuiltRef::Own(built))
                }
            },
        };
        match chosen {
            Some((index, usable)) => Ok(Picked {
                snapshot,
                built,
                index,
                usable,
                service_host: self.options.host == HostHeader::Service,
            }),
            None => Err(DiscoveryError::NoInstance {
                service: snapshot.service().to_string(),
                filter: request.filter.cloned(),
            }),
        }
    }
}
