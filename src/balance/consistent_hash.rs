//! Consistent hashing: a ring of virtual nodes proportional to weight.

use std::fmt;

use xxhash_rust::xxh64::xxh64;

use super::lookup::Lookup;
use super::rng::{mix64, thread_u64, GAMMA};
use super::{index_limit, Balance, Pick};
use crate::Instance;

/// Sends the same key to the same instance, and moves few keys when
/// instances come and go.
///
/// Every instance with weight > 0 gets virtual nodes on a ring of `u64`
/// points, as many as its weight relative to the mean weight
/// (`vnodes × weight / mean weight`, at least one; weight `0` gets none); a
/// key goes to the first node clockwise from its point. Adding or removing an
/// instance only moves the keys of its own nodes, about `1/n` of them (plus a
/// little when the mean weight changes, since the other instances' node
/// counts follow it).
///
/// The ring depends only on the instances' addresses and weights, not on
/// their order or on the process: every client with the same snapshot sends
/// a key to the same address. Node points are SplitMix64 outputs seeded with
/// the XXH64 hash of the address; key points are the key through the
/// SplitMix64 output function, so that small integer keys (user ids) spread
/// over the ring too.
///
/// The key comes from the request, e.g. a header value through
/// [`key_of`](Self::key_of). Without a key the picker takes a random point
/// (so a weighted random pick). `attempt` `k` goes to the `k`-th distinct
/// instance clockwise (modulo the number of instances); from the 8th retry on,
/// to the instance of a point derived from the key and the attempt instead,
/// which may repeat an earlier one.
///
/// A pick is a table lookup and a short binary search (O(1) expected). The
/// ring has about `vnodes × instances` nodes, at most about
/// [`max_ring_size`](Self::max_ring_size) (16 bytes a node): with the defaults,
/// 160 nodes per instance up to 6 553 instances, fewer beyond (about 100 each
/// at 10 000 instances: a 16 MB ring that takes tens of milliseconds to
/// build; lower the cap to trade evenness for memory and build time).
///
/// ```
/// use redis_discovery::balance::{Balance, ConsistentHash, Pick};
/// use redis_discovery::Instance;
///
/// let instances = [
///     Instance::new("10.0.0.1:80")?,
///     Instance::new("10.0.0.2:80")?.with_weight(0), // drained: no nodes
///     Instance::new("10.0.0.3:80")?,
/// ];
/// let picker = ConsistentHash::new().build(&instances);
/// let session = ConsistentHash::key_of(b"session-3f2a");
/// let home = picker.pick(Some(session), 0).expect("an instance");
/// assert_ne!(home, 1);
/// assert_eq!(picker.pick(Some(session), 0), Some(home));
/// // A retry goes to the other live instance.
/// assert_eq!(picker.pick(Some(session), 1), Some(2 - home));
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistentHash {
    vnodes: u32,
    max_ring_size: usize,
}

impl Default for ConsistentHash {
    fn default() -> Self {
        ConsistentHash::new()
    }
}

impl ConsistentHash {
    /// Virtual nodes of an instance of mean weight, unless set otherwise.
    pub const DEFAULT_VNODES: u32 = 160;
    /// The largest ring, in nodes, unless set otherwise.
    pub const DEFAULT_MAX_RING_SIZE: usize = 1 << 20;
    /// The largest cap [`max_ring_size`](Self::max_ring_size) takes:
    /// 2^24 nodes, a 256 MiB ring that takes seconds to build.
    pub const LARGEST_RING_SIZE: usize = 1 << 24;
    /// Retries up to this attempt walk to distinct instances (see the type's docs).
    const MAX_WALK: usize = 8;

    /// A ring with [`DEFAULT_VNODES`](Self::DEFAULT_VNODES) nodes per
    /// instance of mean weight and at most about
    /// [`DEFAULT_MAX_RING_SIZE`](Self::DEFAULT_MAX_RING_SIZE) nodes.
    pub fn new() -> Self {
        ConsistentHash {
            vnodes: Self::DEFAULT_VNODES,
            max_ring_size: Self::DEFAULT_MAX_RING_SIZE,
        }
    }

    /// Sets the virtual nodes of an instance of mean weight (clamped to at
    /// least 1; the ring stays within [`max_ring_size`](Self::max_ring_size)
    /// however many are asked for). More nodes spread the keys more evenly
    /// and cost memory and build time.
    pub fn vnodes(mut self, per_instance: u32) -> Self {
        self.vnodes = per_instance.max(1);
        self
    }

    /// Caps the ring: with more than `max_ring_size / vnodes` instances,
    /// each gets fewer nodes (still at least one). The ring can exceed the
    /// cap by one node per instance. Clamped to 1 to
    /// [`LARGEST_RING_SIZE`](Self::LARGEST_RING_SIZE) nodes.
    pub fn max_ring_size(mut self, nodes: usize) -> Self {
        self.max_ring_size = nodes.clamp(1, Self::LARGEST_RING_SIZE);
        self
    }

    /// The key of some bytes (a header value, a user id, …): XXH64 with seed
    /// 0, the same in every process, version and language.
    ///
    /// ```
    /// use redis_discovery::balance::ConsistentHash;
    ///
    /// assert_eq!(ConsistentHash::key_of(b"abc"), 0x44BC_2CF5_AD77_0999);
    /// ```
    pub fn key_of(bytes: &[u8]) -> u64 {
        xxh64(bytes, 0)
    }
}

impl Balance for ConsistentHash {
    type Picker = ConsistentHashPicker;

    fn build(&self, instances: &[Instance]) -> ConsistentHashPicker {
        let instances = index_limit(instances);
        let positive: Vec<(u32, &Instance)> = instances
            .iter()
            .enumerate()
            .filter(|(_, instance)| instance.weight() > 0)
            .map(|(i, instance)| (i as u32, instance))
            .collect();
        let count = positive.len() as u128;
        let total: u128 = positive.iter().map(|(_, i)| u128::from(i.weight())).sum();
        if count == 0 {
            return ConsistentHashPicker::empty();
        }
        let per_instance = u128::from(self.vnodes).min((self.max_ring_size as u128 / count).max(1));
        // Rounded `per_instance × weight / mean`, at least 1: the sum stays
        // within `per_instance × count + count`.
        let nodes_of = |weight: u32| -> u64 {
            let twice = 2 * per_instance * u128::from(weight) * count;
            ((twice + total) / (2 * total)).max(1) as u64
        };
        let size: u64 = positive.iter().map(|(_, i)| nodes_of(i.weight())).sum();
        let mut ring = Vec::with_capacity(size as usize);
        for &(index, instance) in &positive {
            let mut state = xxh64(instance.addr().as_bytes(), 0);
            for _ in 0..nodes_of(instance.weight()) {
                state = state.wrapping_add(GAMMA);
                ring.push((mix64(state), index));
            }
        }
        // Ties (a 2^-64 chance) are broken by address, not by position in
        // the slice, so that every client builds the same ring.
        let addr = |i: u32| instances.get(i as usize).map(Instance::addr);
        ConsistentHashPicker::new(ring, positive.len(), |a, b| {
            a.0.cmp(&b.0).then_with(|| addr(a.1).cmp(&addr(b.1)))
        })
    }

    fn uses_key(&self) -> bool {
        true
    }
}

/// The picker of [`ConsistentHash`]: the ring.
///
/// ```
/// use redis_discovery::balance::{Balance, ConsistentHash};
/// use redis_discovery::Instance;
///
/// let instances = [Instance::new("10.0.0.1:80")?, Instance::new("10.0.0.2:80")?];
/// let picker = ConsistentHash::new().vnodes(100).build(&instances);
/// assert_eq!(picker.ring_size(), 200);
/// # Ok::<(), redis_discovery::ValidationError>(())
/// ```
pub struct ConsistentHashPicker {
    /// Node points, ascending.
    ring: Lookup,
    /// The instance of each node.
    owners: Box<[u32]>,
    /// Instances on the ring.
    instances: usize,
}

impl ConsistentHashPicker {
    fn empty() -> Self {
        ConsistentHashPicker {
            ring: Lookup::new(Box::new([])),
            owners: Box::new([]),
            instances: 0,
        }
    }

    fn new(
        mut ring: Vec<(u64, u32)>,
        instances: usize,
        order: impl Fn(&(u64, u32), &(u64, u32)) -> std::cmp::Ordering,
    ) -> Self {
        ring.sort_unstable_by(order);
        let (points, owners): (Vec<u64>, Vec<u32>) = ring.into_iter().unzip();
        ConsistentHashPicker {
            ring: Lookup::new(points.into_boxed_slice()),
            owners: owners.into_boxed_slice(),
            instances,
        }
    }

    /// The number of virtual nodes on the ring.
    pub fn ring_size(&self) -> usize {
        self.ring.len()
    }

    /// The first node at or clockwise after `point`.
    #[inline]
    fn node_at(&self, point: u64) -> usize {
        let node = self.ring.first_at_or_after(point);
        if node >= self.ring.len() {
            0
        } else {
            node
        }
    }

    fn owner(&self, node: usize) -> Option<usize> {
        self.owners.get(node).map(|&i| i as usize)
    }
}

impl Pick for ConsistentHashPicker {
    fn pick(&self, key: Option<u64>, attempt: u32) -> Option<usize> {
        if self.instances == 0 {
            return None;
        }
        let point = match key {
            Some(key) => mix64(key.wrapping_add(GAMMA)),
            None => thread_u64(),
        };
        let start = self.node_at(point);
        if attempt == 0 {
            return self.owner(start);
        }
        let nth = attempt as usize % self.instances;
        if nth == 0 {
            return self.owner(start);
        }
        if nth >= ConsistentHash::MAX_WALK {
            let point = mix64(point ^ u64::from(attempt).wrapping_mul(GAMMA));
            return self.owner(self.node_at(point));
        }
        // Walk clockwise to the nth distinct instance (there are more than
        // nth of them, so at most one turn).
        let mut seen = [0u32; ConsistentHash::MAX_WALK];
        let mut found = 0;
        let len = self.owners.len();
        let mut node = start;
        for _ in 0..len {
            let owner = *self.owners.get(node)?;
            if !seen[..found].contains(&owner) {
                if found == nth {
                    return Some(owner as usize);
                }
                seen[found] = owner;
                found += 1;
            }
            node = if node + 1 == len { 0 } else { node + 1 };
        }
        self.owner(start)
    }
}

impl fmt::Debug for ConsistentHashPicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsistentHashPicker")
            .field("instances", &self.instances)
            .field("ring_size", &self.ring.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
