//! A slow instance: `LeastLoaded` sends it a small share.

use redis_discovery::balance::LeastLoaded;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_sends_little_to_a_slow_instance() {
    let slow = Fault::Slow(Duration::from_millis(50));
    let fleet = Fleet::start(&[slow, Fault::Healthy, Fault::Healthy]).await;
    let layer = fleet.builder().balance(LeastLoaded::new()).build();
    let results = get_many(&client(&layer), 600, 8).await;
    assert_eq!(successes(&results), 600);
    let served = fleet.served();
    let share = served[0] as f64 / served.iter().sum::<u64>() as f64;
    // Weighted random would give it a third.
    assert!(
        share < 0.15,
        "the slow instance took {share:.3}: {served:?}"
    );
}
