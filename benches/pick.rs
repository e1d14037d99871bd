//! One pick of each balancer at 10, 1 000 and 10 000 instances (weights
//! 1..=100), next to one bare random draw, plus the cost of `build`.
//! `LeastLoaded` picks with loads (`pick_loaded`): every instance measured
//! at a latency of 1..=50 ms with 0..=7 requests in flight, read at a time
//! 1 s after the measurement (so the decay's `exp` runs, as in the layer).
//!
//! `cargo bench --bench pick -- --warm-up-time 1 --measurement-time 2`
//!
//! The picks are unwrapped before `black_box`: `black_box(Option<usize>)`
//! writes the value as two 8-byte stores and reads it back as one 16-byte
//! load, a store-forwarding stall of about 10 ns that real callers, which
//! keep the index in a register, never pay.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use redis_discovery::balance::{
    Balance, ConsistentHash, InstanceLoad, LeastLoaded, Loads, Pick, RoundRobin, WeightedRandom,
};
use redis_discovery::Instance;
use tokio::time::Instant;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn instances(n: usize) -> Vec<Instance> {
    let mut rng = SmallRng::seed_from_u64(n as u64);
    (0..n)
        .map(|i| {
            Instance::new(format!(
                "10.{}.{}.{}:8080",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ))
            .expect("valid address")
            .with_weight(rng.random_range(1..=100))
        })
        .collect()
}

fn baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("rng");
    let mut small = SmallRng::seed_from_u64(1);
    group.bench_function("SmallRng::next_u64", |b| {
        b.iter(|| black_box(small.next_u64()))
    });
    group.bench_function("rand::rng().next_u64", |b| {
        b.iter(|| black_box(rand::rng().next_u64()))
    });
    group.finish();
}

fn pick<B: Balance>(c: &mut Criterion, name: &str, balance: B, keyed: bool) {
    let mut group = c.benchmark_group(format!("pick/{name}"));
    for n in SIZES {
        let picker = balance.build(&instances(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &picker, |b, picker| {
            if keyed {
                let mut key = 0u64;
                b.iter(|| {
                    key = key.wrapping_add(1);
                    black_box(picker.pick(black_box(Some(key)), 0).unwrap_or(usize::MAX))
                })
            } else {
                b.iter(|| black_box(picker.pick(black_box(None), 0).unwrap_or(usize::MAX)))
            }
        });
    }
    group.finish();
}

/// Loads as the layer keeps them: measured, some requests in flight.
fn loads(n: usize, base: Instant, balance: &LeastLoaded) -> Vec<InstanceLoad> {
    let ewma = balance.peak_ewma().expect("measures load");
    let mut rng = SmallRng::seed_from_u64(n as u64 + 1);
    (0..n)
        .map(|_| {
            let load = InstanceLoad::new(base);
            for _ in 0..rng.random_range(1..=8) {
                load.start();
            }
            let rtt = Duration::from_millis(rng.random_range(1..=50));
            load.end(rtt, false, base, &ewma);
            load
        })
        .collect()
}

fn pick_loaded(c: &mut Criterion, name: &str, balance: LeastLoaded) {
    let mut group = c.benchmark_group(format!("pick_loaded/{name}"));
    let ewma = balance.peak_ewma().expect("measures load");
    let base = Instant::now();
    let now = base + Duration::from_secs(1);
    for n in SIZES {
        let picker = balance.build(&instances(n));
        let loads = loads(n, base, &balance);
        let loads = Loads::from_slice(&loads, now, ewma);
        group.bench_with_input(BenchmarkId::from_parameter(n), &picker, |b, picker| {
            b.iter(|| {
                black_box(
                    picker
                        .pick_loaded(black_box(None), 0, black_box(&loads))
                        .unwrap_or(usize::MAX),
                )
            })
        });
    }
    group.finish();
}

fn picks(c: &mut Criterion) {
    pick(c, "WeightedRandom", WeightedRandom::new(), false);
    pick(
        c,
        "WeightedRandom::seeded",
        WeightedRandom::seeded(1),
        false,
    );
    pick(c, "RoundRobin", RoundRobin::new(), false);
    pick(c, "ConsistentHash", ConsistentHash::new(), true);
    pick(c, "LeastLoaded (no loads)", LeastLoaded::new(), false);
    pick_loaded(c, "LeastLoaded", LeastLoaded::new());
    pick_loaded(c, "LeastLoaded::seeded", LeastLoaded::seeded(1));

    let mut group = c.benchmark_group("key_of");
    let uuid = b"3f2a9c1e-7b4d-4e8a-9f0c-2d6b1a5e8c7f";
    group.bench_function("36 bytes", |b| {
        b.iter(|| black_box(ConsistentHash::key_of(black_box(uuid))))
    });
    group.finish();
}

fn builds(c: &mut Criterion) {
    let mut group = c.benchmark_group("build/10000");
    group.sample_size(10);
    let instances = instances(10_000);
    group.bench_function("WeightedRandom", |b| {
        b.iter(|| WeightedRandom::new().build(black_box(&instances)))
    });
    group.bench_function("RoundRobin", |b| {
        b.iter(|| RoundRobin::new().build(black_box(&instances)))
    });
    group.bench_function("ConsistentHash", |b| {
        b.iter(|| ConsistentHash::new().build(black_box(&instances)))
    });
    group.bench_function("LeastLoaded", |b| {
        b.iter(|| LeastLoaded::new().build(black_box(&instances)))
    });
    group.finish();
    let mut group = c.benchmark_group("build/1000");
    let instances = &instances[..1000];
    group.bench_function("RoundRobin", |b| {
        b.iter(|| RoundRobin::new().build(black_box(instances)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = baseline, picks, builds
}
criterion_main!(benches);
