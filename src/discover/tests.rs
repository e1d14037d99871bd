//! The diff and the stream over a plain watch channel (no Redis).

use std::collections::BTreeMap;

use futures_util::stream::{FusedStream, StreamExt};
use proptest::prelude::*;
use tokio::sync::watch;

use super::diff::SnapshotDiff;
use super::{InstanceAddr, InstanceChange, InstanceChanges};
use crate::instance::{Instance, ServiceName};
use crate::resolver::Snapshot;

fn snap(list: &[(&str, u32)]) -> Snapshot {
    let instances = list
        .iter()
        .map(|(addr, weight)| Instance::new(addr).unwrap().with_weight(*weight))
        .collect();
    Snapshot::new(ServiceName::new("svc").unwrap(), instances)
}

fn drain(diff: &mut SnapshotDiff) -> Vec<InstanceChange> {
    std::iter::from_fn(|| diff.next()).collect()
}

fn short(changes: &[InstanceChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            let sign = if c.is_insert() { '+' } else { '-' };
            format!("{sign}{}/{}", c.instance().addr(), c.instance().weight())
        })
        .collect()
}

#[test]
fn first_list_then_removes_inserts_and_replacements() {
    let mut diff = SnapshotDiff::default();
    diff.towards(snap(&[("h:2", 1), ("h:1", 1)]));
    assert_eq!(short(&drain(&mut diff)), ["+h:1/1", "+h:2/1"]);
    assert!(diff.is_idle());
    diff.towards(snap(&[("h:1", 5), ("h:3", 1)]));
    assert_eq!(
        short(&drain(&mut diff)),
        ["-h:1/1", "+h:1/5", "-h:2/1", "+h:3/1"]
    );
    diff.towards(snap(&[]));
    assert_eq!(short(&drain(&mut diff)), ["-h:1/5", "-h:3/1"]);
    // An equal list, or the same snapshot again: nothing.
    let same = snap(&[]);
    diff.towards(same.clone());
    assert!(drain(&mut diff).is_empty());
    diff.towards(same);
    assert!(diff.is_idle() && drain(&mut diff).is_empty());
}

#[test]
fn a_tag_change_is_a_remove_then_an_insert() {
    let plain = Instance::new("h:1").unwrap();
    let tagged = plain.clone().with_tag("zone", "a").unwrap();
    let service = ServiceName::new("svc").unwrap();
    let mut diff = SnapshotDiff::default();
    diff.towards(Snapshot::new(service.clone(), vec![plain.clone()]));
    drain(&mut diff);
    diff.towards(Snapshot::new(service, vec![tagged.clone()]));
    assert_eq!(
        drain(&mut diff),
        [
            InstanceChange::Remove(plain),
            InstanceChange::Insert(tagged)
        ]
    );
}

#[test]
fn keys_are_byte_exact() {
    let upper = InstanceAddr::from(&Instance::new("Host:1").unwrap());
    let lower = InstanceAddr::from(&Instance::new("host:1").unwrap());
    assert_ne!(upper, lower, "two entries, two keys");
    assert_eq!(
        format!("{upper:?} {lower}"),
        "InstanceAddr(\"Host:1\") host:1"
    );
}

fn list_strategy() -> impl Strategy<Value = Vec<(u8, u32)>> {
    proptest::collection::vec((0u8..12, 0u32..3), 0..10)
}

fn to_snapshot(list: &[(u8, u32)]) -> Snapshot {
    let instances = list
        .iter()
        .map(|(port, weight)| {
            Instance::new(format!("h:{}", u16::from(*port) + 1))
                .unwrap()
                .with_weight(*weight)
        })
        .collect();
    Snapshot::new(ServiceName::new("svc").unwrap(), instances)
}

fn as_map(snapshot: &Snapshot) -> BTreeMap<String, Instance> {
    snapshot
        .instances()
        .iter()
        .map(|i| (i.addr().to_owned(), i.clone()))
        .collect()
}

proptest! {
    /// Applying the changes to the previous list gives the new one; no
    /// change for an unchanged instance; no insert over a live key (a
    /// changed one is removed first); at most two changes per address.
    #[test]
    fn changes_add_up_to_the_new_list(lists in proptest::collection::vec(list_strategy(), 1..6)) {
        let mut diff = SnapshotDiff::default();
        let mut applied: BTreeMap<String, Instance> = BTreeMap::new();
        for list in &lists {
            let snapshot = to_snapshot(list);
            let before = applied.clone();
            diff.towards(snapshot.clone());
            let changes = drain(&mut diff);
            prop_assert!(changes.len() <= before.len() + snapshot.len());
            for change in changes {
                let addr = change.instance().addr().to_owned();
                match change {
                    InstanceChange::Insert(instance) => {
                        prop_assert!(applied.insert(addr, instance).is_none());
                    }
                    InstanceChange::Remove(instance) => {
                        prop_assert_eq!(applied.remove(&addr), Some(instance));
                    }
                }
            }
            prop_assert_eq!(&applied, &as_map(&snapshot));
        }
    }
}

#[tokio::test]
async fn the_stream_follows_its_watch_and_ends_with_the_sender() {
    let (tx, rx) = watch::channel(snap(&[("h:1", 1)]));
    let mut changes = InstanceChanges::new(rx);
    assert_eq!(changes.service().as_str(), "svc");
    assert_eq!(short(&[changes.next().await.unwrap()]), ["+h:1/1"]);
    // Lists sent meanwhile are skipped, not their net changes.
    tx.send_replace(snap(&[("h:1", 1), ("h:2", 1)]));
    tx.send_replace(snap(&[("h:3", 1)]));
    let got = [changes.next().await.unwrap(), changes.next().await.unwrap()];
    assert_eq!(short(&got), ["-h:1/1", "+h:3/1"]);
    // Changes still to tell are told after the sender went.
    tx.send_replace(snap(&[("h:4", 1)]));
    drop(tx);
    let got = [changes.next().await.unwrap(), changes.next().await.unwrap()];
    assert_eq!(short(&got), ["-h:3/1", "+h:4/1"]);
    assert!(!changes.is_terminated());
    assert_eq!(changes.next().await, None);
    assert!(changes.is_terminated());
    // Fused: polled again after the end, still the end.
    assert_eq!(changes.next().await, None);
    assert!(format!("{changes:?}").contains("ended: true"));
}

#[tokio::test]
async fn an_empty_first_list_tells_nothing_until_an_instance_comes() {
    let (tx, rx) = watch::channel(snap(&[]));
    let mut changes = InstanceChanges::new(rx);
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(changes.poll_next_unpin(&mut cx).is_pending());
    tx.send_replace(snap(&[("h:1", 1)]));
    assert_eq!(short(&[changes.next().await.unwrap()]), ["+h:1/1"]);
}

#[cfg(feature = "tower-discover")]
#[tokio::test]
async fn the_discover_adapter_keys_by_address_and_makes_one_service_per_insert() {
    use tower::discover::Change;

    let (tx, rx) = watch::channel(snap(&[("h:1", 1)]));
    let mut made = 0;
    let mut discover = InstanceChanges::new(rx).into_discover(|instance: Instance| {
        made += 1;
        instance.weight()
    });
    let key = |s: &str| InstanceAddr::from(&Instance::new(s).unwrap());
    match discover.next().await {
        Some(Ok(Change::Insert(k, 1))) => assert_eq!(k, key("h:1")),
        other => panic!("{other:?}"),
    }
    tx.send_replace(snap(&[("h:1", 7)]));
    match discover.next().await {
        Some(Ok(Change::Remove(k))) => assert_eq!(k, key("h:1")),
        other => panic!("{other:?}"),
    }
    match discover.next().await {
        Some(Ok(Change::Insert(k, 7))) => assert_eq!(k, key("h:1")),
        other => panic!("{other:?}"),
    }
    drop(tx);
    assert!(discover.next().await.is_none());
    assert!(discover.is_terminated());
    assert!(format!("{discover:?}").starts_with("DiscoverInstances"));
    drop(discover);
    assert_eq!(made, 2);
}

#[tokio::test]
async fn a_resubscribing_stream_goes_on_from_a_new_watch_with_the_changes_since() {
    let (tx, rx) = watch::channel(snap(&[("h:1", 1), ("h:2", 1)]));
    let (tx2, rx2) = watch::channel(snap(&[("h:2", 1), ("h:3", 1)]));
    let next = std::sync::Mutex::new(Some(rx2));
    let mut changes = InstanceChanges::new(rx).resubscribing(Box::new(move || {
        let made = next.lock().unwrap().take();
        Box::pin(async move { made })
    }));
    let first: Vec<_> = (&mut changes).take(2).collect().await;
    assert_eq!(short(&first), ["+h:1/1", "+h:2/1"]);
    // The watch ends (an evicted entry): the stream goes on from the new
    // one, with the changes from the last list told.
    drop(tx);
    let since: Vec<_> = (&mut changes).take(2).collect().await;
    assert_eq!(short(&since), ["-h:1/1", "+h:3/1"]);
    assert!(!changes.is_terminated());
    tx2.send_replace(snap(&[("h:3", 1)]));
    assert_eq!(short(&[changes.next().await.unwrap()]), ["-h:2/1"]);
    // No new watch to be had: the end.
    drop(tx2);
    assert_eq!(changes.next().await, None);
    assert!(changes.is_terminated());
}

/// Balancers are moved into tasks and behind `tower::buffer`.
#[test]
fn streams_are_send_sync_and_unpin() {
    fn check<T: Send + Sync + Unpin + 'static>() {}
    check::<InstanceChanges>();
    check::<InstanceChange>();
    check::<InstanceAddr>();
    #[cfg(feature = "tower-discover")]
    check::<super::DiscoverInstances<fn(Instance) -> u32>>();
}
