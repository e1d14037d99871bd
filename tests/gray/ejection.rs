//! Never-answering and 503 instances: timed out or answered, retried
//! elsewhere, and ejected after the consecutive failures of
//! `OutlierDetection` (5 by default).

use std::time::Instant;

use redis_discovery::layer::{DiscoveryError, OutlierDetection};

use super::*;

/// An instance that accepts and never answers: each attempt times out,
/// the request is retried elsewhere, and after 5 timeouts in a row the
/// instance is ejected. No request takes longer than the attempt timeout
/// plus a healthy round trip (asserted with a generous bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_answering_instance_is_timed_out_retried_and_ejected() {
    let fleet = Fleet::start(&[Fault::Hanging, Fault::Healthy, Fault::Healthy]).await;
    let timeout = Duration::from_millis(200);
    let layer = fleet.builder().attempt_timeout(Some(timeout)).build();
    let client = client(&layer);
    for i in 0..60 {
        let started = Instant::now();
        let status = get(&client).await.expect("retried on a healthy instance");
        assert_eq!(status, http::StatusCode::OK);
        let took = started.elapsed();
        assert!(
            took < timeout + Duration::from_secs(5),
            "request {i} took {took:?}"
        );
    }
    let served = fleet.served();
    assert!(served[0] >= 1, "the hanging instance was tried: {served:?}");
    assert!(served[0] <= 5, "ejected after 5 timeouts: {served:?}");
}

/// Without a retry (a POST), the timeout is the request's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_post_fails_with_the_timeout() {
    let fleet = Fleet::start(&[Fault::Hanging]).await;
    let timeout = Duration::from_millis(100);
    let layer = fleet.builder().attempt_timeout(Some(timeout)).build();
    let request = http::Request::post("http://orders/")
        .discover()
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error = client(&layer)
        .oneshot(request)
        .await
        .expect_err("timed out");
    match error.downcast_ref::<DiscoveryError>() {
        Some(DiscoveryError::AttemptTimeout {
            service,
            timeout: t,
            ..
        }) => {
            assert_eq!(service, "orders");
            assert_eq!(*t, timeout);
        }
        other => panic!("{other:?}: {error}"),
    }
}

/// An instance that answers 503 to everything: idempotent requests are
/// retried elsewhere (none fails), and the instance is ejected after 5
/// failures in a row, so it sees no more requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_instance_is_retried_around_and_ejected_after_five() {
    let fleet = Fleet::start(&[Fault::Failing, Fault::Healthy, Fault::Healthy]).await;
    let client = client(&fleet.builder().build());
    let results = get_many(&client, 400, 1).await;
    assert_eq!(successes(&results), 400, "every GET retried elsewhere");
    let served = fleet.served();
    assert!((1..=5).contains(&served[0]), "ejected within 5: {served:?}");
}

/// Concurrent requests: the ejection happens within a few failures more
/// than 5 (those already in flight), and every GET succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_instance_under_concurrent_load_is_ejected() {
    let fleet = Fleet::start(&[Fault::Failing, Fault::Healthy, Fault::Healthy]).await;
    let client = client(&fleet.builder().build());
    let results = get_many(&client, 1000, 8).await;
    assert_eq!(successes(&results), 1000);
    let served = fleet.served();
    assert!(
        served[0] <= 5 + 8,
        "at most the requests in flight more: {served:?}"
    );
}

/// An instance that answers 503 to every other request: never 5 in a row,
/// so not ejected, but every GET succeeds through a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_instance_costs_no_request() {
    let fleet = Fleet::start(&[Fault::Flaky, Fault::Healthy, Fault::Healthy]).await;
    let client = client(&fleet.builder().build());
    let results = get_many(&client, 300, 4).await;
    assert_eq!(successes(&results), 300);
    let served = fleet.served();
    let share = served[0] as f64 / served.iter().sum::<u64>() as f64;
    assert!(share > 0.2, "not ejected, it keeps its share: {served:?}");
}

/// With outlier detection off, a 503 instance keeps its share (and
/// idempotent requests are still retried around it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_outlier_detection_a_503_instance_keeps_its_share() {
    let fleet = Fleet::start(&[Fault::Failing, Fault::Healthy, Fault::Healthy]).await;
    let layer = fleet
        .builder()
        .outlier_detection(OutlierDetection::disabled())
        .retry_budget(redis_discovery::layer::RetryBudget::unlimited())
        .build();
    let results = get_many(&client(&layer), 300, 4).await;
    assert_eq!(successes(&results), 300);
    let served = fleet.served();
    assert!(
        served[0] > 60,
        "about a third of 300 first attempts: {served:?}"
    );
}

/// With 3 of 4 instances failing, the layer does not send everything to
/// the last one: by default at most half are ejected; with every instance
/// allowed out, the panic threshold (fewer than half left) balances over
/// all of them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failing_of_four_do_not_send_all_traffic_to_the_last() {
    let faults = [
        Fault::Failing,
        Fault::Failing,
        Fault::Failing,
        Fault::Healthy,
    ];
    for (what, outlier) in [
        ("default", OutlierDetection::new()),
        (
            "all may be ejected",
            OutlierDetection::new()
                .max_ejected_percent(100)
                .consecutive_failures(1),
        ),
    ] {
        let fleet = Fleet::start(&faults).await;
        // No retries: each request is one attempt, so shares are picks.
        let layer = fleet
            .builder()
            .retries(0)
            .outlier_detection(outlier)
            .build();
        let client = client(&layer);
        let results = get_many(&client, 400, 1).await;
        let served = fleet.served();
        let healthy = served[3] as f64 / served.iter().sum::<u64>() as f64;
        assert!(
            healthy < 0.8,
            "{what}: the last healthy one took {healthy:.2}: {served:?}"
        );
        assert!(
            successes(&results) < 400,
            "{what}: the failing ones still got requests"
        );
    }
}
