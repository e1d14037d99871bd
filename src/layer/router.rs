//! The layer's shared state: resolver, balancer, pickers cached per
//! snapshot, passive health. Synchronous on the hit path.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;

use super::error::DiscoveryError;
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

/// A picker built for one snapshot (and one tag filter).
struct Built {
    snapshot: Snapshot,
    /// Snapshot indexes of the instances the picker was built over.
    members: Vec<usize>,
    picker: Box<dyn Pick>,
    /// `Host: SERVICE`, or `None` under [`HostHeader::Instance`].
    host: Option<HeaderValue>,
    /// Members with a weight above 0: what "half the instances" means for
    /// ejection.
    usable: usize,
}

/// The instance chosen for one attempt of a request: a reference into the
/// snapshot's picker state, so choosing copies nothing.
#[derive(Clone)]
pub(crate) struct Picked {
    built: Arc<Built>,
    index: usize,
}

impl Picked {
    pub fn authority(&self) -> &Authority {
        self.built.snapshot.instances()[self.index].authority()
    }

    pub fn host(&self) -> Option<&HeaderValue> {
        self.built.host.as_ref()
    }

    pub fn service(&self) -> &ServiceName {
        self.built.snapshot.service()
    }

    /// The snapshot this pick was made from.
    pub fn snapshot(&self) -> &Snapshot {
        &self.built.snapshot
    }
}

/// What one request asks of the router.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PickRequest<'a> {
    pub key: Option<u64>,
    pub filter: Option<&'a TagFilter>,
    pub attempt: u32,
    /// The instance that just failed, to avoid on a retry.
    pub avoid: Option<&'a Authority>,
}

pub(crate) type ResolveFuture =
    Pin<Box<dyn Future<Output = Result<Snapshot, ResolveError>> + Send>>;

/// Object-safe view of the router, so futures need not name the resolver
/// and balancer types.
pub(crate) trait Route: Send + Sync + 'static {
    fn options(&self) -> &Options;
    /// The hit path: `None` when the service is not cached.
    fn pick_cached(
        &self,
        service: &str,
        request: PickRequest<'_>,
    ) -> Option<Result<Picked, DiscoveryError>>;
    /// The miss path: one (single-flight) resolve.
    fn resolve(self: Arc<Self>, service: ServiceName) -> ResolveFuture;
    fn pick_from(
        &self,
        snapshot: &Snapshot,
        request: PickRequest<'_>,
    ) -> Result<Picked, DiscoveryError>;
    /// The picked instance refused a connection.
    fn eject(&self, picked: &Picked);
}

pub(crate) struct Router<R, B> {
    resolver: R,
    balance: B,
    options: Options,
    health: Health,
    /// Copy-on-write: replaced only when a service's snapshot changes.
    built: ArcSwap<HashMap<ServiceName, Arc<Built>, foldhash::fast::RandomState>>,
    /// Pickers for requests that carry their own tag filter (slow path),
    /// so stateful balancers (round robin) keep their state across them.
    filtered: Mutex<HashMap<(ServiceName, TagFilter), Arc<Built>>>,
}

/// The most per-request-filter pickers kept; beyond, the cache starts over.
const MAX_FILTERED_PICKERS: usize = 1024;

impl<R, B> Router<R, B>
where
    R: Resolve,
    B: Balance,
{
    pub fn new(resolver: R, balance: B, options: Options) -> Self {
        Router {
            resolver,
            balance,
            health: Health::new(options.ejection),
            options,
            built: ArcSwap::default(),
            filtered: Mutex::default(),
        }
    }

    /// The picker for `snapshot` and the layer's filter, built once per
    /// snapshot change.
    fn built(&self, snapshot: &Snapshot) -> Result<Arc<Built>, DiscoveryError> {
        if let Some(built) = self.built.load().get(snapshot.service().as_str()) {
            if Snapshot::ptr_eq(&built.snapshot, snapshot) {
                return Ok(built.clone());
            }
        }
        let built = Arc::new(self.build(snapshot, self.options.filter.as_ref())?);
        self.health.retain_listed(
            snapshot.service().as_str(),
            snapshot.instances().iter().map(|i| i.addr()),
        );
        let service = snapshot.service().clone();
        self.built.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(service.clone(), built.clone());
            map
        });
        Ok(built)
    }

    /// The picker for a request's own tag filter, cached per (snapshot,
    /// filter) under a lock: the slow path.
    fn built_filtered(
        &self,
        snapshot: &Snapshot,
        filter: &TagFilter,
    ) -> Result<Arc<Built>, DiscoveryError> {
        let key = (snapshot.service().clone(), filter.clone());
        let mut cache = self.filtered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(built) = cache.get(&key) {
            if Snapshot::ptr_eq(&built.snapshot, snapshot) {
                return Ok(built.clone());
            }
        }
        let built = Arc::new(self.build(snapshot, Some(filter))?);
        if cache.len() >= MAX_FILTERED_PICKERS {
            cache.clear();
        }
        cache.insert(key, built.clone());
        Ok(built)
    }

    fn build(
        &self,
        snapshot: &Snapshot,
        filter: Option<&TagFilter>,
    ) -> Result<Built, DiscoveryError> {
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
        let host = match self.options.host {
            HostHeader::Service => Some(
                HeaderValue::from_str(snapshot.service().as_str()).map_err(|e| {
                    DiscoveryError::Rewrite {
                        addr: snapshot.service().to_string(),
                        reason: e.to_string(),
                    }
                })?,
            ),
            HostHeader::Instance => None,
        };
        Ok(Built {
            snapshot: snapshot.clone(),
            members,
            picker,
            host,
            usable,
        })
    }

    fn pick_built(
        &self,
        built: Arc<Built>,
        request: PickRequest<'_>,
    ) -> Result<Picked, DiscoveryError> {
        let instances = built.snapshot.instances();
        let service = built.snapshot.service().as_str();
        let eligible = |i: usize| {
            let instance = &instances[built.members[i]];
            request.avoid != Some(instance.authority())
                && !self.health.is_ejected(service, instance.addr())
        };
        // The first draw almost always does. Otherwise a few more draws skip
        // ejected or just-failed instances; then a scan; then, rather than
        // failing, whatever the balancer picks.
        let mut chosen = None;
        for attempt in request.attempt..request.attempt.saturating_add(8) {
            match built.picker.pick(request.key, attempt) {
                Some(i) if eligible(i) => {
                    chosen = Some(i);
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        let chosen = chosen
            .or_else(|| {
                (0..built.members.len())
                    .find(|&i| instances[built.members[i]].weight() > 0 && eligible(i))
            })
            .or_else(|| built.picker.pick(request.key, request.attempt));
        match chosen {
            Some(i) => Ok(Picked {
                index: built.members[i],
                built,
            }),
            None => Err(DiscoveryError::NoInstance {
                service: service.to_owned(),
                filter: request.filter.cloned(),
            }),
        }
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

    fn pick_cached(
        &self,
        service: &str,
        request: PickRequest<'_>,
    ) -> Option<Result<Picked, DiscoveryError>> {
        let snapshot = self.resolver.cached(service)?;
        Some(self.pick_from(&snapshot, request))
    }

    fn resolve(self: Arc<Self>, service: ServiceName) -> ResolveFuture {
        Box::pin(async move { self.resolver.resolve(&service).await })
    }

    fn pick_from(
        &self,
        snapshot: &Snapshot,
        request: PickRequest<'_>,
    ) -> Result<Picked, DiscoveryError> {
        let built = match request.filter {
            Some(filter) if request.filter != self.options.filter.as_ref() => {
                self.built_filtered(snapshot, filter)?
            }
            _ => self.built(snapshot)?,
        };
        self.pick_built(built, request)
    }

    fn eject(&self, picked: &Picked) {
        self.health.eject(
            picked.service().as_str(),
            picked.authority().as_str(),
            picked.built.usable,
        );
    }
}
