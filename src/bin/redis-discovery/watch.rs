//! `watch`: one service's instances, then each change as it happens.

use std::collections::BTreeMap;
use std::time::Duration;

use redis_discovery::resolver::Snapshot;
use redis_discovery::{Instance, ServiceName};

use crate::problem::resolve_failed;
use crate::{describe, resolver, shutdown_signal, Allow, Error, Global};

/// Prints what changed from `old` to `new`: `+` added, `-` removed, `~` changed.
fn print_changes(old: &Snapshot, new: &Snapshot) -> Result<(), Error> {
    let before: BTreeMap<&str, &Instance> = old.instances().iter().map(|i| (i.addr(), i)).collect();
    let after: BTreeMap<&str, &Instance> = new.instances().iter().map(|i| (i.addr(), i)).collect();
    for (addr, i) in &after {
        match before.get(addr) {
            None => out!("+ {}", describe(i)),
            Some(was) if was != i => out!("~ {}", describe(i)),
            Some(_) => {}
        }
    }
    for (addr, _) in before.iter().filter(|(a, _)| !after.contains_key(*a)) {
        out!("- {addr}");
    }
    Ok(())
}

/// `watch SERVICE`: its instances, then each change, until a signal.
pub(crate) async fn watch(
    g: &Global,
    allow: &Allow,
    service: &str,
    resync: u64,
) -> Result<(), Error> {
    let service = ServiceName::new(service)?;
    if resync == 0 {
        return Err("--resync must be at least 1 second".into());
    }
    let resolver = resolver(g, allow, Duration::from_secs(resync)).await?;
    let mut updates = resolver
        .watch(service.clone())
        .await
        .map_err(resolve_failed(g))?;
    let mut current = updates.borrow_and_update().clone();
    out!(
        "watching {service}: {} instances (Ctrl-C to stop)",
        current.len()
    );
    for i in current.instances() {
        out!("  {}", describe(i));
    }
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            changed = updates.changed() => {
                if changed.is_err() {
                    return Err("the resolver stopped".into());
                }
                let next = updates.borrow_and_update().clone();
                print_changes(&current, &next)?;
                current = next;
            }
        }
    }
}
