//! Warnings about skipped registry entries: one per entry while it stays.
//!
//! A corrupt entry, or one the address policy refuses, is met again at
//! every read of its service (every event and refresh), so warning at each
//! read would flood the logs. Each cache entry remembers the registry
//! entries it warned about ([`SkippedEntries`], freed with the cache entry,
//! so bounded by the cache cap); an entry is warned about again only after
//! it has left the registry and come back, or its service left the cache.
//!
//! Per service, at most [`MAX_REMEMBERED`] entries are remembered; those
//! that do not fit are summed up in one line per read ("N more skipped
//! entries"). An uncached read (`fetch`, `list`) remembers nothing: it
//! warns about the first [`MAX_REMEMBERED`] entries individually and sums
//! up the rest. So one read logs a bounded number of lines.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::instance::{EntryError, ServiceName};

/// The most skipped entries remembered per cached service, and the most
/// warned about individually per read.
const MAX_REMEMBERED: usize = 64;
/// The longest field (address) remembered and logged, in characters.
const MAX_FIELD_CHARS: usize = 256;

/// The skipped entries of one cached service already warned about. Its
/// lock is a leaf: nothing else is taken under it.
#[derive(Debug, Default)]
pub(super) struct SkippedEntries {
    warned: Mutex<HashSet<String>>,
}

impl SkippedEntries {
    /// One read of `service` skipped these entries (field, why): warns
    /// about those not warned about yet and forgets those that left.
    pub fn observe(&self, service: &ServiceName, skipped: Vec<(String, EntryError)>) {
        let mut new = Vec::new();
        let unremembered;
        {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if skipped.is_empty() && warned.is_empty() {
                return;
            }
            let mut before = std::mem::take(&mut *warned);
            for (field, error) in skipped {
                let field = truncated(field);
                if before.remove(&field) {
                    warned.insert(field);
                } else {
                    new.push((field, error));
                }
            }
            // Newly met entries are remembered while there is room; those
            // that do not fit are only counted, at every read.
            let room = MAX_REMEMBERED.saturating_sub(warned.len());
            unremembered = new.len().saturating_sub(room);
            new.truncate(room);
            warned.extend(new.iter().map(|(field, _)| field.clone()));
        }
        // Logged without the lock: a slow subscriber must not hold up
        // other reads.
        for (field, error) in &new {
            warn(service, field, error);
        }
        warn_more(service, unremembered);
    }
}

/// Warns about each of `skipped` (the first [`MAX_REMEMBERED`], then one
/// line with the count of the others), remembering nothing: for reads
/// with no cache entry (`fetch`, `list`).
pub(super) fn warn_all(service: &ServiceName, skipped: Vec<(String, EntryError)>) {
    let more = skipped.len().saturating_sub(MAX_REMEMBERED);
    for (field, error) in skipped.into_iter().take(MAX_REMEMBERED) {
        warn(service, &truncated(field), &error);
    }
    warn_more(service, more);
}

/// One line for `more` skipped entries not warned about individually.
fn warn_more(service: &ServiceName, more: usize) {
    if more > 0 {
        tracing::warn!(%service, more, "{more} more skipped entries (corrupt or refused by the address policy)");
    }
}

fn truncated(field: String) -> String {
    if field.chars().count() <= MAX_FIELD_CHARS {
        return field;
    }
    field.chars().take(MAX_FIELD_CHARS).collect()
}

fn warn(service: &ServiceName, field: &str, error: &EntryError) {
    if error.is_refusal() {
        tracing::warn!(%service, %field, %error, "skipping a registry entry refused by the address policy (warned once while it stays)");
    } else {
        tracing::warn!(%service, %field, %error, "skipping a corrupt registry entry (warned once while it stays)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::AddressProblem;

    fn refused(field: &str) -> (String, EntryError) {
        (
            field.to_owned(),
            EntryError::Refused {
                addr: field.to_owned(),
                reason: AddressProblem::LinkLocal,
            },
        )
    }

    #[test]
    fn remembers_a_bounded_set_and_forgets_entries_that_left() {
        let skipped = SkippedEntries::default();
        let svc = ServiceName::new("svc").unwrap();
        let size = |s: &SkippedEntries| s.warned.lock().unwrap().len();
        skipped.observe(&svc, vec![refused("a"), refused("b")]);
        assert_eq!(size(&skipped), 2);
        skipped.observe(&svc, vec![refused("b")]);
        assert_eq!(size(&skipped), 1);
        skipped.observe(&svc, Vec::new());
        assert_eq!(size(&skipped), 0);
        let many: Vec<_> = (0..1000).map(|n| refused(&n.to_string())).collect();
        skipped.observe(&svc, many.clone());
        assert_eq!(size(&skipped), MAX_REMEMBERED);
        // The remembered ones stay remembered; the rest still do not fit.
        skipped.observe(&svc, many);
        assert_eq!(size(&skipped), MAX_REMEMBERED);
        let long = "x".repeat(10 * MAX_FIELD_CHARS);
        skipped.observe(&svc, vec![refused(&long)]);
        let warned = skipped.warned.lock().unwrap();
        assert!(warned.iter().all(|f| f.len() == MAX_FIELD_CHARS));
    }
}
