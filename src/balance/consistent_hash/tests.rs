//! The ring: stable positions, few keys moved, retries to distinct instances.

use super::*;
use crate::balance::test_support::{histogram, instances};
use rand::{rngs::SmallRng, Rng as _, SeedableRng};

fn keys(n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| ConsistentHash::key_of(format!("key-{i}").as_bytes()))
        .collect()
}

/// The address each key goes to.
fn route(instances: &[Instance], keys: &[u64]) -> Vec<String> {
    let picker = ConsistentHash::new().build(instances);
    keys.iter()
        .map(|&k| {
            let i = picker.pick(Some(k), 0).expect("a pick");
            instances[i].addr().to_owned()
        })
        .collect()
}

fn moved(a: &[String], b: &[String]) -> f64 {
    a.iter().zip(b).filter(|(a, b)| a != b).count() as f64 / a.len() as f64
}

#[test]
fn xxh64_reference_values() {
    // From the reference implementation (xxhash-rust 0.8.21).
    let long: Vec<u8> = (0..100u8).collect();
    for (input, expected) in [
        (&b""[..], 0xEF46_DB37_51D8_E999),
        (b"a", 0xD24E_C4F1_A98C_6E5B),
        (b"abc", 0x44BC_2CF5_AD77_0999),
        (b"user-42", 0x397E_9D3A_76AF_7C81),
        (b"0123456789abcdef0123456789abcdef", 0x642A_9495_8E71_E6C5),
        (
            b"The quick brown fox jumps over the lazy dog",
            0x0B24_2D36_1FDA_71BC,
        ),
        (&long, 0x6AC1_E580_3216_6597),
    ] {
        assert_eq!(xxh64(input, 0), expected, "{input:?}");
    }
    assert_eq!(xxh64(b"abc", 7), 0x9E75_5206_1566_76D7);
}

#[test]
fn same_key_same_instance() {
    let instances = instances(&[10; 20]);
    let picker = ConsistentHash::new().build(&instances);
    for key in keys(1000) {
        let first = picker.pick(Some(key), 0);
        assert!(first.is_some());
        assert_eq!(picker.pick(Some(key), 0), first);
    }
}

#[test]
fn adding_an_instance_moves_about_one_nth() {
    let keys = keys(10_000);
    // Equal weights: only the new instance's keys move.
    let mut before = instances(&[10; 51]);
    let added = before.pop().expect("51 instances");
    let mut after = before.clone();
    after.insert(17, added.clone());
    let (a, b) = (route(&before, &keys), route(&after, &keys));
    let fraction = moved(&a, &b);
    assert!(fraction < 2.0 / 51.0, "{fraction}");
    assert!(fraction > 0.2 / 51.0, "{fraction}");
    // The keys that moved went to the new instance.
    assert!(a.iter().zip(&b).all(|(a, b)| a == b || b == added.addr()));

    // Random weights, and a new instance of another weight.
    let mut rng = SmallRng::seed_from_u64(1);
    let weights: Vec<u32> = (0..50).map(|_| rng.random_range(1..=100)).collect();
    let before = instances(&weights);
    let mut after = before.clone();
    after.push(
        Instance::new("192.168.0.1:80")
            .expect("valid")
            .with_weight(80),
    );
    let (a, b) = (route(&before, &keys), route(&after, &keys));
    // The new instance takes its share; the others' node counts follow
    // the new mean weight, which moves a little more, also O(1/n).
    let total: u32 = weights.iter().sum::<u32>() + 80;
    let share = 80.0 / f64::from(total);
    let to_new = a
        .iter()
        .zip(&b)
        .filter(|(a, b)| a != b && *b == "192.168.0.1:80")
        .count() as f64
        / keys.len() as f64;
    let fraction = moved(&a, &b);
    assert!((to_new - share).abs() < share / 2.0, "{to_new} {share}");
    assert!(fraction - to_new < 1.0 / 51.0, "{fraction} {to_new}");

    // Removing an instance (of mean weight) moves only its own keys.
    let before = instances(&[10; 50]);
    let mut fewer = before.clone();
    let removed = fewer.remove(3);
    let (a, b) = (route(&before, &keys), route(&fewer, &keys));
    assert!(a.iter().zip(&b).all(|(a, b)| a == b || a == removed.addr()));
}

#[test]
fn order_of_instances_does_not_matter() {
    let keys = keys(2000);
    let mut instances = instances(&[3, 0, 7, 10, 1, 25]);
    let a = route(&instances, &keys);
    instances.reverse();
    assert_eq!(a, route(&instances, &keys));
}

#[test]
fn shares_follow_weights() {
    let weights = [1, 2, 3, 4, 0];
    let picker = ConsistentHash::new()
        .vnodes(2000)
        .build(&instances(&weights));
    let mut key = 0u64;
    let counts = histogram(weights.len(), 200_000, || {
        key += 1;
        picker.pick(Some(key), 0)
    });
    assert_eq!(counts[4], 0);
    for (i, &c) in counts[..4].iter().enumerate() {
        let share = c as f64 / 200_000.0;
        let expected = f64::from(weights[i]) / 10.0;
        assert!((share - expected).abs() < 0.1 * expected, "{counts:?}");
    }
    // Without a key: random points, same shares.
    let counts = histogram(weights.len(), 200_000, || picker.pick(None, 0));
    assert_eq!(counts[4], 0);
    assert!(counts[3] > counts[0] * 3, "{counts:?}");
}

#[test]
fn attempts_walk_to_distinct_instances() {
    let weights = [10, 0, 10, 30, 5, 10];
    let picker = ConsistentHash::new().build(&instances(&weights));
    for key in keys(500) {
        let walk: Vec<usize> = (0..5)
            .map(|a| picker.pick(Some(key), a).expect("a pick"))
            .collect();
        let mut distinct = walk.clone();
        distinct.sort_unstable();
        assert_eq!(distinct, [0, 2, 3, 4, 5], "{walk:?}");
        // Attempts wrap around the live instances.
        assert_eq!(picker.pick(Some(key), 5), Some(walk[0]));
        assert_eq!(picker.pick(Some(key), 7), Some(walk[2]));
        // Deep retries stay on live instances.
        for attempt in [8, 9, 100, u32::MAX] {
            let i = picker.pick(Some(key), attempt).expect("a pick");
            assert_ne!(weights[i], 0);
        }
    }
    // Many instances: the first 8 attempts are distinct.
    let picker = ConsistentHash::new().build(&instances(&[1; 100]));
    for key in keys(100) {
        let mut walk: Vec<usize> = (0..8)
            .map(|a| picker.pick(Some(key), a).expect("a pick"))
            .collect();
        walk.sort_unstable();
        walk.dedup();
        assert_eq!(walk.len(), 8);
    }
}

#[test]
fn empty_and_drained() {
    let picker = ConsistentHash::new().build(&[]);
    assert_eq!(picker.pick(Some(1), 0), None);
    assert_eq!(picker.pick(None, 1), None);
    let picker = ConsistentHash::new().build(&instances(&[0, 0, 0]));
    assert_eq!(picker.pick(Some(1), 0), None);
    assert_eq!(picker.ring_size(), 0);
    let picker = ConsistentHash::new().build(&instances(&[0, 1, 0]));
    assert!((0..20).all(|a| picker.pick(Some(u64::from(a)), a) == Some(1)));
    assert_eq!(picker.ring_size(), 160);
}

#[test]
fn ring_sizes() {
    // Huge weights: node counts follow the mean, not the raw weights.
    let picker = ConsistentHash::new().build(&instances(&[u32::MAX, u32::MAX, 1]));
    assert_eq!(picker.ring_size(), 240 + 240 + 1);
    // A small cap: one node per instance at least.
    let picker = ConsistentHash::new()
        .max_ring_size(10)
        .build(&instances(&[5; 40]));
    assert_eq!(picker.ring_size(), 40);
    let picker = ConsistentHash::new().vnodes(0).build(&instances(&[5; 3]));
    assert_eq!(picker.ring_size(), 3);
    // Extreme options are clamped: a ring within the largest cap.
    let extreme = ConsistentHash::new()
        .vnodes(u32::MAX)
        .max_ring_size(usize::MAX);
    assert_eq!(extreme.max_ring_size, ConsistentHash::LARGEST_RING_SIZE);
    let picker = ConsistentHash::new()
        .vnodes(u32::MAX)
        .build(&instances(&[1, u32::MAX]));
    assert!(picker.ring_size() <= ConsistentHash::DEFAULT_MAX_RING_SIZE + 2);
    assert!(picker.pick(Some(1), u32::MAX).is_some());
}

#[test]
fn ten_thousand_instances() {
    let weights: Vec<u32> = (0..10_000).map(|i| (i % 100) as u32).collect();
    let picker = ConsistentHash::new()
        .max_ring_size(1 << 16)
        .build(&instances(&weights));
    assert!(picker.ring_size() >= 9_900);
    for key in keys(10_000) {
        let i = picker.pick(Some(key), 0).expect("a pick");
        assert_ne!(weights[i], 0);
        let j = picker.pick(Some(key), 1).expect("a pick");
        assert_ne!(i, j);
    }
}

#[test]
fn ring_lookup() {
    let mut rng = SmallRng::seed_from_u64(4);
    for n in [1, 2, 3, 10, 333] {
        let weights: Vec<u32> = (0..n).map(|_| rng.random_range(0..=20)).collect();
        let picker = ConsistentHash::new().build(&instances(&weights));
        assert!(picker.ring.points().windows(2).all(|w| w[0] <= w[1]));
        if picker.ring.points().is_empty() {
            continue;
        }
        let len = picker.ring.points().len();
        for point in (0..10_000)
            .map(|_| rng.random::<u64>())
            .chain([0, 1, u64::MAX])
        {
            let expected = picker.ring.points().partition_point(|&p| p < point) % len;
            assert_eq!(picker.node_at(point), expected);
        }
        for &point in picker.ring.points().iter() {
            assert_eq!(picker.ring.points()[picker.node_at(point)], point);
        }
    }
}

#[test]
fn small_integer_keys_spread() {
    let picker = ConsistentHash::new().build(&instances(&[1; 10]));
    let mut key = 0u64;
    let counts = histogram(10, 10_000, || {
        key += 1;
        picker.pick(Some(key), 0)
    });
    assert!(counts.iter().all(|&c| c > 500), "{counts:?}");
}
