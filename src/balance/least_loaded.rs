//! Least loaded: weighted power of two choices over peak-EWMA latency
//! times requests in flight.

use std::fmt;
use std::time::Duration;

use super::alias::AliasTable;
use super::rng::Rng;
use super::{index_limit, Balance, Loads, PeakEwma, Pick};
use crate::Instance;

/// How often a pick draws again for a second candidate distinct from the
/// first; a heavy instance draws itself again often, and a pick must stay
/// bounded.
const REDRAWS: usize = 8;

/// Sends each request to the less loaded of two instances drawn by weight
/// (weighted power of two choices), where the load is an instance's
/// peak-EWMA latency times its requests in flight: a slow, hung or
/// overloaded instance gets a small share, and an idle one is tried again as
/// its estimate decays.
///
/// A pick draws two distinct instances from the alias table of
/// [`WeightedRandom`](super::WeightedRandom) (up to 8 draws for the second;
/// if all repeat the first, the first is used; with two instances, the
/// second is the other one), then compares their cost
/// divided by their weight, where the cost is
/// `latency × (outstanding + weight / mean weight)`. With equal weights
/// this is Finagle's and tower's `latency × (outstanding + 1)`. With
/// unequal ones, the `+ 1` becomes the instance's weight relative to the
/// mean: idle instances of equal latency then tie, and a tie keeps the first
/// draw, so that they share requests in proportion to their weights (with a
/// plain `+ 1` the heavier of two idle instances would always win: in a
/// simulation at one request at a time, weights 1:2:3:4 got 0 %, 5 %, 24 %
/// and 72 % of the requests). Under load, `outstanding / weight` dominates, so requests in
/// flight follow the weights. Weight `0` is never picked.
///
/// The discovery layer measures each instance's load (it asks
/// [`peak_ewma`](Balance::peak_ewma)) and calls
/// [`pick_loaded`](Pick::pick_loaded); [`pick`](Pick::pick) without loads is
/// weighted random. A pick is O(1): two draws (up to 9), three atomic
/// loads and one `exp` per candidate, one comparison; no allocation, no
/// lock (about 40 ns against 2 ns for weighted random in `benches/pick.rs`,
/// without the layer's bookkeeping). Retries
/// (`attempt > 0`) draw afresh, as with `WeightedRandom`.
///
/// ```
/// use std::time::Duration;
/// use redis_discovery::balance::{Balance, InstanceLoad, LeastLoaded, Loads, Pick};
/// use redis_discovery::Instance;
/// use tokio::time::Instant;
///
/// let balancer = LeastLoaded::seeded(7).decay(Duration::from_secs(5));
/// let instances = [Instance::new("10.0.0.1:80")?, Instance::new("10.0.0.2:80")?];
/// let picker = balancer.build(&instances);
///
/// // What the layer measures: instance 0 answered in 200 ms, instance 1 in 2 ms.
/// let (now, ewma) = (Instant::now(), balancer.peak_ewma().expect("measures load"));
/// let loads = [InstanceLoad::new(now), InstanceLoad::new(now)];
/// for (load, ms) in loads.iter().zip([200, 2]) {
///     load.start();
///     load.end(Duration::from_millis(ms), false, now, &ewma);
/// }
/// let loads = Loads::from_slice(&loads, now, ewma);
/// // Two instances: both are always drawn, the faster one wins.
/// assert!((0..100).all(|_| picker.pick_loaded(None, 0, &loads) == Some(1)));
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeastLoaded {
    seed: Option<u64>,
    ewma: PeakEwma,
}

impl LeastLoaded {
    /// A balancer with the default [`PeakEwma`] (decay 10 s, default RTT
    /// 30 ms) whose pickers use the fast thread-local generator.
    pub fn new() -> Self {
        LeastLoaded {
            seed: None,
            ewma: PeakEwma::new(),
        }
    }

    /// A balancer whose pickers draw from a deterministic sequence starting
    /// at `seed`, as [`WeightedRandom::seeded`](super::WeightedRandom::seeded).
    pub fn seeded(seed: u64) -> Self {
        LeastLoaded {
            seed: Some(seed),
            ewma: PeakEwma::new(),
        }
    }

    /// The EWMA's time constant (default 10 s, clamped to 1 ms..=1 h): see
    /// [`PeakEwma::decay`].
    pub fn decay(mut self, decay: Duration) -> Self {
        self.ewma = self.ewma.decay(decay);
        self
    }

    /// The latency assumed for an instance not measured yet (default 30 ms,
    /// clamped to 1 µs..=1 h): see [`PeakEwma::default_rtt`].
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.ewma = self.ewma.default_rtt(rtt);
        self
    }
}

impl Balance for LeastLoaded {
    type Picker = LeastLoadedPicker;

    fn build(&self, instances: &[Instance]) -> LeastLoadedPicker {
        let weights: Box<[u32]> = index_limit(instances)
            .iter()
            .map(Instance::weight)
            .collect();
        let table = AliasTable::new(&weights);
        let mean_weight = table.total() as f64 / table.live().max(1) as f64;
        let mut live = (0..weights.len()).filter(|&i| weights[i] > 0);
        let pair = match (live.next(), live.next(), live.next()) {
            (Some(a), Some(b), None) => Some([a, b]),
            _ => None,
        };
        LeastLoadedPicker {
            table,
            weights,
            pair,
            mean_weight,
            rng: Rng::new(self.seed),
        }
    }

    fn peak_ewma(&self) -> Option<PeakEwma> {
        Some(self.ewma)
    }
}

/// The picker of [`LeastLoaded`]: an alias table and the weights.
///
/// ```
/// use redis_discovery::balance::{Balance, LeastLoaded, Pick};
/// use redis_discovery::Instance;
///
/// let instances = [Instance::new("10.0.0.1:80")?.with_weight(0), Instance::new("10.0.0.2:80")?];
/// let picker = LeastLoaded::new().build(&instances);
/// assert_eq!(picker.pick(None, 0), Some(1)); // without loads: weighted random
/// assert_eq!(LeastLoaded::new().build(&[]).pick(None, 0), None);
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
pub struct LeastLoadedPicker {
    table: AliasTable,
    /// By index, as given to `build` (cut at `u32::MAX` instances).
    weights: Box<[u32]>,
    /// The mean of the weights above 0.
    mean_weight: f64,
    /// The only two instances with a weight, when there are two: the second
    /// candidate is then the other one, without redraws.
    pair: Option<[usize; 2]>,
    rng: Rng,
}

impl LeastLoadedPicker {
    /// One draw by weight; `None` when no weight is above 0.
    #[inline]
    fn draw(&self) -> Option<usize> {
        if self.table.len() == 0 {
            return None;
        }
        self.table.draw(self.rng.next_u64())
    }

    /// `latency × (outstanding × mean weight + weight)`: the cost divided
    /// by the weight, times the weight of the other candidate and the mean
    /// weight (no division); NaN and out-of-range count as infinite.
    #[inline]
    fn scaled_cost(&self, index: usize, other_weight: u32, loads: &Loads<'_>) -> f64 {
        let weight = self.weights.get(index).copied().unwrap_or(0);
        let Some((latency, outstanding)) = loads.latency_and_outstanding(index) else {
            return f64::INFINITY;
        };
        let latency = if latency.is_nan() {
            f64::INFINITY
        } else {
            latency.max(0.0)
        };
        // With nothing in flight the factor is `weight × other_weight` on
        // both sides, bit for bit (multiplication commutes), so idle
        // instances of equal latency tie exactly.
        latency
            * ((f64::from(outstanding) * self.mean_weight + f64::from(weight))
                * f64::from(other_weight))
    }
}

impl Pick for LeastLoadedPicker {
    /// Weighted random: without loads there is nothing to compare.
    #[inline]
    fn pick(&self, _key: Option<u64>, _attempt: u32) -> Option<usize> {
        self.draw()
    }

    #[inline]
    fn pick_loaded(&self, _key: Option<u64>, _attempt: u32, loads: &Loads<'_>) -> Option<usize> {
        let a = self.draw()?;
        if self.table.live() < 2 {
            return Some(a);
        }
        let other = match self.pair {
            Some([first, second]) => Some(if a == first { second } else { first }),
            None => (0..REDRAWS).filter_map(|_| self.draw()).find(|&b| b != a),
        };
        let Some(b) = other else {
            return Some(a);
        };
        let weight = |i: usize| self.weights.get(i).copied().unwrap_or(0);
        // Compare cost_a / w_a with cost_b / w_b as cost_a × w_b and
        // cost_b × w_a (both weights are above 0: drawn). A tie keeps the
        // first draw, so equal loads per weight follow the weights.
        let cost_a = self.scaled_cost(a, weight(b), loads);
        let cost_b = self.scaled_cost(b, weight(a), loads);
        Some(if cost_b < cost_a { b } else { a })
    }
}

impl fmt::Debug for LeastLoadedPicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeastLoadedPicker")
            .field("instances", &self.table.len())
            .field("live", &self.table.live())
            .field("total_weight", &self.table.total())
            .field("rng", &self.rng)
            .finish()
    }
}

#[cfg(test)]
mod tests;
