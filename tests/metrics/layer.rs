//! What the discovery layer records (feature `metrics`), through a global
//! debugging recorder, for requests sent to real HTTP servers: one
//! duration per attempt by instance and outcome, retries by the failure
//! they follow, the retry budget's refusals, ejections and their end.
//! Exact counts; each test has a service of its own (the recorder is
//! shared by the whole binary).

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::faults::{Fault, FaultServer};
use crate::support::http_server::RefusingPort;
use crate::support::recorder::{recorder, Recorded};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_discovery::balance::RoundRobin;
use redis_discovery::layer::{
    BoxError, DiscoverExt, DiscoveryLayer, DiscoveryService, OutlierDetection, RetryBudget,
};
use redis_discovery::metrics::{
    ATTEMPT_DURATION, EJECTIONS, EJECTIONS_ENDED, ERROR_TYPE, RETRIES, RETRIES_BUDGET_EXHAUSTED,
};
use redis_discovery::resolver::StaticResolver;
use redis_discovery::Instance;
use tower::{Layer, ServiceExt};

pub(crate) type HyperClient = DiscoveryService<Client<HttpConnector, Empty<Bytes>>>;

/// `addrs` listed as `service`.
fn resolver(service: &str, addrs: &[SocketAddr]) -> StaticResolver {
    let instances = addrs
        .iter()
        .map(|&a| Instance::from_socket_addr(a).expect("a loopback address"));
    StaticResolver::new()
        .with_service(service, instances)
        .expect("a valid service")
}

pub(crate) fn client(layer: &DiscoveryLayer) -> HyperClient {
    layer.layer(Client::builder(TokioExecutor::new()).build_http())
}

/// One GET for `service`: its status, or the error.
pub(crate) async fn get(client: &HyperClient, service: &str) -> Result<http::StatusCode, BoxError> {
    let request = http::Request::get(format!("http://{service}/"))
        .discover()
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = tokio::time::timeout(crate::support::DEADLINE, client.clone().oneshot(request))
        .await
        .expect("the request ends")?;
    Ok(response.status())
}

/// The labels of one instance of `service`.
fn instance(service: &str, addr: SocketAddr) -> [(&str, String); 3] {
    [
        ("service", service.to_owned()),
        ("server.address", addr.ip().to_string()),
        ("server.port", addr.port().to_string()),
    ]
}

fn borrowed<'a>(labels: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Attempts to the instance at `addr` of `service` that ended as `error`
/// (`None`: a success), with their durations.
pub(crate) fn attempts(
    recorded: &Recorded,
    service: &str,
    addr: SocketAddr,
    error: Option<&str>,
) -> Vec<f64> {
    let labels = instance(service, addr);
    let mut labels = borrowed(&labels);
    labels.extend(error.map(|e| (ERROR_TYPE, e)));
    recorded.histogram(ATTEMPT_DURATION, &labels)
}

pub(crate) fn ejections(recorded: &Recorded, service: &str, addr: SocketAddr) -> (u64, u64) {
    let labels = instance(service, addr);
    let labels = borrowed(&labels);
    (
        recorded.counter(EJECTIONS, &labels),
        recorded.counter(EJECTIONS_ENDED, &labels),
    )
}

pub(crate) fn retries(recorded: &Recorded, service: &str, error: &str) -> u64 {
    recorded.counter(RETRIES, &[("service", service), (ERROR_TYPE, error)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_is_one_duration_of_its_instance() {
    let recorded = recorder();
    let service = "metrics-hits";
    let server = FaultServer::start(Fault::Healthy).await.unwrap();
    let layer = DiscoveryLayer::new(resolver(service, &[server.addr()]));
    let client = client(&layer);
    for _ in 0..25 {
        assert_eq!(get(&client, service).await.unwrap(), http::StatusCode::OK);
    }
    let took = attempts(recorded, service, server.addr(), None);
    assert_eq!(took.len(), 25, "{took:?}");
    assert!(took.iter().all(|&s| (0.0..20.0).contains(&s)), "{took:?}");
    // Nothing else: no failed attempt, no retry.
    let all = recorded.series_with(ATTEMPT_DURATION, ("service", service));
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        recorded.series_with(RETRIES, ("service", service)),
        Vec::new()
    );
}

/// A refused instance: one refused attempt, one retry for it, one
/// ejection (that outlasts the test), and every request answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_attempt_is_retried_and_ejects_its_instance() {
    let recorded = recorder();
    let service = "metrics-refused";
    let refusing = RefusingPort::new();
    let server = FaultServer::start(Fault::Healthy).await.unwrap();
    let long = Duration::from_secs(600);
    let layer = DiscoveryLayer::builder(resolver(service, &[refusing.addr(), server.addr()]))
        .balance(RoundRobin::new())
        .retry_budget(RetryBudget::unlimited())
        .outlier_detection(OutlierDetection::new().ejection_time(long, long))
        .build();
    let client = client(&layer);
    for _ in 0..10 {
        assert_eq!(get(&client, service).await.unwrap(), http::StatusCode::OK);
    }
    let refused = attempts(recorded, service, refusing.addr(), Some("refused"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(attempts(recorded, service, server.addr(), None).len(), 10);
    assert_eq!(retries(recorded, service, "refused"), 1);
    assert_eq!(
        recorded.series_with(RETRIES, ("service", service)).len(),
        1,
        "retries of no other kind"
    );
    assert_eq!(ejections(recorded, service, refusing.addr()), (1, 0));
    assert_eq!(ejections(recorded, service, server.addr()), (0, 0));
}

/// After its period, the first request that looks at the ejected
/// instance ends the ejection: counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejection_that_ran_out_is_counted_once_a_request_looks() {
    let recorded = recorder();
    let service = "metrics-ejection-ended";
    let refusing = RefusingPort::new();
    let server = FaultServer::start(Fault::Healthy).await.unwrap();
    let period = Duration::from_millis(100);
    let layer = DiscoveryLayer::builder(resolver(service, &[refusing.addr(), server.addr()]))
        .balance(RoundRobin::new())
        .retry_budget(RetryBudget::unlimited())
        .outlier_detection(OutlierDetection::new().ejection_time(period, 100 * period))
        .build();
    let client = client(&layer);
    for _ in 0..2 {
        assert_eq!(get(&client, service).await.unwrap(), http::StatusCode::OK);
    }
    assert_eq!(ejections(recorded, service, refusing.addr()), (1, 0));
    crate::support::eventually("the ejection ends", || async {
        assert_eq!(get(&client, service).await.unwrap(), http::StatusCode::OK);
        let (ejected, ended) = ejections(recorded, service, refusing.addr());
        (ended > 0).then_some((ejected, ended))
    })
    .await;
    // The request that looked may have tried it again (a second strike:
    // 200 ms, longer than a request on loopback).
    let (ejected, ended) = ejections(recorded, service, refusing.addr());
    assert_eq!(ended, 1);
    assert!((1..=2).contains(&ejected), "{ejected}");
    let refused = attempts(recorded, service, refusing.addr(), Some("refused"));
    assert_eq!(refused.len() as u64, ejected, "one refusal per ejection");
    assert_eq!(retries(recorded, service, "refused"), ejected);
}

/// Retries the budget refuses are counted, and none is sent; 503s are
/// `failure_status` attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_the_budget_refuses_are_counted() {
    let recorded = recorder();
    let service = "metrics-budget";
    let failing = [
        FaultServer::start(Fault::Failing).await.unwrap(),
        FaultServer::start(Fault::Failing).await.unwrap(),
    ];
    let addrs: Vec<SocketAddr> = failing.iter().map(FaultServer::addr).collect();
    let no_retries = RetryBudget::new().percent(0).min_per_second(0);
    let layer = DiscoveryLayer::builder(resolver(service, &addrs))
        .retry_budget(no_retries)
        .outlier_detection(OutlierDetection::disabled())
        .build();
    let client = client(&layer);
    for _ in 0..8 {
        let status = get(&client, service).await.unwrap();
        assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
    }
    let refused = recorded.counter(RETRIES_BUDGET_EXHAUSTED, &[("service", service)]);
    assert_eq!(refused, 8);
    assert_eq!(
        recorded.series_with(RETRIES, ("service", service)),
        Vec::new()
    );
    let failed: usize = addrs
        .iter()
        .map(|&a| attempts(recorded, service, a, Some("failure_status")).len())
        .sum();
    assert_eq!(failed, 8);
}

/// An attempt the layer's timeout ends is a `timeout`, of at least the
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_a_timeout() {
    let recorded = recorder();
    let service = "metrics-timeout";
    let hanging = FaultServer::start(Fault::Hanging).await.unwrap();
    let timeout = Duration::from_millis(100);
    let layer = DiscoveryLayer::builder(resolver(service, &[hanging.addr()]))
        .attempt_timeout(Some(timeout))
        .build();
    let client = client(&layer);
    assert!(get(&client, service).await.is_err());
    let took = attempts(recorded, service, hanging.addr(), Some("timeout"));
    assert_eq!(took.len(), 1);
    assert!(took[0] >= timeout.as_secs_f64(), "{took:?}");
}

/// The reqwest middleware runs the layer's future: its attempts and
/// retries are counted the same.
#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middlewares_attempts_are_counted() {
    use redis_discovery::layer::Discover;

    let recorded = recorder();
    let service = "metrics-middleware";
    let refusing = RefusingPort::new();
    let server = FaultServer::start(Fault::Healthy).await.unwrap();
    let long = Duration::from_secs(600);
    let layer = DiscoveryLayer::builder(resolver(service, &[refusing.addr(), server.addr()]))
        .balance(RoundRobin::new())
        .retry_budget(RetryBudget::unlimited())
        .outlier_detection(OutlierDetection::new().ejection_time(long, long))
        .build();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();
    for _ in 0..6 {
        let sent = client
            .get(format!("http://{service}/"))
            .with_extension(Discover)
            .send();
        let response = tokio::time::timeout(crate::support::DEADLINE, sent)
            .await
            .expect("the request ends")
            .expect("a response");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
    }
    let refused = attempts(recorded, service, refusing.addr(), Some("refused"));
    assert_eq!(refused.len(), 1);
    assert_eq!(attempts(recorded, service, server.addr(), None).len(), 6);
    assert_eq!(retries(recorded, service, "refused"), 1);
    assert_eq!(ejections(recorded, service, refusing.addr()), (1, 0));
}
