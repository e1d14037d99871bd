//! The attempts of one request: how many were made and which instances
//! they went to, so that a retry goes to an instance not tried yet and
//! retries end once none is left.

use std::collections::HashSet;

use foldhash::fast::FixedState;
use http::uri::Authority;

use super::options::Options;
use super::pick::{PickRequest, Picked};
use crate::balance::TagFilter;

/// Instances by authority, not by index: a retry picks from the current
/// snapshot, which may be newer than the one of the attempt it retries.
/// Hashed, so that checking a candidate stays O(1) however many instances
/// a request with many retries has tried.
pub(crate) type Tried = HashSet<Authority, FixedState>;

/// The attempts of one request, in the layer's response future and in the
/// reqwest middleware alike.
#[derive(Debug)]
pub(crate) struct Attempts {
    /// 0 for the first attempt, counted up for each retry.
    number: u32,
    /// The instances of the attempts that failed; `None` until a retry
    /// (boxed: one word to set and to drop on the hot path).
    tried: Option<Box<Tried>>,
}

impl Attempts {
    /// Before the first attempt.
    pub(crate) const FIRST: &'static Attempts = &Attempts::new();

    pub(crate) const fn new() -> Self {
        Attempts {
            number: 0,
            tried: None,
        }
    }

    /// 0 for the first attempt, counted up for each retry.
    pub(crate) fn number(&self) -> u32 {
        self.number
    }

    /// Whether the attempt under way, sent to `picked`, keeps a copy of its
    /// request for a retry: a retry is left, and an instance not tried yet
    /// could take it. Bounds the retries by the count and by the number of
    /// distinct instances.
    #[inline]
    pub(crate) fn keeps_replay(&self, options: &Options, picked: &Picked) -> bool {
        let tried = self.tried.as_ref().map_or(0, |tried| tried.len());
        self.number < options.retries && picked.usable() > tried.saturating_add(1)
    }

    /// The attempt under way, sent to `failed`, failed: the next one goes
    /// elsewhere.
    pub(crate) fn failed(&mut self, failed: &Picked) {
        self.tried
            .get_or_insert_with(|| Box::new(HashSet::with_hasher(FixedState::with_seed(0))))
            .insert(failed.authority().clone());
        self.number = self.number.saturating_add(1);
    }

    /// What the pick for the next attempt asks of the router.
    pub(crate) fn request<'a>(
        &'a self,
        key: Option<u64>,
        filter: Option<&'a TagFilter>,
    ) -> PickRequest<'a> {
        PickRequest {
            key,
            filter,
            attempt: self.number,
            tried: self.tried.as_deref(),
        }
    }
}
