//! Runs the demo (`examples/demo.rs`) against a private redis-server and
//! checks what it prints: shares within 5 points of the weights, no failed
//! request through a crash and a drain, nothing left behind.

mod support;

#[path = "../examples/demo.rs"]
#[allow(dead_code)]
mod demo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_behaves_as_it_says() {
    let redis = support::RedisServer::start();
    let report = demo::run(&redis.url()).await.expect("the demo runs");
    for (weight, expected, observed) in &report.shares {
        assert!(
            (expected - observed).abs() <= 0.05,
            "weight {weight}: expected {expected}, observed {observed}"
        );
    }
    assert_eq!(report.failed, 0);
    assert_eq!(report.to_drained, 0);
    assert_eq!(report.keys_left, 0);
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
}
