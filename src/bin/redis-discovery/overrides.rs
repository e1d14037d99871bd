//! The operator's overrides: `drain`, `undrain`, `weight`, `disable` and
//! `overrides`.

use redis_discovery::{KeySchema, Override, RedisRegistry, RegistryError, ServiceName};

use crate::problem::registry_failed;
use crate::{registry, Error, Global};

/// `drain SERVICE ADDR`: weight 0 until `undrain`.
pub(crate) async fn drain(g: &Global, service: &str, addr: &str) -> Result<(), Error> {
    set(g, service, addr, Override::drain(), "drained", "").await
}

/// `undrain SERVICE ADDR`: removes the instance's override.
pub(crate) async fn undrain(g: &Global, service: &str, addr: &str) -> Result<(), Error> {
    let service = ServiceName::new(service)?;
    refuse_hertz(g)?;
    let cleared = async {
        connect(g)
            .await?
            .clear_override(service.clone(), addr)
            .await
    };
    if cleared.await.map_err(registry_failed(g))? {
        out!("undrained {service} {addr}");
    } else {
        out!("undrained {service} {addr} (no override was set)");
    }
    Ok(())
}

/// `weight SERVICE ADDR N`.
pub(crate) async fn weight(
    g: &Global,
    service: &str,
    addr: &str,
    weight: u32,
) -> Result<(), Error> {
    let detail = format!(" weight={weight}");
    set(
        g,
        service,
        addr,
        Override::Weight(weight),
        "weighted",
        &detail,
    )
    .await
}

/// `disable SERVICE ADDR`: hidden from resolvers until `undrain`.
pub(crate) async fn disable(g: &Global, service: &str, addr: &str) -> Result<(), Error> {
    set(g, service, addr, Override::Disabled, "disabled", "").await
}

/// `overrides [SERVICE] [--json]`: one `SERVICE ADDR weight=N|disabled`
/// line each.
pub(crate) async fn list(g: &Global, service: Option<&str>, json: bool) -> Result<(), Error> {
    let service = service.map(ServiceName::new).transpose()?;
    refuse_hertz(g)?;
    let listed = async {
        let registry = connect(g).await?;
        match &service {
            Some(service) => Ok(registry
                .overrides(service.clone())
                .await?
                .into_iter()
                .map(|(addr, value)| (service.clone(), addr, value))
                .collect()),
            None => registry.all_overrides().await,
        }
    };
    let rows: Vec<(ServiceName, String, Override)> = listed.await.map_err(registry_failed(g))?;
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(s, addr, value)| {
                let mut row = serde_json::json!({"service": s.as_str(), "addr": addr});
                match value {
                    Override::Weight(w) => row["weight"] = (*w).into(),
                    Override::Disabled => row["disabled"] = true.into(),
                    // A kind added later: named, not taken for another.
                    other => row["override"] = other.to_string().into(),
                }
                row
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        eprintln!("no overrides");
    } else {
        for (s, addr, value) in rows {
            out!("{s} {addr} {value}");
        }
    }
    Ok(())
}

/// Writes one override and confirms it: `DONE SERVICE ADDR[DETAIL]`,
/// with a note when no instance is registered at the address now (a
/// typo, or one not started yet: the override waits for it).
async fn set(
    g: &Global,
    service: &str,
    addr: &str,
    value: Override,
    done: &str,
    detail: &str,
) -> Result<(), Error> {
    let service = ServiceName::new(service)?;
    refuse_hertz(g)?;
    let set = async {
        connect(g)
            .await?
            .set_override(service.clone(), addr, value)
            .await
    };
    if set.await.map_err(registry_failed(g))? {
        out!("{done} {service} {addr}{detail}");
    } else {
        out!("{done} {service} {addr}{detail} (not registered now; applies once it is)");
    }
    Ok(())
}

/// The Hertz schema's refusal, before connecting: the same words as the
/// library's, whether or not Redis answers.
fn refuse_hertz(g: &Global) -> Result<(), Error> {
    match g.schema {
        KeySchema::Hertz => Err(RegistryError::OverridesUnsupported.into()),
        _ => Ok(()),
    }
}

async fn connect(g: &Global) -> Result<RedisRegistry, redis_discovery::RegistryError> {
    registry(g).connect().await
}
