//! The retry budget: with every instance failing, retries stay within
//! 20 % of the requests plus the floor (10 per second over 10 s).

use redis_discovery::layer::{OutlierDetection, RetryBudget};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget_when_every_instance_fails() {
    let fleet = Fleet::start(&[Fault::Failing, Fault::Failing, Fault::Failing]).await;
    // No ejection: every request would be retried twice without a budget.
    let layer = fleet
        .builder()
        .outlier_detection(OutlierDetection::disabled())
        .build();
    let results = get_many(&client(&layer), 1000, 4).await;
    assert_eq!(results.len(), 1000);
    for result in &results {
        // The last attempt's response is the request's.
        assert_eq!(
            *result.as_ref().expect("a response"),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let attempts: u64 = fleet.served().iter().sum();
    let retries = attempts - 1000;
    // 20 % of 1 000 requests plus the floor's 100 (10/s over the 10 s
    // window), with a little slack.
    assert!(retries <= 300 + 10, "{retries} retries");
    assert!(retries >= 100, "the budget allowed its floor: {retries}");

    // Unlimited: every request retried on both other instances.
    let fleet = Fleet::start(&[Fault::Failing, Fault::Failing, Fault::Failing]).await;
    let layer = fleet
        .builder()
        .outlier_detection(OutlierDetection::disabled())
        .retry_budget(RetryBudget::unlimited())
        .build();
    get_many(&client(&layer), 100, 4).await;
    assert_eq!(fleet.served().iter().sum::<u64>(), 300);
}
