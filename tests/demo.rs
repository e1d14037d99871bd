//! Runs the demo (`examples/demo.rs`) against a private redis-server and
//! checks what it prints: shares within five standard deviations of the
//! weights (the demo's own bound), no failed request through a crash and a
//! drain, nothing left behind.

mod support;

#[path = "../examples/demo.rs"]
#[allow(dead_code)]
mod demo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_behaves_as_it_says() {
    let redis = support::RedisServer::start();
    let report = demo::run(&redis.url()).await.expect("the demo runs");
    assert_eq!(report.shares.len(), 3);
    for &(weight, expected, observed) in &report.shares {
        let allowed = report.allowed_deviation(expected);
        assert!(
            (expected - observed).abs() <= allowed,
            "weight {weight}: expected {expected}, observed {observed}, allowed ±{allowed}"
        );
    }
    assert_eq!(report.failed, 0);
    assert_eq!(report.to_drained, 0);
    assert_eq!(report.keys_left, 0);
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
}
