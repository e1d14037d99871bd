//! Weighted random: an alias table (Vose), one random draw per pick.

use std::fmt;

use super::alias::AliasTable;
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
            table: AliasTable::new(&weights),
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
    table: AliasTable,
    rng: Rng,
}

impl WeightedRandomPicker {
    /// The sum of the weights.
    pub fn total_weight(&self) -> u64 {
        self.table.total()
    }
}

impl Pick for WeightedRandomPicker {
    #[inline]
    fn pick(&self, _key: Option<u64>, _attempt: u32) -> Option<usize> {
        if self.table.len() == 0 {
            return None;
        }
        self.table.draw(self.rng.next_u64())
    }
}

impl fmt::Debug for WeightedRandomPicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedRandomPicker")
            .field("instances", &self.table.len())
            .field("total_weight", &self.table.total())
            .field("rng", &self.rng)
            .finish()
    }
}

#[cfg(test)]
mod tests;
