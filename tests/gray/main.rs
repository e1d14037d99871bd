//! Gray failures through the layer, against real HTTP servers that are
//! slow, never answer, or answer 503 (tests/support/faults.rs): the layer
//! times attempts out, retries idempotent requests elsewhere, ejects the
//! failing instance, balances away from the slow one, keeps its retries
//! within the budget, and does not pile everything on the last healthy
//! instance. Counts are asserted; times only within generous bounds.

#[path = "../support/mod.rs"]
mod support;

mod budget;
mod config;
mod ejection;
mod latency;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod refused;

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{
    BoxError, DiscoverExt, DiscoveryLayer, DiscoveryLayerBuilder, DiscoveryService,
};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use support::faults::{Fault, FaultServer};
use tower::{Layer, ServiceExt};

type HyperClient = Client<HttpConnector, Empty<Bytes>>;

/// Servers with these faults, listed as service `orders`.
struct Fleet {
    servers: Vec<FaultServer>,
    resolver: StaticResolver,
}

impl Fleet {
    async fn start(faults: &[Fault]) -> Fleet {
        let mut servers = Vec::new();
        for &fault in faults {
            servers.push(FaultServer::start(fault).await.expect("a server starts"));
        }
        let instances = servers
            .iter()
            .map(|s| Instance::from_socket_addr(s.addr()).expect("a loopback address"));
        let resolver = StaticResolver::new()
            .with_service("orders", instances)
            .expect("a valid service");
        Fleet { servers, resolver }
    }

    fn builder(
        &self,
    ) -> DiscoveryLayerBuilder<StaticResolver, redis_discovery::balance::WeightedRandom> {
        DiscoveryLayer::builder(self.resolver.clone())
    }

    /// Requests each server read.
    fn served(&self) -> Vec<u64> {
        self.servers.iter().map(FaultServer::requests).collect()
    }
}

fn client(layer: &DiscoveryLayer) -> DiscoveryService<HyperClient> {
    layer.layer(Client::builder(TokioExecutor::new()).build_http())
}

/// One GET for `orders`; its status, or the error. Bounded by a deadline
/// far beyond any attempt timeout the tests set.
async fn get(client: &DiscoveryService<HyperClient>) -> Result<http::StatusCode, BoxError> {
    let request = http::Request::get("http://orders/")
        .discover()
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = tokio::time::timeout(Duration::from_secs(60), client.clone().oneshot(request))
        .await
        .expect("the request ends within a minute")?;
    Ok(response.status())
}

/// `n` GETs, `workers` at a time; the statuses and errors in order of
/// completion.
async fn get_many(
    client: &DiscoveryService<HyperClient>,
    n: usize,
    workers: usize,
) -> Vec<Result<http::StatusCode, BoxError>> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            let mut results = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                results.push(get(&client).await);
            }
            results
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        results.extend(done.expect("a worker ends"));
    }
    results
}

fn successes(results: &[Result<http::StatusCode, BoxError>]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Ok(status) if status.is_success()))
        .count()
}
