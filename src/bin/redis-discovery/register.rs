//! `register` (heartbeating until a signal, or while a health check
//! passes) and `deregister`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use redis_discovery::{Instance, RedisRegistry, Registration, ServiceName};
use tokio::time::MissedTickBehavior;

use crate::check::Checker;
use crate::problem::registry_failed;
use crate::{describe, registry, shutdown_signal, Error, Global};

/// The flags of `register` besides the service and address.
#[derive(Debug)]
pub(crate) struct Options<'a> {
    pub(crate) weight: u32,
    pub(crate) tags: &'a [String],
    pub(crate) ttl: Option<u64>,
    pub(crate) heartbeat: Option<u64>,
    pub(crate) checker: Option<&'a Checker>,
}

/// `register`: registers, heartbeats until a signal, then deregisters.
pub(crate) async fn register(
    g: &Global,
    service: &str,
    addr: &str,
    options: Options<'_>,
) -> Result<(), Error> {
    let Options {
        weight,
        tags,
        ttl,
        heartbeat,
        checker,
    } = options;
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
    if let Some(checker) = checker {
        let registry = tokio::select! {
            registry = builder.connect() => registry.map_err(registry_failed(g))?,
            _ = &mut stop => return Ok(()),
        };
        let checked = Checked {
            registry: &registry,
            service: &service,
            instance: &instance,
            checker,
        };
        return checked.run(g, stop).await;
    }
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

/// A sidecar whose instance is registered only while its check passes.
struct Checked<'a> {
    registry: &'a RedisRegistry,
    service: &'a ServiceName,
    instance: &'a Instance,
    checker: &'a Checker,
}

impl Checked<'_> {
    /// Checks every interval until `stop`: registers after a passing check,
    /// deregisters after a failing one; at `stop` deregisters if registered.
    async fn run(
        &self,
        g: &Global,
        mut stop: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), Error> {
        let mut ticks = tokio::time::interval(self.checker.interval());
        // A slow check or Redis call delays the next check rather than
        // bunching checks up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut registration: Option<Registration> = None;
        // What was last said about the check, so that each change is said
        // once: `None` before the first check.
        let mut passing: Option<bool> = None;
        loop {
            let outcome = tokio::select! {
                _ = &mut stop => break,
                outcome = async {
                    ticks.tick().await;
                    self.checker.run().await
                } => outcome,
            };
            match (outcome, registration.take()) {
                (Ok(()), Some(kept)) => registration = Some(kept),
                (Ok(()), None) => {
                    if passing != Some(true) {
                        tracing::info!(service = %self.service, "check passed: registering");
                        out!("check passed: registering");
                        passing = Some(true);
                    }
                    let start = self
                        .registry
                        .register(self.service.clone(), self.instance.clone());
                    let started = tokio::select! {
                        started = start => started,
                        _ = &mut stop => break,
                    };
                    match started {
                        Ok(started) => {
                            out!(
                                "registered {} in {}; heartbeating until SIGINT/SIGTERM or a failing check",
                                describe(&started.instance()),
                                self.service
                            );
                            registration = Some(started);
                        }
                        // Redis may be back by the next check.
                        Err(e) => tracing::warn!(
                            service = %self.service,
                            error = %registry_failed(g)(e),
                            "registering failed; trying again after the next passing check"
                        ),
                    }
                }
                (Err(why), Some(registered)) => {
                    tracing::info!(service = %self.service, "check failed ({why}): deregistering");
                    out!("check failed ({why}): deregistering");
                    passing = Some(false);
                    self.deregister(g, registered).await?;
                }
                (Err(why), None) => {
                    if passing != Some(false) {
                        tracing::info!(service = %self.service, "check failed ({why}): not registering");
                        out!("check failed ({why}): not registering");
                        passing = Some(false);
                    }
                }
            }
        }
        // As without a check: a failure here is the command's error.
        if let Some(registered) = registration {
            registered.deregister().await.map_err(registry_failed(g))?;
            out!(
                "deregistered {} from {}",
                self.instance.addr(),
                self.service
            );
        }
        Ok(())
    }

    async fn deregister(&self, g: &Global, registration: Registration) -> Result<(), Error> {
        match registration.deregister().await {
            Ok(_) => out!(
                "deregistered {} from {}",
                self.instance.addr(),
                self.service
            ),
            // The heartbeat has stopped: the entry goes when its lease ends.
            Err(e) => tracing::warn!(
                service = %self.service,
                error = %registry_failed(g)(e),
                "deregistering failed; the entry expires with its lease"
            ),
        }
        Ok(())
    }
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
