//! The subscription changes the event connection still has to make: the
//! latest wanted state of each channel, not a queue of commands.
//!
//! The cache asks for changes from synchronous code, under a write-stripe lock,
//! so it cannot wait for room in a bounded queue; and an unbounded queue
//! would grow for as long as Redis is slow. Keeping only the latest state
//! per channel bounds the pending changes by the number of channels the
//! cache has subscribed (at most the cache cap) plus those it has since
//! dropped, and a subscribe followed by an unsubscribe of the same channel
//! cancels out before anything is sent.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};

/// Pending subscription changes, shared by the cache (which asks) and the
/// event connection's task (which applies them).
#[derive(Default)]
pub(super) struct Subscriptions {
    pending: Mutex<HashMap<String, Wanted>>,
    changed: Notify,
}

/// The state a channel should be in.
enum Wanted {
    /// Subscribed; each sender is dropped once Redis confirmed (or the
    /// attempt failed), which lets the read waiting for it go ahead.
    Subscribed(Vec<oneshot::Sender<()>>),
    Unsubscribed,
}

/// Changes taken in one go by the event connection.
#[derive(Default)]
pub(super) struct Changes {
    /// Channels to subscribe, with the confirmations to drop afterwards.
    pub subscribe: Vec<String>,
    pub acks: Vec<oneshot::Sender<()>>,
    pub unsubscribe: Vec<String>,
}

impl Subscriptions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Wanted>> {
        // A map of plain values: nothing a panic could leave half-done.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribe `channel`; `ack` is dropped once that is done (or failed).
    pub(super) fn subscribe(&self, channel: &str, ack: oneshot::Sender<()>) {
        let mut pending = self.lock();
        match pending.get_mut(channel) {
            Some(Wanted::Subscribed(acks)) => acks.push(ack),
            Some(wanted) => *wanted = Wanted::Subscribed(vec![ack]),
            None => {
                pending.insert(channel.to_owned(), Wanted::Subscribed(vec![ack]));
            }
        }
        drop(pending);
        self.changed.notify_one();
    }

    /// Unsubscribe `channel` (a pending subscribe of it is dropped, which
    /// releases its waiting read).
    pub(super) fn unsubscribe(&self, channel: &str) {
        let mut pending = self.lock();
        match pending.get_mut(channel) {
            Some(wanted) => *wanted = Wanted::Unsubscribed,
            None => {
                pending.insert(channel.to_owned(), Wanted::Unsubscribed);
            }
        }
        drop(pending);
        self.changed.notify_one();
    }

    /// Takes every pending change.
    pub(super) fn take(&self) -> Changes {
        let pending = std::mem::take(&mut *self.lock());
        let mut changes = Changes::default();
        for (channel, wanted) in pending {
            match wanted {
                Wanted::Subscribed(acks) => {
                    changes.subscribe.push(channel);
                    changes.acks.extend(acks);
                }
                Wanted::Unsubscribed => changes.unsubscribe.push(channel),
            }
        }
        changes
    }

    /// Completes once a change may be pending (a change made before the
    /// call is not missed: the notification is kept until then).
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The number of channels with a pending change.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_latest_state_of_each_channel_wins_and_nothing_queues() {
        let subs = Subscriptions::default();
        let (ack, mut confirmed) = oneshot::channel();
        subs.subscribe("a", ack);
        subs.unsubscribe("a");
        assert_eq!(
            confirmed.try_recv(),
            Err(oneshot::error::TryRecvError::Closed),
            "the dropped ack releases the read"
        );
        for _ in 0..10_000 {
            let (ack, _) = oneshot::channel();
            subs.subscribe("b", ack);
            subs.unsubscribe("b");
            subs.unsubscribe("c");
        }
        assert_eq!(subs.len(), 3, "one state per channel");
        let (ack, _kept) = oneshot::channel();
        subs.subscribe("b", ack);
        tokio::time::timeout(std::time::Duration::from_secs(10), subs.changed())
            .await
            .expect("a change is signalled");
        let mut changes = subs.take();
        changes.unsubscribe.sort();
        assert_eq!(changes.subscribe, ["b"]);
        assert_eq!(changes.acks.len(), 1);
        assert_eq!(changes.unsubscribe, ["a", "c"]);
        assert_eq!(subs.len(), 0);
    }
}
