//! Properties of the balancers and tag filters, on generated instance sets
//! (proptest): no pick of a drained or out-of-range instance, shares that
//! follow the weights (least loaded: with equal loads), a slow instance
//! avoided, filters that only yield matching instances.
//!
//! Shares are checked against bounds that hold with overwhelming
//! probability (6 standard deviations) or exactly (round robin), so the
//! tests do not flake; the case counts keep the file to a few seconds.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use redis_discovery::balance::{
    Balance, ConsistentHash, Fallback, InstanceLoad, LeastLoaded, Loads, PeakEwma, Pick,
    RoundRobin, TagFilter, WeightedRandom,
};
use redis_discovery::Instance;
use tokio::time::Instant;

/// Instances `10.0.<i/256>.<i%256>:80` with these weights.
fn instances(weights: &[u32]) -> Vec<Instance> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            Instance::new(format!("10.0.{}.{}:80", i / 256, i % 256))
                .expect("valid address")
                .with_weight(w)
        })
        .collect()
}

/// Weights with many zeros and the extremes: 0, small, and up to u32::MAX.
fn weights(max_len: usize) -> impl Strategy<Value = Vec<u32>> {
    let weight = prop_oneof![
        3 => Just(0u32),
        4 => 1u32..=20,
        2 => 1u32..=100_000,
        1 => Just(u32::MAX),
    ];
    prop::collection::vec(weight, 0..=max_len)
}

/// Asserts that `picks` draws of `pick` only return drained-free, in-range
/// indices, and `None` exactly when no weight is positive.
fn picks_are_valid(weights: &[u32], picks: usize, mut pick: impl FnMut(usize) -> Option<usize>) {
    let live = weights.iter().any(|&w| w > 0);
    for n in 0..picks {
        match pick(n) {
            Some(i) => {
                assert!(i < weights.len(), "pick {i} of {} instances", weights.len());
                assert!(weights[i] > 0, "picked drained instance {i} of {weights:?}");
            }
            None => assert!(!live, "no pick although {weights:?} has a positive weight"),
        }
    }
}

/// Asserts that `counts` (picks per instance, `total` in all) is within
/// `slack(expected)` picks of each instance's weighted share.
fn shares_follow_weights(weights: &[u32], counts: &[usize], slack: impl Fn(f64, f64) -> f64) {
    let sum: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let total = counts.iter().sum::<usize>() as f64;
    for (i, (&w, &count)) in weights.iter().zip(counts).enumerate() {
        let p = f64::from(w) / sum;
        let expected = total * p;
        let off = (count as f64 - expected).abs();
        assert!(
            off <= slack(expected, p),
            "instance {i}: {count} picks, {expected:.1} expected (weights {weights:?})"
        );
    }
}

/// Loads where instance `i` had `measures[i] = (rtt_ns, in_flight, failed)`:
/// `in_flight + 1` attempts started, one ended with `rtt_ns`.
fn loads(measures: &[(u64, u32, bool)], now: Instant, ewma: &PeakEwma) -> Vec<InstanceLoad> {
    measures
        .iter()
        .map(|&(rtt_ns, in_flight, failed)| {
            let load = InstanceLoad::new(now);
            for _ in 0..=in_flight {
                load.start();
            }
            load.end(Duration::from_nanos(rtt_ns), failed, now, ewma);
            load
        })
        .collect()
}

fn histogram(n: usize, picks: usize, mut pick: impl FnMut(usize) -> Option<usize>) -> Vec<usize> {
    let mut counts = vec![0; n];
    for k in 0..picks {
        counts[pick(k).expect("a live instance")] += 1;
    }
    counts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn weighted_random_picks_only_live_instances(weights in weights(40), seed: u64) {
        let picker = WeightedRandom::seeded(seed).build(&instances(&weights));
        picks_are_valid(&weights, 2_000, |n| picker.pick(None, n as u32 % 4));
    }

    #[test]
    fn round_robin_picks_only_live_instances(weights in weights(40), random_start: bool) {
        let picker = RoundRobin::new().random_start(random_start).build(&instances(&weights));
        picks_are_valid(&weights, 2_000, |n| picker.pick(None, n as u32 % 4));
    }

    #[test]
    fn consistent_hash_picks_only_live_instances(weights in weights(40), key: Option<u64>) {
        let picker = ConsistentHash::new().vnodes(16).build(&instances(&weights));
        picks_are_valid(&weights, 300, |n| {
            picker.pick(key.map(|k| k.wrapping_add(n as u64)), n as u32)
        });
    }

    /// A binomial count is within 6 standard deviations of its mean (one
    /// miss in ~500 million per instance), plus one pick for rounding.
    #[test]
    fn weighted_random_shares_follow_weights(
        weights in prop::collection::vec(1u32..=1_000, 1..=12),
        drained in 0usize..3,
        seed: u64,
    ) {
        let mut weights = weights;
        weights.extend(std::iter::repeat_n(0, drained));
        let picker = WeightedRandom::seeded(seed).build(&instances(&weights));
        let counts = histogram(weights.len(), 20_000, |_| picker.pick(None, 0));
        shares_follow_weights(&weights, &counts, |expected, p| {
            6.0 * (expected * (1.0 - p)).sqrt() + 1.0
        });
    }

    /// Round robin is exact over a cycle and smooth within it: every prefix
    /// of the sequence is within a few picks of each share (nginx's order
    /// for small cycles, the golden-ratio sequence for large ones).
    #[test]
    fn round_robin_shares_follow_weights(
        weights in prop::collection::vec(prop_oneof![1u32..=50, 1u32..=1_000_000], 1..=12),
        drained in 0usize..3,
        picks in 1usize..=5_000,
    ) {
        let mut weights = weights;
        weights.extend(std::iter::repeat_n(0, drained));
        let picker = RoundRobin::new().build(&instances(&weights));
        let counts = histogram(weights.len(), picks, |_| picker.pick(None, 0));
        let n = weights.len() as f64;
        shares_follow_weights(&weights, &counts, |_, _| n + 16.0);
    }

    /// With many virtual nodes each instance owns about its share of the
    /// ring; weights within a factor of 2 keep every instance at hundreds
    /// of nodes, so a 40% relative bound (about 6 standard deviations of
    /// the ring's spread) plus the keys' own sampling noise holds.
    #[test]
    fn consistent_hash_shares_follow_weights(
        weights in prop::collection::vec(5u32..=10, 2..=6),
        first_key: u64,
    ) {
        let picker = ConsistentHash::new().vnodes(1_000).build(&instances(&weights));
        let counts = histogram(weights.len(), 20_000, |k| {
            picker.pick(Some(first_key.wrapping_add(k as u64)), 0)
        });
        shares_follow_weights(&weights, &counts, |expected, p| {
            0.4 * expected + 6.0 * (expected * (1.0 - p)).sqrt()
        });
    }

    /// Whatever the loads (none, fresh, measured, saturated, fewer than the
    /// instances), least loaded picks only live instances.
    #[test]
    fn least_loaded_picks_only_live_instances(
        weights in weights(40),
        measures in prop::collection::vec((0u64..=u64::MAX, 0u32..=3, any::<bool>()), 0..=40),
        seed: u64,
    ) {
        let picker = LeastLoaded::seeded(seed).build(&instances(&weights));
        picks_are_valid(&weights, 500, |n| picker.pick(None, n as u32 % 4));
        let now = Instant::now();
        let ewma = PeakEwma::new();
        let loads = loads(&measures, now, &ewma);
        let loads = Loads::from_slice(&loads, now, ewma);
        picks_are_valid(&weights, 2_000, |n| picker.pick_loaded(None, n as u32 % 4, &loads));
    }

    /// Idle instances of equal latency tie, and a tie keeps the first draw,
    /// made by weight: least loaded then follows the weights as weighted
    /// random does (same bound). With requests in flight it does not: equal
    /// counts in flight are not equal loads per weight.
    #[test]
    fn least_loaded_equal_loads_follow_weights(
        weights in prop::collection::vec(1u32..=1_000, 1..=12),
        drained in 0usize..3,
        latency_ms in 1u64..=1_000,
        seed: u64,
    ) {
        let mut weights = weights;
        weights.extend(std::iter::repeat_n(0, drained));
        let picker = LeastLoaded::seeded(seed).build(&instances(&weights));
        let now = Instant::now();
        let ewma = PeakEwma::new();
        let measures = vec![(latency_ms * 1_000_000, 0, false); weights.len()];
        let loads = loads(&measures, now, &ewma);
        let loads = Loads::from_slice(&loads, now, ewma);
        let counts = histogram(weights.len(), 20_000, |_| picker.pick_loaded(None, 0, &loads));
        shares_follow_weights(&weights, &counts, |expected, p| {
            6.0 * (expected * (1.0 - p)).sqrt() + 1.0
        });
    }

    /// An instance slower than all the others by a factor of 10 wins only
    /// when it is drawn as both candidates: with 3 or more instances of
    /// equal weight, at most (its share)^9 of the picks, here a bound of 1 %.
    #[test]
    fn least_loaded_avoids_the_slow_instance(
        n in 3usize..=12,
        slow in 0usize..12,
        fast_ms in 1u64..=100,
        seed: u64,
    ) {
        let slow = slow % n;
        let picker = LeastLoaded::seeded(seed).build(&instances(&vec![7; n]));
        let now = Instant::now();
        let ewma = PeakEwma::new();
        let mut measures = vec![(fast_ms * 1_000_000, 1, false); n];
        measures[slow].0 *= 10;
        let loads = loads(&measures, now, &ewma);
        let loads = Loads::from_slice(&loads, now, ewma);
        let counts = histogram(n, 10_000, |_| picker.pick_loaded(None, 0, &loads));
        prop_assert!(counts[slow] <= 100, "{counts:?}");
    }

    /// The same key goes to the same address whatever the order of the
    /// instances, and the first retries go to distinct instances.
    #[test]
    fn consistent_hash_is_stable_and_retries_elsewhere(
        weights in weights(12),
        key: u64,
        rotate in 0usize..12,
    ) {
        let set = instances(&weights);
        let picker = ConsistentHash::new().vnodes(16).build(&set);
        let mut rotated = set.clone();
        rotated.rotate_left(rotate.min(set.len()));
        let other = ConsistentHash::new().vnodes(16).build(&rotated);
        let addr = |set: &[Instance], i: Option<usize>| i.map(|i| set[i].addr().to_owned());
        prop_assert_eq!(addr(&set, picker.pick(Some(key), 0)), addr(&rotated, other.pick(Some(key), 0)));

        let live = weights.iter().filter(|&&w| w > 0).count();
        let tried: HashSet<usize> = (0..live.min(8) as u32)
            .filter_map(|attempt| picker.pick(Some(key), attempt))
            .collect();
        prop_assert_eq!(tried.len(), live.min(8));
    }
}

/// Tags from a small alphabet, so that filters often match.
fn tags() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop::sample::select(vec!["zone", "tier", "canary", "k,=\\"]);
    let value = prop::sample::select(vec!["a", "b", "", "x=y"]);
    prop::collection::vec(
        (key.prop_map(str::to_owned), value.prop_map(str::to_owned)),
        0..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `select` yields only matching instances with `Fallback::Fail` (and
    /// some of them pickable), all of them when the fallback applies or the
    /// filter is empty, and a picker built on the selection never leaves it.
    #[test]
    fn tag_filters_yield_only_matching_instances(
        set in prop::collection::vec((tags(), prop_oneof![Just(0u32), 1u32..=10]), 0..8),
        filter in tags(),
        seed: u64,
    ) {
        let all: Vec<Instance> = set
            .iter()
            .enumerate()
            .map(|(i, (tags, weight))| {
                Instance::new(format!("10.0.0.{i}:80"))
                    .and_then(|instance| instance.with_tags(tags.iter().cloned()))
                    .expect("valid instance")
                    .with_weight(*weight)
            })
            .collect();
        let filter: TagFilter = filter.into_iter().collect();
        // Its string form is how users write it: the same filter.
        let reparsed = filter.to_string().parse::<TagFilter>();
        prop_assert_eq!(reparsed.as_ref(), Ok(&filter));

        let pickable = all.iter().any(|i| filter.matches(i) && i.weight() > 0);
        if filter.is_empty() {
            // The empty filter selects every instance, pickable or not.
            let selected = filter.select(&all, Fallback::Fail).expect("always some");
            prop_assert_eq!(&*selected, &all[..]);
            return Ok(());
        }
        match filter.select(&all, Fallback::Fail) {
            Some(selected) => {
                prop_assert!(pickable);
                prop_assert!(selected.iter().all(|i| filter.matches(i)));
                let picker = WeightedRandom::seeded(seed).build(&selected);
                for _ in 0..50 {
                    let i = picker.pick(None, 0).expect("a pickable instance");
                    prop_assert!(filter.matches(&selected[i]) && selected[i].weight() > 0);
                }
            }
            None => prop_assert!(!pickable),
        }
        let fallback = filter.select(&all, Fallback::AllInstances).expect("always some");
        if pickable {
            prop_assert!(fallback.iter().all(|i| filter.matches(i)));
        } else {
            prop_assert_eq!(&*fallback, &all[..]);
        }
    }
}
