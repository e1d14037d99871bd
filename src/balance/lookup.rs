//! Sorted `u64` points with a jump table on their top bits: "the first point
//! at or after x" in O(1) expected time for evenly spread points.

/// Sorted points and, per bucket of the `u64` range (its top bits), the
/// index of the bucket's first point.
pub(crate) struct Lookup {
    points: Box<[u64]>,
    /// `starts[b]`: the number of points below `b << shift`; one more entry
    /// holds the number of points.
    starts: Box<[u32]>,
    shift: u32,
}

impl Lookup {
    /// The number of buckets for `len` points: about two points a bucket,
    /// at least two buckets (so the shift stays below 64).
    fn buckets(len: usize) -> usize {
        (len.next_power_of_two() / 2).max(2)
    }

    /// The shift that gives the bucket of a point, for `buckets` (a power of two).
    fn shift(buckets: usize) -> u32 {
        64 - buckets.trailing_zeros()
    }

    /// `points` must be sorted; at most `u32::MAX` of them.
    pub(crate) fn new(points: Box<[u64]>) -> Self {
        let buckets = Self::buckets(points.len());
        let shift = Self::shift(buckets);
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut below = 0;
        for bucket in 0..buckets as u64 {
            let lower = bucket << shift;
            while points.get(below).is_some_and(|&p| p < lower) {
                below += 1;
            }
            starts.push(below as u32);
        }
        starts.push(points.len() as u32);
        Lookup {
            points,
            starts: starts.into_boxed_slice(),
            shift,
        }
    }

    #[cfg(test)]
    pub(crate) fn points(&self) -> &[u64] {
        &self.points
    }

    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// The index of the first point `>= x`, or `len()` if there is none.
    #[inline]
    pub(crate) fn first_at_or_after(&self, x: u64) -> usize {
        let bucket = (x >> self.shift) as usize;
        let lo = self.starts.get(bucket).map_or(0, |&s| s as usize);
        let hi = self
            .starts
            .get(bucket + 1)
            .map_or(self.points.len(), |&s| s as usize);
        // Points before `lo` are below the bucket, points from `hi` on are
        // above it.
        lo + self
            .points
            .get(lo..hi)
            .map_or(0, |points| points.partition_point(|&p| p < x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    #[test]
    fn matches_binary_search() {
        let mut rng = SmallRng::seed_from_u64(1);
        for len in [0, 1, 2, 3, 7, 100, 5000] {
            let mut points: Vec<u64> = (0..len).map(|_| rng.random()).collect();
            // Clustered and extreme points too.
            if len > 10 {
                points[..5].copy_from_slice(&[0, 0, 1, u64::MAX, u64::MAX]);
                for p in &mut points[5..len / 2] {
                    *p >>= 40;
                }
            }
            points.sort_unstable();
            let lookup = Lookup::new(points.clone().into_boxed_slice());
            let mut probes: Vec<u64> = (0..11_000)
                .map(|i| rng.random::<u64>() >> if i < 10_000 { 0 } else { 40 })
                .collect();
            probes.extend(&points);
            probes.extend([0, 1, u64::MAX - 1, u64::MAX]);
            for x in probes {
                let expected = points.partition_point(|&p| p < x);
                assert_eq!(lookup.first_at_or_after(x), expected, "{len} {x}");
            }
        }
    }
}
