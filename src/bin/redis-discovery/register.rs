//! `register` (heartbeating until a signal) and `deregister`.

use std::time::Duration;

use redis_discovery::{Instance, ServiceName};

use crate::problem::registry_failed;
use crate::{describe, registry, shutdown_signal, Error, Global};

/// `register`: registers, heartbeats until a signal, then deregisters.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn register(
    g: &Global,
    service: &str,
    addr: &str,
    weight: u32,
    tags: &[String],
    ttl: Option<u64>,
    heartbeat: Option<u64>,
) -> Result<(), Error> {
    let service = ServiceName::new(service)?;
    let tags = tags
        .iter()
        .map(|t| {
            t.split_once('=')
                .ok_or_else(|| format!("invalid tag {t:?}: expected KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let instance = Instance::new(addr)?.with_weight(weight).with_tags(tags)?;
    let mut builder = registry(g);
    if let Some(ttl) = ttl {
        builder = builder.lease_ttl(Duration::from_secs(ttl));
    }
    if let Some(heartbeat) = heartbeat {
        builder = builder.heartbeat_interval(Duration::from_secs(heartbeat));
    }
    // Listen for signals before registering: a SIGTERM during start-up
    // must not leave an entry behind.
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let start = async {
        let registry = builder.connect().await?;
        registry.register(service.clone(), instance).await
    };
    let registration = tokio::select! {
        registration = start => registration.map_err(registry_failed(g))?,
        _ = &mut stop => return Ok(()),
    };
    out!(
        "registered {} in {service}; heartbeating until SIGINT/SIGTERM",
        describe(&registration.instance())
    );
    stop.await;
    registration
        .deregister()
        .await
        .map_err(registry_failed(g))?;
    out!("deregistered {addr} from {service}");
    Ok(())
}

/// `deregister`: removes an entry; an error if there was none.
pub(crate) async fn deregister(g: &Global, service: &str, addr: &str) -> Result<(), Error> {
    let service = ServiceName::new(service)?;
    let removed = async {
        registry(g)
            .connect()
            .await?
            .deregister(service.clone(), addr)
            .await
    };
    if removed.await.map_err(registry_failed(g))? {
        out!("deregistered {addr} from {service}");
        Ok(())
    } else {
        Err(format!("{addr} is not registered in {service}").into())
    }
}
