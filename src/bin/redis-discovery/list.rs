//! `list`: the services, or one service's instances with their leases.

use std::time::Duration;

use redis_discovery::resolver::Listed;
use redis_discovery::ServiceName;

use crate::problem::resolve_failed;
use crate::{resolver, tags_text, Allow, Error, Global};

/// `list`: each service with its number of instances.
pub(crate) async fn list_services(g: &Global, allow: &Allow, json: bool) -> Result<(), Error> {
    let resolver = resolver(g, allow, Duration::from_secs(10)).await?;
    let mut rows = Vec::new();
    for name in resolver.services().await.map_err(resolve_failed(g))? {
        let instances = resolver
            .list(name.as_str())
            .await
            .map_err(resolve_failed(g))?
            .len();
        rows.push((name, instances));
    }
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(s, n)| serde_json::json!({"service": s, "instances": n}))
            .collect();
        out!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        eprintln!("no services registered");
    } else {
        out!("{:<40} INSTANCES", "SERVICE");
        for (s, n) in rows {
            out!("{s:<40} {n}");
        }
    }
    Ok(())
}

/// `list SERVICE`: its instances with their leases; an error for a
/// service that was never registered.
pub(crate) async fn list_instances(
    g: &Global,
    allow: &Allow,
    service: &str,
    json: bool,
) -> Result<(), Error> {
    let service = ServiceName::new(service)?;
    let resolver = resolver(g, allow, Duration::from_secs(10)).await?;
    let listed = resolver
        .list(service.clone())
        .await
        .map_err(resolve_failed(g))?;
    if listed.is_empty()
        && !resolver
            .services()
            .await
            .map_err(resolve_failed(g))?
            .iter()
            .any(|s| ServiceName::new(s).is_ok_and(|s| s == service))
    {
        return Err(format!("unknown service {service}").into());
    }
    if json {
        let rows: Vec<_> = listed.iter().map(listed_json).collect();
        out!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    out!("{:<30} {:>6} {:>10}  TAGS", "ADDRESS", "WEIGHT", "LEASE");
    for l in &listed {
        let lease = l
            .lease_left
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        // An operator's override replaced the registered weight.
        let overridden = l
            .registered_weight
            .map(|w| format!("  (override; registered {w})"))
            .unwrap_or_default();
        out!(
            "{:<30} {:>6} {:>10}  {}{overridden}",
            l.instance.addr(),
            l.instance.weight(),
            lease,
            tags_text(l.instance.tags())
        );
    }
    Ok(())
}

/// One instance of `list SERVICE --json`.
fn listed_json(l: &Listed) -> serde_json::Value {
    serde_json::json!({
        "addr": l.instance.addr(),
        "weight": l.instance.weight(),
        "tags": l.instance.tags(),
        "lease_left_ms": l.lease_left.map(|d| d.as_millis() as u64),
        "registered_weight": l.registered_weight,
    })
}
