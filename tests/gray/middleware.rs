//! The reqwest middleware runs the layer's own retry loop: the same
//! timeouts, retries and ejections as the tower layer.

use redis_discovery::layer::Discover;

use super::*;

fn middleware_client(layer: &DiscoveryLayer) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build()
}

async fn status_of(client: &reqwest_middleware::ClientWithMiddleware) -> reqwest::StatusCode {
    let sent = client.get("http://orders/").with_extension(Discover).send();
    tokio::time::timeout(Duration::from_secs(60), sent)
        .await
        .expect("the request ends within a minute")
        .expect("a response")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_retries_around_a_503_instance_and_ejects_it() {
    let fleet = Fleet::start(&[Fault::Failing, Fault::Healthy, Fault::Healthy]).await;
    let client = middleware_client(&fleet.builder().build());
    for _ in 0..200 {
        assert_eq!(status_of(&client).await, reqwest::StatusCode::OK);
    }
    let served = fleet.served();
    assert!((1..=5).contains(&served[0]), "ejected within 5: {served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_times_out_a_never_answering_instance() {
    let fleet = Fleet::start(&[Fault::Hanging, Fault::Healthy]).await;
    let layer = fleet
        .builder()
        .attempt_timeout(Some(Duration::from_millis(200)))
        .build();
    let client = middleware_client(&layer);
    for _ in 0..30 {
        assert_eq!(status_of(&client).await, reqwest::StatusCode::OK);
    }
    let served = fleet.served();
    assert!((1..=5).contains(&served[0]), "ejected within 5: {served:?}");
}

/// reqwest's own timeout (`ClientBuilder::timeout`, shorter than the
/// layer's attempt timeout) counts as the attempt's timeout: retried, and
/// the never-answering instance ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_timeouts_are_attempt_timeouts() {
    let fleet = Fleet::start(&[Fault::Hanging, Fault::Healthy]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http)
        .with(fleet.builder().build().middleware())
        .build();
    for _ in 0..30 {
        assert_eq!(status_of(&client).await, reqwest::StatusCode::OK);
    }
    let served = fleet.served();
    assert!((1..=5).contains(&served[0]), "ejected within 5: {served:?}");
}
