//! [`SnapshotDiff`]: the changes from one list of instances to the next.

use std::cmp::Ordering;

use super::change::InstanceChange;
use crate::resolver::Snapshot;

/// The changes from the list told so far to a newer one, one at a time.
///
/// A snapshot's instances are sorted by address with no address twice,
/// so the diff is a merge of the two lists: O(n) per new list, with no
/// allocation and no memory but the two snapshots (shared `Arc`s).
#[derive(Debug, Default)]
pub(super) struct SnapshotDiff {
    /// The list the consumer has been told in full (`None`: nothing yet).
    told: Option<Snapshot>,
    /// The list being told, and the merge's position in both lists.
    target: Option<Snapshot>,
    old: usize,
    new: usize,
}

impl SnapshotDiff {
    /// Starts telling the changes to `snapshot`. Call only once
    /// [`next`](Self::next) returned `None`: a list still being told is
    /// replaced, and its remaining changes are then lost.
    pub(super) fn towards(&mut self, snapshot: Snapshot) {
        debug_assert!(self.target.is_none(), "a diff is still being told");
        let unchanged = self
            .told
            .as_ref()
            .is_some_and(|told| Snapshot::ptr_eq(told, &snapshot));
        if !unchanged {
            self.target = Some(snapshot);
            self.old = 0;
            self.new = 0;
        }
    }

    /// Whether every change has been told.
    pub(super) fn is_idle(&self) -> bool {
        self.target.is_none()
    }

    /// The number of instances in the list told so far.
    pub(super) fn told_len(&self) -> usize {
        self.told.as_ref().map_or(0, Snapshot::len)
    }

    /// The next change, or `None` once the target list has been told.
    /// An address whose instance changed is removed before it is inserted.
    pub(super) fn next(&mut self) -> Option<InstanceChange> {
        let target = self.target.as_ref()?;
        let old_list = self.told.as_ref().map_or(&[][..], Snapshot::instances);
        let new_list = target.instances();
        loop {
            let (old, new) = (old_list.get(self.old), new_list.get(self.new));
            let step = match (old, new) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(old), Some(new)) => old.addr().cmp(new.addr()),
            };
            match (step, old, new) {
                (Ordering::Less, Some(old), _) => {
                    self.old += 1;
                    return Some(InstanceChange::Remove(old.clone()));
                }
                (Ordering::Greater, _, Some(new)) => {
                    self.new += 1;
                    return Some(InstanceChange::Insert(new.clone()));
                }
                (_, Some(old), Some(new)) if old == new => {
                    self.old += 1;
                    self.new += 1;
                }
                // Same address, new weight or tags: remove it here; the
                // next step finds the new one before the next old one
                // (addresses are unique and sorted) and inserts it.
                (_, Some(old), _) => {
                    self.old += 1;
                    return Some(InstanceChange::Remove(old.clone()));
                }
                // Not reachable: `Less` and `Equal` come with an old
                // instance, `Greater` with a new one.
                (_, None, _) => break,
            }
        }
        self.told = self.target.take();
        None
    }
}
