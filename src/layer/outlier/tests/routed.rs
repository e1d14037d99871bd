//! Outlier detection through the router's picks: state across snapshots,
//! the panic threshold, and load measurement for load-aware balancers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foldhash::fast::FixedState;

use super::{addr, OutlierDetection};
use crate::balance::{Balance, Loads, PeakEwma, Pick, RoundRobin, WeightedRandom};
use crate::instance::{Instance, ServiceName};
use crate::layer::attempts::Tried;
use crate::layer::pick::{Outcome, PickRequest, Picked};
use crate::layer::router::{Route, Router};
use crate::resolver::{Snapshot, StaticResolver};

fn snapshot(ids: &[usize]) -> Snapshot {
    let instances = ids
        .iter()
        .map(|&i| Instance::new(addr(i)).unwrap())
        .collect();
    Snapshot::new(ServiceName::new("orders").unwrap(), instances)
}

fn router<B: Balance>(balance: B, outlier: OutlierDetection) -> Router<StaticResolver, B> {
    let options = crate::layer::options::Options {
        outlier,
        ..Default::default()
    };
    Router::new(StaticResolver::new(), balance, options)
}

const FIRST: PickRequest<'static> = PickRequest {
    key: None,
    filter: None,
    attempt: 0,
    tried: None,
};

fn pick(router: &impl Route, snapshot: &Snapshot, request: PickRequest<'_>) -> Picked {
    router.pick_from(snapshot.clone(), request).unwrap()
}

/// Picks until instance `i` comes up, and records `outcome` for it.
fn record(router: &impl Route, snapshot: &Snapshot, i: usize, outcome: Outcome) {
    let wanted = addr(i);
    let picked = (0..1000)
        .map(|_| pick(router, snapshot, FIRST))
        .find(|p| p.authority().as_str() == wanted)
        .expect("instance picked");
    picked.record(outcome);
}

/// Picks `n` times: how often each address came up.
fn shares(router: &impl Route, snapshot: &Snapshot, n: usize) -> HashMap<String, usize> {
    let mut shares = HashMap::new();
    for _ in 0..n {
        let picked = pick(router, snapshot, FIRST);
        *shares.entry(picked.authority().to_string()).or_default() += 1;
    }
    shares
}

#[tokio::test(start_paused = true)]
async fn ejection_survives_a_snapshot_change_and_goes_with_the_instance() {
    let router = router(RoundRobin::new(), OutlierDetection::new());
    let first = snapshot(&[0, 1, 2, 3]);
    record(&router, &first, 1, Outcome::Refused);
    assert!(!shares(&router, &first, 40).contains_key(&addr(1)));
    // A new list of the same service finds the same state.
    let second = snapshot(&[0, 1, 2, 3, 4]);
    assert!(!shares(&router, &second, 50).contains_key(&addr(1)));
    // Unlisted, then listed again: a new state, not ejected.
    let third = snapshot(&[0, 2, 3, 4]);
    shares(&router, &third, 1);
    let fourth = snapshot(&[0, 1, 2, 3, 4]);
    assert!(shares(&router, &fourth, 50).contains_key(&addr(1)));
}

#[tokio::test(start_paused = true)]
async fn the_panic_threshold_spreads_traffic_over_all_instances() {
    let all = OutlierDetection::new().max_ejected_percent(100);
    let snapshot = snapshot(&[0, 1, 2, 3]);
    // Three of four ejected: below the 50 % threshold, every instance
    // keeps a share; with no threshold, the last one takes it all.
    for (threshold, spread) in [(50, true), (0, false)] {
        let router = router(
            WeightedRandom::seeded(3),
            all.panic_threshold_percent(threshold),
        );
        for i in 0..3 {
            record(&router, &snapshot, i, Outcome::Refused);
        }
        let shares = shares(&router, &snapshot, 400);
        if spread {
            for i in 0..4 {
                let share = shares.get(&addr(i)).copied().unwrap_or(0);
                assert!(share > 40, "{shares:?}");
            }
        } else {
            assert_eq!(shares.get(&addr(3)), Some(&400), "{shares:?}");
        }
        // Never an instance the request tried while another is left.
        let mut tried = Tried::with_hasher(FixedState::with_seed(0));
        tried.insert(addr(3).parse().unwrap());
        for attempt in 1..50 {
            let request = PickRequest {
                attempt,
                tried: Some(&tried),
                ..FIRST
            };
            let picked = pick(&router, &snapshot, request);
            assert_ne!(picked.authority().as_str(), addr(3));
        }
    }
}

/// A balancer that reads load: counts the picks that got it.
#[derive(Debug, Clone, Default)]
struct Loaded {
    loaded_picks: Arc<AtomicUsize>,
}

impl Balance for Loaded {
    type Picker = Loaded;
    fn build(&self, _: &[Instance]) -> Loaded {
        self.clone()
    }
    fn peak_ewma(&self) -> Option<PeakEwma> {
        Some(PeakEwma::new())
    }
}

impl Pick for Loaded {
    fn pick(&self, _: Option<u64>, _: u32) -> Option<usize> {
        Some(0)
    }
    fn pick_loaded(&self, _: Option<u64>, _: u32, loads: &Loads<'_>) -> Option<usize> {
        assert!(loads.cost(0).is_finite());
        assert!(loads.cost(usize::MAX).is_infinite(), "out of range");
        self.loaded_picks.fetch_add(1, Ordering::Relaxed);
        Some(0)
    }
}

#[tokio::test(start_paused = true)]
async fn load_is_measured_only_for_balancers_that_read_it() {
    let snapshot = snapshot(&[0, 1]);
    let plain = router(RoundRobin::new(), OutlierDetection::new());
    assert!(pick(&plain, &snapshot, FIRST).start().is_none());

    let balance = Loaded::default();
    let loaded = router(balance.clone(), OutlierDetection::new());
    let picked = pick(&loaded, &snapshot, FIRST);
    assert_eq!(balance.loaded_picks.load(Ordering::Relaxed), 1);
    let attempt = picked.start().expect("measured");
    attempt.end(false);
    drop(picked.start().expect("measured")); // ends as failed
                                             // Retries and ejections read load too.
    picked.record(Outcome::Refused);
    let mut tried = Tried::with_hasher(FixedState::with_seed(0));
    tried.insert(addr(0).parse().unwrap());
    let request = PickRequest {
        attempt: 1,
        tried: Some(&tried),
        ..FIRST
    };
    assert_eq!(
        pick(&loaded, &snapshot, request).authority().as_str(),
        addr(1)
    );
    assert!(balance.loaded_picks.load(Ordering::Relaxed) > 1);
}
