//! Warnings about skipped registry entries: one per entry while it stays.
//!
//! A corrupt entry, or one the address policy refuses, is met again at
//! every read of its service (every event and refresh), so warning at each
//! read would flood the logs. Each service remembers the entries it warned
//! about; an entry is warned about again only after it has left the
//! registry and come back. The memory is bounded: a few entries per
//! service, a few services; beyond that an entry is warned about at every
//! read rather than remembered.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::instance::{EntryError, ServiceName};

/// The most entries remembered per service.
const MAX_PER_SERVICE: usize = 64;
/// The most services with remembered entries.
const MAX_SERVICES: usize = 256;
/// The longest field (address) remembered and logged, in characters.
const MAX_FIELD_CHARS: usize = 256;

/// The skipped entries already warned about, per service.
#[derive(Debug, Default)]
pub(super) struct SkippedEntries {
    warned: Mutex<HashMap<ServiceName, HashSet<String>>>,
}

impl SkippedEntries {
    /// One read of `service` skipped these entries (field, why): warns
    /// about those not warned about yet and forgets those that left.
    pub fn observe(&self, service: &ServiceName, skipped: Vec<(String, EntryError)>) {
        let mut new = Vec::new();
        {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if skipped.is_empty() {
                warned.remove(service);
                return;
            }
            let mut before = warned.remove(service).unwrap_or_default();
            let mut now = HashSet::new();
            for (field, error) in skipped {
                let field: String = field.chars().take(MAX_FIELD_CHARS).collect();
                if before.remove(&field) {
                    now.insert(field);
                } else {
                    if now.len() < MAX_PER_SERVICE {
                        now.insert(field.clone());
                    }
                    new.push((field, error));
                }
            }
            if warned.len() < MAX_SERVICES {
                warned.insert(service.clone(), now);
            }
        }
        // Logged without the lock: a slow subscriber must not hold up
        // other reads.
        for (field, error) in new {
            warn(service, &field, &error);
        }
    }

    /// `service` left the cache: nothing to remember for it.
    pub fn forget(&self, service: &ServiceName) {
        self.warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(service);
    }
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
        let size = |s: &SkippedEntries| {
            let map = s.warned.lock().unwrap();
            map.get(&svc).map_or(0, HashSet::len)
        };
        skipped.observe(&svc, vec![refused("a"), refused("b")]);
        assert_eq!(size(&skipped), 2);
        skipped.observe(&svc, vec![refused("b")]);
        assert_eq!(size(&skipped), 1);
        skipped.observe(&svc, Vec::new());
        assert!(skipped.warned.lock().unwrap().is_empty());
        let many = (0..1000).map(|n| refused(&n.to_string())).collect();
        skipped.observe(&svc, many);
        assert_eq!(size(&skipped), MAX_PER_SERVICE);
        skipped.forget(&svc);
        assert!(skipped.warned.lock().unwrap().is_empty());
        for n in 0..1000 {
            let other = ServiceName::new(format!("s{n}")).unwrap();
            skipped.observe(&other, vec![refused("x")]);
        }
        assert_eq!(skipped.warned.lock().unwrap().len(), MAX_SERVICES);
    }
}
