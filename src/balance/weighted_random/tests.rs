//! Shares follow weights; the alias table is exact; seeded pickers repeat.

use super::*;
use crate::balance::test_support::{histogram, instances};

const PICKS: usize = 1_000_000;

/// Asserts that each share is within 1% (absolute) of its weight's share.
fn assert_shares(weights: &[u32], seed: u64) {
    let picker = WeightedRandom::seeded(seed).build(&instances(weights));
    let counts = histogram(weights.len(), PICKS, || picker.pick(None, 0));
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    for (i, (&w, &c)) in weights.iter().zip(&counts).enumerate() {
        let expected = w as f64 / total as f64;
        let got = c as f64 / PICKS as f64;
        assert!(
            (expected - got).abs() < 0.01,
            "instance {i} (weight {w}): share {got}, expected {expected}; {counts:?}"
        );
        if w == 0 {
            assert_eq!(c, 0, "drained instance {i} was picked");
        }
    }
}

#[test]
fn distribution_follows_weights() {
    assert_shares(&[5, 1, 1], 1);
    assert_shares(&[10, 20, 30, 40], 2);
    assert_shares(&[1, 100, 7, 0, 33, 2, 90, 0, 1, 50], 3);
    assert_shares(&[1; 17], 4);
}

#[test]
fn outer_instances_of_one_zero_one() {
    // Volo picked wrongly around a zero weight.
    assert_shares(&[1, 0, 1], 5);
    assert_shares(&[0, 1, 0, 1, 0], 6);
    assert_shares(&[7, 0, 0, 0, 7], 7);
}

#[test]
fn huge_weights_sum_beyond_u32() {
    let weights = [u32::MAX, u32::MAX, u32::MAX / 2, 0, u32::MAX];
    assert_shares(&weights, 8);
    let picker = WeightedRandom::new().build(&instances(&weights));
    assert_eq!(
        picker.total_weight(),
        3 * u64::from(u32::MAX) + u64::from(u32::MAX / 2)
    );
}

#[test]
fn skewed_weights() {
    let mut weights = vec![1; 99];
    weights.push(10_000);
    let picker = WeightedRandom::seeded(9).build(&instances(&weights));
    let counts = histogram(weights.len(), PICKS, || picker.pick(None, 0));
    let heavy = counts[99] as f64 / PICKS as f64;
    assert!((heavy - 10_000.0 / 10_099.0).abs() < 0.01, "{heavy}");
    assert!(counts[..99].iter().all(|&c| c > 0));
}

#[test]
fn empty_and_drained() {
    let picker = WeightedRandom::new().build(&[]);
    assert_eq!(picker.pick(None, 0), None);
    assert_eq!(picker.pick(Some(3), 2), None);
    let picker = WeightedRandom::new().build(&instances(&[0, 0, 0]));
    assert_eq!(picker.pick(None, 0), None);
    let picker = WeightedRandom::new().build(&instances(&[0, 0, 4]));
    assert!((0..1000).all(|a| picker.pick(None, a) == Some(2)));
}

#[test]
fn ten_thousand_instances() {
    let weights: Vec<u32> = (0..10_000).map(|i| (i % 100) as u32).collect();
    let picker = WeightedRandom::seeded(10).build(&instances(&weights));
    for _ in 0..100_000 {
        let i = picker.pick(None, 0).expect("a pick");
        assert_ne!(weights[i], 0);
    }
}

#[test]
fn seeded_pickers_repeat() {
    let instances = instances(&[1, 2, 3, 4]);
    let a = WeightedRandom::seeded(11).build(&instances);
    let b = WeightedRandom::seeded(11).build(&instances);
    let a: Vec<_> = (0..100).map(|_| a.pick(None, 0)).collect();
    let b: Vec<_> = (0..100).map(|_| b.pick(None, 0)).collect();
    assert_eq!(a, b);
}

#[test]
fn pickers_are_send_sync_debug() {
    fn check<P: Pick>(_: &P) {}
    let picker = WeightedRandom::new().build(&instances(&[1]));
    check(&picker);
    let debug = format!("{picker:?}");
    assert!(debug.contains("instances: 1"), "{debug}");
}
