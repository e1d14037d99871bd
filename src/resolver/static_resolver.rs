//! [`StaticResolver`]: a fixed map of services to instances.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::{Resolve, Snapshot};
use crate::error::{ResolveError, ValidationError};
use crate::instance::{Instance, ServiceName};

/// A fixed map from service names to instances, for tests and for users
/// without Redis. Cheap to clone (one `Arc`); clones share the map as it
/// was when cloned.
///
/// [`cached`](Resolve::cached) always answers for a known service (never
/// stale); an unknown service resolves to [`ResolveError::UnknownService`].
///
/// ```
/// use redis_discovery::{Instance, ResolveError, ServiceName};
/// use redis_discovery::resolver::{Resolve, StaticResolver};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let resolver = StaticResolver::new()
///     .with_service("orders", [Instance::new("127.0.0.1:8080")?])?;
///
/// let snapshot = resolver.resolve(&ServiceName::new("orders")?).await?;
/// assert_eq!(snapshot.instances()[0].addr(), "127.0.0.1:8080");
/// assert!(resolver.cached("orders").is_some());
///
/// let unknown = resolver.resolve(&ServiceName::new("billing")?).await;
/// assert!(matches!(unknown, Err(ResolveError::UnknownService { .. })));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct StaticResolver {
    services: Arc<HashMap<ServiceName, Snapshot, foldhash::fast::RandomState>>,
}

impl StaticResolver {
    /// A resolver that knows no service.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a service and its instances, builder style.
    pub fn with_service<S, I>(mut self, service: S, instances: I) -> Result<Self, ValidationError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<ValidationError>,
        I: IntoIterator<Item = Instance>,
    {
        let service = service.try_into().map_err(Into::into)?;
        self.insert(service, instances);
        Ok(self)
    }

    /// Adds (or replaces) a service and its instances. Other clones of this
    /// resolver are not affected.
    pub fn insert(&mut self, service: ServiceName, instances: impl IntoIterator<Item = Instance>) {
        let snapshot = Snapshot::new(service.clone(), instances.into_iter().collect());
        Arc::make_mut(&mut self.services).insert(service, snapshot);
    }

    /// Removes a service (named in any case). Returns whether it was known.
    pub fn remove(&mut self, service: &str) -> bool {
        let service = crate::instance::lowercase(service);
        Arc::make_mut(&mut self.services)
            .remove(&*service)
            .is_some()
    }

    /// The known services, in no particular order.
    pub fn services(&self) -> impl Iterator<Item = &ServiceName> {
        self.services.keys()
    }
}

impl Resolve for StaticResolver {
    fn resolve(
        &self,
        service: &ServiceName,
    ) -> impl Future<Output = Result<Snapshot, ResolveError>> + Send {
        let result = self.services.get(service.as_str()).cloned().ok_or_else(|| {
            ResolveError::UnknownService {
                service: service.to_string(),
            }
        });
        std::future::ready(result)
    }

    #[inline]
    fn cached(&self, service: &str) -> Option<Snapshot> {
        // Names are case-insensitive; the map holds them in lowercase.
        self.services
            .get(&*crate::instance::lowercase(service))
            .cloned()
    }
}

impl fmt::Debug for StaticResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut services: Vec<_> = self.services.values().collect();
        services.sort_by(|a, b| a.service().cmp(b.service()));
        f.debug_map()
            .entries(services.iter().map(|s| (s.service(), s.instances())))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(addr: &str) -> Instance {
        Instance::new(addr).unwrap()
    }

    #[tokio::test]
    async fn resolves_known_services_only() {
        let resolver = StaticResolver::new()
            .with_service("a", [instance("h:1"), instance("h:2")])
            .unwrap()
            .with_service("empty", [])
            .unwrap();
        let a = ServiceName::new("a").unwrap();
        let snapshot = resolver.resolve(&a).await.unwrap();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot.service(), &a);
        let cached = resolver.cached("a").unwrap();
        assert!(Snapshot::ptr_eq(&snapshot, &cached));
        assert!(resolver.cached("empty").unwrap().is_empty());
        assert!(resolver.cached("nope").is_none());
        assert!(Snapshot::ptr_eq(&resolver.cached("A").unwrap(), &cached));
        match resolver.resolve(&ServiceName::new("nope").unwrap()).await {
            Err(ResolveError::UnknownService { service }) => assert_eq!(service, "nope"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_names_and_copy_on_write() {
        assert!(StaticResolver::new().with_service("a b", []).is_err());
        let mut one = StaticResolver::new().with_service("a", []).unwrap();
        let two = one.clone();
        one.insert(ServiceName::new("b").unwrap(), [instance("h:1")]);
        assert!(one.cached("b").is_some());
        assert!(two.cached("b").is_none());
        assert!(one.remove("a"));
        assert!(!one.remove("a"));
        assert!(two.cached("a").is_some());
        assert_eq!(one.services().count(), 1);
        let debug = format!("{one:?}");
        assert!(debug.contains("h:1"), "{debug}");
    }
}
