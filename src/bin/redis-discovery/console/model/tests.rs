use std::time::Duration;

use redis_discovery::{Instance, Override, ServiceName};

use redis_discovery::resolver::ChangeKind;

use super::*;

fn name(s: &str) -> ServiceName {
    ServiceName::new(s).expect("name")
}

fn listed(addr: &str, weight: u32, lease_ms: u64) -> ReadInstance {
    ReadInstance {
        instance: Instance::new(addr).expect("addr").with_weight(weight),
        lease_left: Some(Duration::from_millis(lease_ms)),
        registered_weight: None,
    }
}

fn read(instances: Vec<ReadInstance>, now: u64) -> ServiceRead {
    ServiceRead::new(instances, Vec::new(), now)
}

#[test]
fn unannounced_changes_become_console_events() {
    let orders = name("orders");
    let mut model = Model::default();
    // What the first reads find was there before: not announced.
    model.apply(
        &name("payments"),
        read(vec![listed("h:2", 10, 15_000)], 0),
        true,
        0,
    );
    assert_eq!(model.events(10).count(), 0);
    model.prime();
    let changed = model.apply(
        &orders,
        read(vec![listed("h:1", 10, 15_000)], 1_000),
        true,
        1_000,
    );
    assert!(changed.service && changed.summary);
    assert_eq!(changed.events.len(), 1);
    assert_eq!(
        (changed.events[0].event, changed.events[0].source),
        (ChangeKind::Register, Source::Console)
    );

    // The instance is gone and no event said so: its lease ran out.
    let changed = model.apply(&orders, read(Vec::new(), 20_000), true, 20_000);
    assert_eq!(changed.events.len(), 1);
    assert_eq!(changed.events[0].event, ChangeKind::Expire);
    assert_eq!(model.events(10).count(), 2);
}

#[test]
fn announced_changes_are_not_repeated() {
    let orders = name("orders");
    let mut model = Model::default();
    model.prime();
    model.record(
        &orders,
        ChangeKind::Register,
        "h:1",
        Source::Registry,
        1_000,
    );
    let changed = model.apply(
        &orders,
        read(vec![listed("h:1", 10, 15_000)], 1_100),
        true,
        1_100,
    );
    assert!(changed.summary);
    assert!(changed.events.is_empty());
    model.record(
        &orders,
        ChangeKind::Deregister,
        "h:1",
        Source::Registry,
        2_000,
    );
    let changed = model.apply(&orders, read(Vec::new(), 2_100), true, 2_100);
    assert!(changed.summary && changed.events.is_empty());
}

#[test]
fn a_renewed_lease_changes_the_service_not_the_summary() {
    let orders = name("orders");
    let mut model = Model::default();
    model.apply(&orders, read(vec![listed("h:1", 10, 15_000)], 0), true, 0);
    // Same expiry a moment later: nothing changed.
    let changed = model.apply(
        &orders,
        read(vec![listed("h:1", 10, 14_800)], 200),
        true,
        200,
    );
    assert!(!changed.service && !changed.summary);
    // Renewed by a heartbeat: the countdown jumps.
    let changed = model.apply(
        &orders,
        read(vec![listed("h:1", 10, 15_000)], 5_000),
        true,
        5_000,
    );
    assert!(changed.service && !changed.summary && changed.events.is_empty());
}

#[test]
fn overrides_join_their_instances_or_wait() {
    let overrides = vec![
        ("h:1".to_owned(), Override::drain()),
        ("h:9".to_owned(), Override::Disabled),
    ];
    let read = ServiceRead::new(vec![listed("h:1", 0, 1_000)], overrides, 0);
    assert_eq!(
        read.instances[0].overridden,
        Some(OverrideView::Weight { weight: 0 })
    );
    assert_eq!(read.instances[0].health, "drained");
    assert_eq!(read.pending_overrides.len(), 1);
    assert_eq!(read.pending_overrides[0].addr, "h:9");
    let json = serde_json::to_value(&read.pending_overrides[0]).expect("json");
    assert_eq!(json["override"]["disabled"], true);
}

#[test]
fn the_feed_and_the_services_are_bounded() {
    let orders = name("orders");
    let mut model = Model::default();
    for i in 0..(MAX_EVENTS + 10) {
        model.record(
            &orders,
            ChangeKind::Update,
            &format!("h:{}", i % 60_000 + 1),
            Source::Registry,
            0,
        );
    }
    assert_eq!(model.events(usize::MAX).count(), MAX_EVENTS);
    for i in 0..(MAX_SERVICES + 5) {
        model.apply(&name(&format!("s{i}")), ServiceRead::default(), true, 0);
    }
    assert_eq!(model.services().len(), MAX_SERVICES);
}

#[test]
fn a_departure_is_announced_only_by_a_departure_event() {
    let orders = name("orders");
    let mut model = Model::default();
    model.prime();
    model.record(
        &orders,
        ChangeKind::Register,
        "h:1",
        Source::Registry,
        1_000,
    );
    model.apply(
        &orders,
        read(vec![listed("h:1", 10, 2_000)], 1_100),
        true,
        1_100,
    );
    // Killed: its lease runs out; the register event says nothing of that.
    let changed = model.apply(&orders, read(Vec::new(), 4_000), true, 4_000);
    assert_eq!(changed.events.len(), 1);
    assert_eq!(
        (changed.events[0].event, changed.events[0].source),
        (ChangeKind::Expire, Source::Console)
    );
    // An event older than the previous read announces nothing new.
    model.record(
        &orders,
        ChangeKind::Register,
        "h:2",
        Source::Registry,
        5_000,
    );
    model.apply(
        &orders,
        read(vec![listed("h:2", 10, 15_000)], 5_100),
        true,
        5_100,
    );
    model.apply(
        &orders,
        read(vec![listed("h:2", 10, 15_000)], 20_000),
        true,
        20_000,
    );
    let changed = model.apply(
        &orders,
        read(vec![listed("h:2", 5, 15_000)], 40_000),
        true,
        40_000,
    );
    assert_eq!(changed.events.len(), 1);
    assert_eq!(changed.events[0].event, ChangeKind::Update);
}

#[test]
fn empty_services_named_by_events_are_not_shown() {
    let mut model = Model::default();
    model.prime();
    let changed = model.apply(&name("made-up"), ServiceRead::default(), false, 0);
    assert!(!changed.summary);
    assert!(model.services().is_empty());
    model.apply(&name("listed"), ServiceRead::default(), true, 0);
    assert_eq!(model.services().len(), 1);
}

#[test]
fn a_departure_with_lease_left_is_a_deregistration() {
    let orders = name("orders");
    let mut model = Model::default();
    model.apply(&orders, read(vec![listed("h:1", 10, 15_000)], 0), true, 0);
    model.prime();
    let changed = model.apply(&orders, read(Vec::new(), 1_000), true, 1_000);
    assert_eq!(changed.events[0].event, ChangeKind::Deregister);
}

#[test]
fn events_serialize_with_their_wire_names() {
    let mut model = Model::default();
    let view = model.record(
        &name("orders"),
        ChangeKind::Expire,
        "h:1",
        Source::Console,
        7,
    );
    let json = serde_json::to_value(&view).expect("json");
    assert_eq!(json["event"], "expire");
    assert_eq!(json["source"], "console");
}
