//! The alias table (Walker/Vose) shared by the random balancers: one 64-bit
//! draw picks an instance with probability proportional to its weight.

/// An alias table over the weights of one snapshot.
pub(crate) struct AliasTable {
    /// One column per instance; empty when no weight is above 0.
    columns: Box<[Column]>,
    total: u64,
    /// Instances with a weight above 0.
    live: usize,
}

/// A column of the alias table: the column's own instance is chosen when the
/// low 32 bits of the draw are below `threshold`, else `alias`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Column {
    threshold: u32,
    alias: u32,
}

impl AliasTable {
    /// At most `u32::MAX` weights (the caller cuts the slice).
    pub(crate) fn new(weights: &[u32]) -> Self {
        AliasTable {
            columns: alias_table(weights),
            total: weights.iter().map(|&w| u64::from(w)).sum(),
            live: weights.iter().filter(|&&w| w > 0).count(),
        }
    }

    /// The number of columns (instances), 0 when none has a weight.
    pub(crate) fn len(&self) -> usize {
        self.columns.len()
    }

    /// The sum of the weights.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// How many instances have a weight above 0.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// The instance a uniformly random `r` picks; `None` when no weight is
    /// above 0.
    #[inline]
    pub(crate) fn draw(&self, r: u64) -> Option<usize> {
        let n = self.columns.len() as u64;
        // High 32 bits: the column (Lemire's multiply-shift, n <= u32::MAX);
        // low 32 bits: the coin.
        let column = ((r >> 32) * n) >> 32;
        let Column { threshold, alias } = *self.columns.get(column as usize)?;
        // A coin flip: a branch would be mispredicted half the time.
        Some(std::hint::select_unpredictable(
            (r as u32) < threshold,
            column as usize,
            alias as usize,
        ))
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
mod tests {
    use super::*;

    #[test]
    fn alias_table_is_exact() {
        // Each instance's probability, summed over the columns, is its share.
        for weights in [
            &[5, 1, 1][..],
            &[1, 0, 1],
            &[3, 3, 3, 3],
            &[0, 9, 2, 0, 1, 6],
        ] {
            let table = alias_table(weights);
            let n = weights.len() as f64;
            let total: u32 = weights.iter().sum();
            let mut p = vec![0.0; weights.len()];
            for (i, column) in table.iter().enumerate() {
                let own = if column.alias as usize == i {
                    1.0
                } else {
                    f64::from(column.threshold) / 2f64.powi(32)
                };
                p[i] += own / n;
                p[column.alias as usize] += (1.0 - own) / n;
            }
            for (i, &w) in weights.iter().enumerate() {
                let expected = f64::from(w) / f64::from(total);
                assert!((p[i] - expected).abs() < 1e-9, "{weights:?}: {p:?}");
            }
        }
    }

    #[test]
    fn counts_live_instances() {
        let table = AliasTable::new(&[0, 3, 0, 1]);
        assert_eq!((table.len(), table.total(), table.live()), (4, 4, 2));
        let empty = AliasTable::new(&[0, 0]);
        assert_eq!((empty.len(), empty.live(), empty.draw(7)), (0, 0, None));
    }
}
