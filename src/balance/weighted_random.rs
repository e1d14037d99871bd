//! Weighted random: an alias table (Vose), one random draw per pick.

use std::fmt;

use super::rng::Rng;
use super::{index_limit, Balance, Pick};
use crate::Instance;

/// Picks a random instance with probability proportional to its weight (the
/// default balancer).
///
/// [`build`](Balance::build) makes a Walker/Vose alias table in O(n) with
/// exact integer arithmetic (weights sum as `u64`, so any number of
/// `u32::MAX` weights is fine); a pick is one 64-bit draw, one table read and
/// one comparison, whatever the number of instances. Weight `0` is never
/// picked.
///
/// The random numbers come from `fastrand`'s per-thread generator (fast, not
/// cryptographic, seeded once per thread). [`seeded`](Self::seeded)
/// gives pickers a deterministic, lock-free (atomic) generator instead, for
/// tests and simulations.
///
/// ```
/// use redis_discovery::balance::{Balance, Pick, WeightedRandom};
/// use redis_discovery::Instance;
///
/// let instances = [
///     Instance::new("10.0.0.1:80")?.with_weight(3),
///     Instance::new("10.0.0.2:80")?.with_weight(1),
/// ];
/// let picker = WeightedRandom::seeded(42).build(&instances);
/// let first = (0..10_000).filter(|_| picker.pick(None, 0) == Some(0)).count();
/// assert!((7_000..8_000).contains(&first)); // about 3 in 4
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightedRandom {
    seed: Option<u64>,
}

impl WeightedRandom {
    /// A balancer whose pickers use the fast thread-local generator.
    pub fn new() -> Self {
        WeightedRandom { seed: None }
    }

    /// A balancer whose pickers draw from a deterministic sequence starting at
    /// `seed` (every picker it builds starts afresh). Picks from one thread
    /// are reproducible; picks from several threads share the sequence.
    pub fn seeded(seed: u64) -> Self {
        WeightedRandom { seed: Some(seed) }
    }
}

impl Balance for WeightedRandom {
    type Picker = WeightedRandomPicker;

    fn build(&self, instances: &[Instance]) -> WeightedRandomPicker {
        let weights: Vec<u32> = index_limit(instances)
            .iter()
            .map(Instance::weight)
            .collect();
        WeightedRandomPicker {
            total: weights.iter().map(|&w| u64::from(w)).sum(),
            table: alias_table(&weights),
            rng: Rng::new(self.seed),
        }
    }
}

/// The picker of [`WeightedRandom`]: an alias table.
///
/// ```
/// use redis_discovery::balance::{Balance, Pick, WeightedRandom};
/// use redis_discovery::Instance;
///
/// let instances = vec![Instance::new("10.0.0.1:80")?.with_weight(u32::MAX); 3];
/// let picker = WeightedRandom::new().build(&instances);
/// assert_eq!(picker.total_weight(), 3 * u64::from(u32::MAX));
/// assert!(picker.pick(None, 0).is_some());
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
pub struct WeightedRandomPicker {
    /// One column per instance; empty when no weight is above 0.
    table: Box<[Column]>,
    total: u64,
    rng: Rng,
}

/// A column of the alias table: the column's own instance is chosen when the
/// low 32 bits of the draw are below `threshold`, else `alias`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Column {
    threshold: u32,
    alias: u32,
}

impl WeightedRandomPicker {
    /// The sum of the weights.
    pub fn total_weight(&self) -> u64 {
        self.total
    }
}

impl Pick for WeightedRandomPicker {
    #[inline]
    fn pick(&self, _key: Option<u64>, _attempt: u32) -> Option<usize> {
        let n = self.table.len() as u64;
        if n == 0 {
            return None;
        }
        let r = self.rng.next_u64();
        // High 32 bits: the column (Lemire's multiply-shift, n <= u32::MAX);
        // low 32 bits: the coin.
        let column = ((r >> 32) * n) >> 32;
        let Column { threshold, alias } = *self.table.get(column as usize)?;
        // A coin flip: a branch would be mispredicted half the time.
        Some(std::hint::select_unpredictable(
            (r as u32) < threshold,
            column as usize,
            alias as usize,
        ))
    }
}

impl fmt::Debug for WeightedRandomPicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedRandomPicker")
            .field("instances", &self.table.len())
            .field("total_weight", &self.total)
            .field("rng", &self.rng)
            .finish()
    }
}

/// Vose's alias method in integers: with `n` columns of height `total`,
/// instance `i` brings `w_i * n` units (at most `u32::MAX * u32::MAX`, so
/// `u64` is enough) and every column is filled by at most two instances.
/// Empty when every weight is 0.
fn alias_table(weights: &[u32]) -> Box<[Column]> {
    let n = weights.len() as u64;
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let Some(first_positive) = weights.iter().position(|&w| w > 0) else {
        return Box::new([]);
    };
    let mut units: Vec<u64> = weights.iter().map(|&w| u64::from(w) * n).collect();
    // Until filled, a column is full (its own instance, always).
    let mut table: Vec<Column> = (0..weights.len() as u32)
        .map(|i| Column {
            threshold: u32::MAX,
            alias: i,
        })
        .collect();
    let (mut small, mut large): (Vec<u32>, Vec<u32>) =
        (0..weights.len() as u32).partition(|&i| units[i as usize] < total);
    while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
        small.pop();
        let s_units = units[s as usize];
        // s_units < total, so the quotient is below 2^32.
        let threshold = ((u128::from(s_units) << 32) / u128::from(total)) as u32;
        table[s as usize] = Column {
            threshold,
            alias: l,
        };
        // The large instance fills the rest of column s: total - s_units <= its units.
        units[l as usize] -= total - s_units;
        if units[l as usize] < total {
            large.pop();
            small.push(l);
        }
    }
    // With exact arithmetic the units left over are exactly `total` per
    // column, so only full columns remain (already set). Should a small one
    // remain anyway, it must not pick a drained instance.
    for s in small {
        if weights[s as usize] == 0 {
            table[s as usize] = Column {
                threshold: 0,
                alias: first_positive as u32,
            };
        }
    }
    table.into_boxed_slice()
}

#[cfg(test)]
mod tests;
