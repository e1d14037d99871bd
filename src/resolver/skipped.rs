//! Warnings about skipped registry entries: one per entry while it stays.
//!
//! A corrupt entry, or one the address policy refuses, is met again at
//! every read of its service (every event and refresh), so warning at each
//! read would flood the logs. Each cache entry remembers the registry
//! entries it warned about ([`SkippedEntries`], freed with the cache entry,
//! so bounded by the cache cap); an entry is warned about again only after
//! it has left the registry and come back, or its service left the cache.
//!
//! Per service, at most [`MAX_REMEMBERED`] entries are remembered, each
//! as a 64-bit hash of its whole field (not its text: a registry writer
//! chooses the fields, so their size must not set the memory a cached
//! service holds, and two long fields with the same beginning are two
//! entries). Those that do not fit are summed up in one line ("N more
//! skipped entries"), logged when their count changes, not at every read.
//! An uncached read (`fetch`, `list`) remembers nothing: it warns about
//! the first [`MAX_REMEMBERED`] entries individually and sums up the rest.
//! So one read logs a bounded number of lines, each with at most
//! [`MAX_FIELD_CHARS`] characters of a field.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::{Mutex, OnceLock};

use crate::instance::{EntryError, ServiceName};

/// The most skipped entries remembered per cached service, and the most
/// warned about individually per read.
const MAX_REMEMBERED: usize = 64;
/// The longest part of a field (address) logged, in characters.
const MAX_FIELD_CHARS: usize = 256;

/// The skipped entries of one cached service already warned about. Its
/// lock is a leaf: nothing else is taken under it.
#[derive(Debug, Default)]
pub(super) struct SkippedEntries {
    warned: Mutex<Warned>,
}

#[derive(Debug, Default)]
struct Warned {
    /// The hashes of the fields warned about ([`field_hash`]).
    fields: HashSet<u64>,
    /// The count of skipped entries that did not fit, as last logged.
    more: usize,
}

/// What one read has to log.
struct Warnings {
    /// The entries met for the first time (field, why).
    new: Vec<(String, EntryError)>,
    /// The count of entries that do not fit, if it changed.
    more: Option<usize>,
}

impl SkippedEntries {
    /// One read of `service` skipped these entries (field, why): warns
    /// about those not warned about yet and forgets those that left.
    pub(super) fn observe(&self, service: &ServiceName, skipped: Vec<(String, EntryError)>) {
        let warnings = self.remember(skipped);
        // Logged without the lock: a slow subscriber must not hold up
        // other reads.
        for (field, error) in &warnings.new {
            warn(service, field, error);
        }
        if let Some(more) = warnings.more {
            warn_more(service, more);
        }
    }

    fn remember(&self, skipped: Vec<(String, EntryError)>) -> Warnings {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if skipped.is_empty() && warned.fields.is_empty() && warned.more == 0 {
            return Warnings {
                new: Vec::new(),
                more: None,
            };
        }
        let mut new = Vec::new();
        let mut before = std::mem::take(&mut warned.fields);
        for (field, error) in skipped {
            let hash = field_hash(&field);
            if before.remove(&hash) {
                warned.fields.insert(hash);
            } else {
                // Fields are unique within a service's hash.
                new.push((hash, field, error));
            }
        }
        // Newly met entries are remembered while there is room; those
        // that do not fit are only counted.
        let room = MAX_REMEMBERED.saturating_sub(warned.fields.len());
        let more = new.len().saturating_sub(room);
        new.truncate(room);
        warned.fields.extend(new.iter().map(|(hash, _, _)| *hash));
        let more = (more != warned.more).then(|| {
            warned.more = more;
            more
        });
        Warnings {
            new: new.into_iter().map(|(_, f, e)| (f, e)).collect(),
            more,
        }
    }
}

/// A hash of a whole field: keyed per process, so registry writers cannot
/// aim at collisions.
fn field_hash(field: &str) -> u64 {
    static KEY: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    KEY.get_or_init(Default::default).hash_one(field)
}

/// Warns about each of `skipped` (the first [`MAX_REMEMBERED`], then one
/// line with the count of the others), remembering nothing: for reads
/// with no cache entry (`fetch`, `list`).
pub(super) fn warn_all(service: &ServiceName, skipped: Vec<(String, EntryError)>) {
    let more = skipped.len().saturating_sub(MAX_REMEMBERED);
    for (field, error) in skipped.into_iter().take(MAX_REMEMBERED) {
        warn(service, &field, &error);
    }
    warn_more(service, more);
}

/// One line for `more` skipped entries not warned about individually.
fn warn_more(service: &ServiceName, more: usize) {
    if more > 0 {
        tracing::warn!(%service, more, "{more} more skipped entries (corrupt or refused by the address policy)");
    }
}

/// At most the first `max` characters of `text`.
pub(super) fn truncated(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn warn(service: &ServiceName, field: &str, error: &EntryError) {
    let field = truncated(field, MAX_FIELD_CHARS);
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
        let size = |s: &SkippedEntries| s.warned.lock().unwrap().fields.len();
        let new = |w: Warnings| w.new.len();
        assert_eq!(new(skipped.remember(vec![refused("a"), refused("b")])), 2);
        assert_eq!(size(&skipped), 2);
        assert_eq!(new(skipped.remember(vec![refused("b")])), 0);
        assert_eq!(size(&skipped), 1);
        skipped.remember(Vec::new());
        assert_eq!(size(&skipped), 0);
        let many: Vec<_> = (0..1000).map(|n| refused(&n.to_string())).collect();
        let first = skipped.remember(many.clone());
        assert_eq!((first.new.len(), first.more), (MAX_REMEMBERED, Some(936)));
        assert_eq!(size(&skipped), MAX_REMEMBERED);
        // The remembered ones stay remembered; the rest still do not fit,
        // and their count, unchanged, is not logged again.
        let again = skipped.remember(many);
        assert_eq!((again.new.len(), again.more), (0, None));
        assert_eq!(size(&skipped), MAX_REMEMBERED);
        // Back under the cap: the count changed (to none).
        let few = skipped.remember(vec![refused("1")]);
        assert_eq!((few.new.len(), few.more), (0, Some(0)));
    }

    /// Regression: fields were remembered by their first 256 characters
    /// (up to 64 of them per service, fed by registry writers), so two
    /// long fields with the same beginning were one entry.
    #[test]
    fn long_fields_are_remembered_whole_by_hash_and_logged_truncated() {
        let skipped = SkippedEntries::default();
        let prefix = "x".repeat(10 * MAX_FIELD_CHARS);
        let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
        let warnings = skipped.remember(vec![refused(&a), refused(&b)]);
        assert_eq!(warnings.new.len(), 2, "two entries");
        assert_eq!(
            skipped.remember(vec![refused(&a), refused(&b)]).new.len(),
            0
        );
        assert_eq!(truncated(&a, MAX_FIELD_CHARS).len(), MAX_FIELD_CHARS);
        assert_eq!(truncated("héllo", 2), "hé");
        assert_eq!(truncated("hé", 5), "hé");
    }
}
