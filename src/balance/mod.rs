//! Balancers: pick one instance of a snapshot (pure, no I/O).
//!
//! A [`Balance`] turns the instances of one snapshot into a [`Pick`]er, once
//! per snapshot change; the picker then chooses an instance for every request
//! without allocating and without taking a lock. The caller keeps the picker
//! next to the snapshot it was built from: [`Pick::pick`] returns an index into
//! that slice.
//!
//! ```
//! use redis_discovery::balance::{Balance, Pick, WeightedRandom};
//! use redis_discovery::Instance;
//!
//! let instances = vec![
//!     Instance::new("10.0.0.1:8080")?.with_weight(30),
//!     Instance::new("10.0.0.2:8080")?.with_weight(10),
//!     Instance::new("10.0.0.3:8080")?.with_weight(0), // drained: never picked
//! ];
//! let picker = WeightedRandom::new().build(&instances);
//! let index = picker.pick(None, 0).expect("two instances have a weight");
//! assert!(index < 2);
//! println!("sending to {}", instances[index].addr());
//!
//! // No instance with a weight above 0: no pick, never a panic.
//! assert_eq!(WeightedRandom::new().build(&[]).pick(None, 0), None);
//! # Ok::<(), redis_discovery::ValidationError>(())
//! ```
//!
//! # Balancers
//!
//! | balancer | pick | order |
//! | --- | --- | --- |
//! | [`WeightedRandom`] (the default) | O(1), alias table | random, share proportional to weight |
//! | [`RoundRobin`] | O(1), one atomic increment | nginx's smooth weighted round robin (a golden-ratio sequence for very large cycles) |
//! | [`ConsistentHash`] | O(1) expected, hash ring | the same key goes to the same instance |
//! | [`LeastLoaded`] | O(1), two draws of the alias table and two loads | the less loaded of two drawn by weight: latency × requests in flight, per weight |
//!
//! In all of them a weight of `0` means *drained*: the instance is never
//! picked, and a picker over instances that all have weight `0` (or over no
//! instance) returns `None`.
//!
//! [`LeastLoaded`] reads what the discovery layer measures of each instance
//! ([`Balance::peak_ewma`], [`Pick::pick_loaded`], [`Loads`]): it moves
//! requests away from slow, hung and overloaded instances, at the price of
//! the layer's bookkeeping (a few atomics per attempt); the others ignore
//! load.
//!
//! Building is O(n) for [`WeightedRandom`] and [`LeastLoaded`] and about
//! that for [`RoundRobin`] (bounded work: see its docs); [`ConsistentHash`] hashes and sorts its
//! ring, up to a million nodes by default, which takes tens of milliseconds
//! for thousands of instances: build pickers when a snapshot changes rather
//! than on a request's path where that matters.
//!
//! # Retries
//!
//! The `attempt` argument of [`Pick::pick`] is `0` for the first pick of a
//! request and counts up for its retries; balancers use it to move away from
//! the instance of the first attempt where they can: [`ConsistentHash`] walks
//! to the next distinct instance on the ring, [`WeightedRandom`] draws again,
//! [`LeastLoaded`] draws two new candidates (a slow failed attempt already
//! raised its instance's cost; a fast one never lowers it) and
//! [`RoundRobin`] takes the next pick of its sequence.
//!
//! # Tag filters
//!
//! [`TagFilter`] selects the instances that carry some tags (`zone=a`), and
//! [`Fallback`] says what happens when none does. Filtering happens before
//! [`Balance::build`]: [`TagFilter::select`] gives the slice to build from.

use std::fmt::Debug;

use crate::Instance;

mod alias;
mod consistent_hash;
mod filter;
mod least_loaded;
mod load;
mod lookup;
mod rng;
mod round_robin;
mod weighted_random;

pub use consistent_hash::{ConsistentHash, ConsistentHashPicker};
pub use filter::{Fallback, ParseTagFilterError, TagFilter};
pub use least_loaded::{LeastLoaded, LeastLoadedPicker};
pub(crate) use load::LoadSource;
pub use load::{InstanceLoad, Loads, PeakEwma};
pub use round_robin::{RoundRobin, RoundRobinPicker};
pub use weighted_random::{WeightedRandom, WeightedRandomPicker};

/// Builds a picker once per snapshot change. Pickers are cached by the caller
/// with the snapshot.
///
/// A balancer of one's own: always the first instance that is not drained,
/// the next ones on retries.
///
/// ```
/// use redis_discovery::balance::{Balance, Pick};
/// use redis_discovery::Instance;
///
/// #[derive(Debug)]
/// struct FirstLive;
///
/// #[derive(Debug)]
/// struct FirstLivePicker(Vec<usize>);
///
/// impl Balance for FirstLive {
///     type Picker = FirstLivePicker;
///     fn build(&self, instances: &[Instance]) -> FirstLivePicker {
///         FirstLivePicker((0..instances.len()).filter(|&i| instances[i].weight() > 0).collect())
///     }
/// }
///
/// impl Pick for FirstLivePicker {
///     fn pick(&self, _key: Option<u64>, attempt: u32) -> Option<usize> {
///         let live = &self.0;
///         (!live.is_empty()).then(|| live[attempt as usize % live.len()])
///     }
/// }
///
/// let instances = [
///     Instance::new("10.0.0.1:80")?.with_weight(0),
///     Instance::new("10.0.0.2:80")?,
///     Instance::new("10.0.0.3:80")?,
/// ];
/// let picker = FirstLive.build(&instances);
/// assert_eq!(picker.pick(None, 0), Some(1));
/// assert_eq!(picker.pick(None, 1), Some(2));
/// assert_eq!(FirstLive.build(&[]).pick(None, 0), None);
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
pub trait Balance: Send + Sync + 'static + Debug {
    /// The picker this balancer builds.
    type Picker: Pick;

    /// Builds a picker over `instances`. Never panics: an empty slice or one
    /// where every weight is `0` gives a picker that always returns `None`.
    fn build(&self, instances: &[Instance]) -> Self::Picker;

    /// Whether pickers use the request key of [`Pick::pick`]; when not,
    /// callers need not compute one. `false` unless overridden.
    fn uses_key(&self) -> bool {
        false
    }

    /// Whether pickers read the instances' load ([`Pick::pick_loaded`]),
    /// and how the layer should measure it; `None` (the default): the
    /// layer measures nothing and calls [`Pick::pick`].
    fn peak_ewma(&self) -> Option<PeakEwma> {
        None
    }
}

/// Picks an instance; no allocation, no lock.
///
/// ```
/// use redis_discovery::balance::{Balance, Pick, WeightedRandom};
/// use redis_discovery::Instance;
///
/// /// Tries up to three instances, as a retrying client would.
/// fn send(picker: &impl Pick, instances: &[Instance], key: Option<u64>) -> Option<String> {
///     for attempt in 0..3 {
///         let instance = &instances[picker.pick(key, attempt)?];
///         if instance.addr() != "10.0.0.1:80" {
///             return Some(instance.addr().to_owned()); // "sent"
///         }
///     }
///     None
/// }
///
/// let instances = [Instance::new("10.0.0.1:80")?, Instance::new("10.0.0.2:80")?];
/// let picker = WeightedRandom::seeded(7).build(&instances);
/// assert_eq!(send(&picker, &instances, None).as_deref(), Some("10.0.0.2:80"));
/// assert_eq!(send(&WeightedRandom::new().build(&[]), &[], None), None);
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
pub trait Pick: Send + Sync + 'static + Debug {
    /// Index into the slice given to `build`, or None if no instance has weight > 0.
    /// `key`: the request's hash key (used by ConsistentHash; others ignore it).
    /// `attempt`: 0 for the first pick of a request, 1, 2, ... for retries of the same
    /// request: return a different instance where possible (next on the ring, a fresh
    /// random draw, the next in sequence).
    fn pick(&self, key: Option<u64>, attempt: u32) -> Option<usize>;

    /// [`pick`](Self::pick) with the instances' measured load, for a
    /// balancer whose [`Balance::peak_ewma`] asks the layer to measure it.
    /// The default ignores the load.
    fn pick_loaded(&self, key: Option<u64>, attempt: u32, loads: &Loads<'_>) -> Option<usize> {
        let _ = loads;
        self.pick(key, attempt)
    }
}

/// The index type of the tables: instances beyond `u32::MAX` (which no
/// process could hold anyway) are ignored.
fn index_limit(instances: &[Instance]) -> &[Instance] {
    &instances[..instances.len().min(u32::MAX as usize)]
}

#[cfg(test)]
mod test_support {
    use crate::Instance;

    /// Instances `10.0.<i/256>.<i%256>:80` with the given weights.
    pub(crate) fn instances(weights: &[u32]) -> Vec<Instance> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Instance::new(format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255))
                    .expect("valid address")
                    .with_weight(w)
            })
            .collect()
    }

    /// Counts the picks of `picks` draws, per index.
    pub(crate) fn histogram(
        n: usize,
        picks: usize,
        mut pick: impl FnMut() -> Option<usize>,
    ) -> Vec<usize> {
        let mut counts = vec![0; n];
        for _ in 0..picks {
            counts[pick().expect("a pick")] += 1;
        }
        counts
    }
}
