//! A tonic [`Channel`] that follows a service's instances in the registry
//! (feature `tonic`): [`balance_channel`], [`forward_changes`] and
//! [`RedisResolver::tonic_channel`].

use std::fmt;

use ::tonic::transport::channel::Change;
use ::tonic::transport::{Channel, Endpoint};
use futures_util::StreamExt;
use tokio::sync::mpsc::Sender;

use super::change::{InstanceAddr, InstanceChange};
use super::changes::InstanceChanges;
use crate::error::ResolveError;
use crate::instance::{Instance, ServiceName};
use crate::resolver::RedisResolver;

/// How many changes wait between the forwarding task and the channel:
/// the task waits when they are full, so memory stays bounded.
const CHANGES_BUFFERED: usize = 64;

/// A tonic [`Channel`] that balances over `changes`' instances and follows
/// them: a new instance gets calls, a removed one gets no new calls.
/// Feature `tonic`.
///
/// `endpoint` makes each instance's [`Endpoint`]: the scheme, TLS
/// config, timeouts and keep-alives are yours. It runs once per insert
/// (the first list, then every instance that joins or changes weight or
/// tags), not per call. An instance whose endpoint fails to build is
/// skipped with a warning (`tracing`), and the others are used.
///
/// Spawns one task (with [`tokio::spawn`], so call it inside a Tokio
/// runtime), the [`forward_changes`] future, which ends:
/// * when the stream ends (the resolver shut down): the channel keeps
///   the instances it has and keeps calling them;
/// * when the channel is dropped (every clone of it): the task drops the
///   stream, and with it the resolver's watch of the service (the
///   service stays cached until the idle sweep drops it).
///
/// Calls spread over the instances as tonic's balancer spreads them
/// (power of two choices); weights are not used. An instance whose
/// weight or tags change is removed and inserted again: its connection
/// is made anew.
///
/// # An instance that dies without deregistering
///
/// It stays in the channel until the registry drops it (its lease runs
/// out). Meanwhile tonic's balancer keeps picking it, and each call it
/// sends there fails with `Unavailable` ("tcp connect error"): in a test
/// with one of two instances refusing connections, about 40% of the
/// calls failed. Those calls never reached a server, so retrying them is
/// safe; the [tower layer](crate::layer) does that retry for HTTP, this
/// channel does not.
///
/// ```no_run
/// use redis_discovery::discover::balance_channel;
/// use tonic::transport::Endpoint;
/// # use redis_discovery::RedisResolver;
///
/// # async fn run(resolver: RedisResolver) -> Result<(), redis_discovery::ResolveError> {
/// let changes = resolver.changes("greeter").await?;
/// let channel = balance_channel(changes, |instance| {
///     Endpoint::from_shared(format!("http://{}", instance.addr()))
///         .map(|endpoint| endpoint.timeout(std::time::Duration::from_secs(5)))
/// });
/// // `channel` goes to a generated client: `GreeterClient::new(channel)`.
/// # drop(channel);
/// # Ok(())
/// # }
/// ```
pub fn balance_channel<F, E>(changes: InstanceChanges, endpoint: F) -> Channel
where
    F: Fn(&Instance) -> Result<Endpoint, E> + Send + 'static,
    E: fmt::Display + 'static,
{
    let (channel, sender) = Channel::balance_channel(CHANGES_BUFFERED);
    tokio::spawn(forward_changes(changes, endpoint, sender));
    channel
}

/// Forwards `changes` to the sender of a
/// [`Channel::balance_channel`], making each inserted instance's
/// [`Endpoint`] with `endpoint`; the task that [`balance_channel`]
/// spawns. Feature `tonic`.
///
/// Use it to run the forwarding yourself (another executor, your own
/// channel capacity). It ends when the stream ends (the resolver shut
/// down) or when the channel, and so the sender's receiver, is dropped.
/// An instance whose endpoint fails to build is skipped with a warning.
///
/// ```no_run
/// use redis_discovery::discover::forward_changes;
/// use tonic::transport::{Channel, Endpoint};
/// # use redis_discovery::RedisResolver;
///
/// # async fn run(resolver: RedisResolver) -> Result<(), redis_discovery::ResolveError> {
/// let changes = resolver.changes("greeter").await?;
/// let (channel, sender) = Channel::balance_channel(16);
/// let forwarding = tokio::spawn(forward_changes(
///     changes,
///     |instance| Endpoint::from_shared(format!("http://{}", instance.addr())),
///     sender,
/// ));
/// drop(channel);
/// forwarding.await.expect("the task ends once the channel is gone");
/// # Ok(())
/// # }
/// ```
pub async fn forward_changes<F, E>(
    mut changes: InstanceChanges,
    endpoint: F,
    sender: Sender<Change<InstanceAddr, Endpoint>>,
) where
    F: Fn(&Instance) -> Result<Endpoint, E>,
    E: fmt::Display,
{
    loop {
        // `next()` is cancel-safe: no change is lost when the channel
        // goes first.
        let change = tokio::select! {
            change = changes.next() => change,
            () = sender.closed() => break,
        };
        let Some(change) = change else { break };
        let forwarded = match change {
            InstanceChange::Insert(instance) => match endpoint(&instance) {
                Ok(made) => Change::Insert(InstanceAddr::from(&instance), made),
                Err(error) => {
                    tracing::warn!(
                        service = %changes.service(),
                        addr = instance.addr(),
                        error = %error,
                        "no tonic endpoint for this instance: skipped"
                    );
                    continue;
                }
            },
            // A remove of a skipped instance is harmless: the balancer
            // ignores keys it does not have.
            InstanceChange::Remove(instance) => Change::Remove(InstanceAddr::from(&instance)),
        };
        if sender.send(forwarded).await.is_err() {
            break;
        }
    }
    tracing::debug!(service = %changes.service(), "tonic channel no longer follows the registry");
}

impl RedisResolver {
    /// A tonic [`Channel`] over `service`'s instances that follows the
    /// registry: [`changes`](Self::changes) given to
    /// [`balance_channel`], which says what it spawns and when that
    /// ends. Fails like [`watch`](Self::watch). Feature `tonic`.
    ///
    /// ```no_run
    /// use tonic::transport::Endpoint;
    /// # use redis_discovery::RedisResolver;
    ///
    /// # async fn run() -> Result<(), redis_discovery::ResolveError> {
    /// let resolver = RedisResolver::connect("redis://127.0.0.1:6379").await?;
    /// let channel = resolver
    ///     .tonic_channel("greeter", |instance| {
    ///         Endpoint::from_shared(format!("http://{}", instance.addr()))
    ///     })
    ///     .await?;
    /// # drop(channel);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn tonic_channel<S, F, E>(
        &self,
        service: S,
        endpoint: F,
    ) -> Result<Channel, ResolveError>
    where
        S: TryInto<ServiceName>,
        S::Error: Into<ResolveError>,
        F: Fn(&Instance) -> Result<Endpoint, E> + Send + 'static,
        E: fmt::Display + 'static,
    {
        Ok(balance_channel(self.changes(service).await?, endpoint))
    }
}
