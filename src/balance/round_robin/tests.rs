//! nginx's exact order, the golden-ratio sequence's spread, drained instances.

use super::*;
use crate::balance::test_support::{histogram, instances};
use rand::{rngs::SmallRng, Rng as _, SeedableRng};

/// nginx's algorithm as written in ngx_http_upstream_round_robin.c, on
/// the unreduced weights, skipping weight 0.
fn nginx(weights: &[u32], picks: usize) -> Vec<usize> {
    let mut current = vec![0i64; weights.len()];
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    (0..picks)
        .map(|_| {
            let mut best: Option<usize> = None;
            for (i, &w) in weights.iter().enumerate() {
                if w == 0 {
                    continue;
                }
                current[i] += i64::from(w);
                if best.is_none_or(|b| current[i] > current[b]) {
                    best = Some(i);
                }
            }
            let best = best.expect("a positive weight");
            current[best] -= total;
            best
        })
        .collect()
}

fn picks(picker: &RoundRobinPicker, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| picker.pick(None, 0).expect("a pick"))
        .collect()
}

#[test]
fn nginx_sequence() {
    let picker = RoundRobin::new().build(&instances(&[5, 1, 1]));
    let order: String = picks(&picker, 14)
        .into_iter()
        .map(|i| (b'a' + i as u8) as char)
        .collect();
    assert_eq!(order, "aabacaaaabacaa");
    assert!(format!("{picker:?}").contains(r#"mode: "nginx""#));
}

#[test]
fn matches_nginx_reference() {
    let mut rng = SmallRng::seed_from_u64(1);
    for round in 0..200 {
        let n = rng.random_range(1..=12);
        let weights: Vec<u32> = (0..n)
            .map(|_| match rng.random_range(0..4) {
                0 => 0,
                1 => 10 * rng.random_range(1..=5), // common divisor
                _ => rng.random_range(1..=40),
            })
            .collect();
        let total: u32 = weights.iter().sum();
        if total == 0 {
            continue;
        }
        let picker = RoundRobin::new().build(&instances(&weights));
        let count = 2 * total as usize + 3;
        assert_eq!(
            picks(&picker, count),
            nginx(&weights, count),
            "round {round}: {weights:?}"
        );
    }
}

#[test]
fn many_instances_of_few_weights_match_nginx() {
    let weights: Vec<u32> = (0..300).map(|i| [3, 1, 0, 2, 3, 7][i % 6]).collect();
    let picker = RoundRobin::new().build(&instances(&weights));
    assert!(format!("{picker:?}").contains(r#"mode: "nginx""#));
    let total: u32 = weights.iter().sum();
    let count = 2 * total as usize;
    assert_eq!(picks(&picker, count), nginx(&weights, count));
    // 500 instances, weights 1..=100: still nginx's order.
    let mut rng = SmallRng::seed_from_u64(3);
    let weights: Vec<u32> = (0..500).map(|_| rng.random_range(1..=100)).collect();
    let picker = RoundRobin::new().build(&instances(&weights));
    assert!(format!("{picker:?}").contains(r#"mode: "nginx""#));
    assert_eq!(picks(&picker, 20_000), nginx(&weights, 20_000));
}

#[test]
fn weight_zero_skipped() {
    let weights = [0, 3, 0, 2, 0];
    let picker = RoundRobin::new().build(&instances(&weights));
    let got = picks(&picker, 50);
    assert!(got.iter().all(|&i| i == 1 || i == 3));
    assert_eq!(got, nginx(&weights, 50));
}

#[test]
fn empty_and_drained() {
    assert_eq!(RoundRobin::new().build(&[]).pick(None, 0), None);
    let picker = RoundRobin::new()
        .random_start(true)
        .build(&instances(&[0, 0]));
    assert_eq!(picker.pick(None, 0), None);
    assert_eq!(picker.pick(Some(1), 3), None);
    let picker = RoundRobin::new().build(&instances(&[0, 9, 0]));
    assert!((0..10).all(|a| picker.pick(None, a) == Some(1)));
}

/// The largest difference, over the instances, between picks and
/// weight (reduced) in windows of one cycle.
fn worst_window(weights: &[u32], balance: &RoundRobin) -> u64 {
    let picker = balance.build(&instances(weights));
    let divisor = weights.iter().fold(0, |g, &w| gcd(g, u64::from(w)));
    let cycle: u64 = weights.iter().map(|&w| u64::from(w) / divisor).sum();
    let mut worst = 0;
    for _ in 0..3 {
        // Windows at any offset.
        for _ in 0..cycle / 3 {
            picker.pick(None, 0);
        }
        let counts = histogram(weights.len(), cycle as usize, || picker.pick(None, 0));
        for (&w, &c) in weights.iter().zip(&counts) {
            worst = worst.max((c as u64).abs_diff(u64::from(w) / divisor));
        }
    }
    worst
}

#[test]
fn shares_per_cycle() {
    // nginx: exact in every window of one cycle.
    for weights in [
        &[5, 1, 1][..],
        &[30, 0, 20, 10],
        &[1; 7],
        &[2, 3, 0, 5, 7, 11],
    ] {
        assert_eq!(worst_window(weights, &RoundRobin::new()), 0);
        let random = RoundRobin::new().random_start(true);
        assert_eq!(worst_window(weights, &random), 0);
    }
    // Golden-ratio sequence: within a few picks (2 at most, measured).
    let mut rng = SmallRng::seed_from_u64(2);
    let weights: Vec<u32> = (0..3000)
        .map(|i| {
            if i % 10 == 0 {
                0
            } else {
                rng.random_range(1..=100)
            }
        })
        .collect();
    let picker = RoundRobin::new().build(&instances(&weights));
    assert!(format!("{picker:?}").contains("golden-ratio"), "{picker:?}");
    let w1 = worst_window(&weights, &RoundRobin::new());
    let w2 = worst_window(&weights, &RoundRobin::new().random_start(true));
    assert!(w1 <= 3 && w2 <= 3);
    let got = picks(&picker, 100_000);
    assert!(got.iter().all(|&i| weights[i] > 0));
    // Smooth: no instance (each has less than 38% of the weight) gets
    // two picks in a row.
    assert!(got.windows(2).all(|w| w[0] != w[1]));
    // Skewed weights, many distinct.
    let weights: Vec<u32> = (1..=100).map(|i| i * i).collect();
    assert!(worst_window(&weights, &RoundRobin::new()) <= 3);
}

#[test]
fn huge_weights() {
    let weights = [u32::MAX, 0, u32::MAX - 1, 1];
    let picker = RoundRobin::new().build(&instances(&weights));
    let got = picks(&picker, 10_000);
    assert!(got.iter().all(|&i| i != 1));
    let heavy = got.iter().filter(|&&i| i == 0 || i == 2).count();
    assert!(heavy > 9_990);
}

#[test]
fn ten_thousand_instances() {
    let weights: Vec<u32> = (0..10_000).map(|i| (i % 100) as u32).collect();
    let picker = RoundRobin::new().build(&instances(&weights));
    assert!(picks(&picker, 100_000).iter().all(|&i| weights[i] > 0));
    // Equal weights: plain rotation (a stored cycle of 10 000).
    let picker = RoundRobin::new().build(&instances(&[1; 10_000]));
    assert_eq!(
        picks(&picker, 20_000),
        (0..20_000).map(|i| i % 10_000).collect::<Vec<_>>()
    );
}
