//! The one pub/sub connection of a resolver (native schema): subscribed to
//! the events channel of every cached service; an event refreshes its
//! service. Reconnects with backoff; after a reconnect it resubscribes and
//! refreshes every cached service, since events published while it was
//! away are lost (pub/sub is at-most-once).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use tokio::time::MissedTickBehavior;

use super::engine::ResolverEngine;
use super::subscriptions::{Changes, Subscriptions};
use crate::connection::{self, check_member, CallError, Events};
use crate::metrics::{redis_error, subscription_reconnected, RedisOperation};
use crate::time::after;

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest reconnect delay: short, so the resolver resubscribes (and
/// its recovery grace starts) within a second of Redis coming back; a
/// refused connection costs next to nothing, and this is one connection
/// per resolver.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Channels per SUBSCRIBE command.
const BATCH: usize = 1000;

/// Why the event connection stopped serving.
#[derive(Debug, thiserror::Error)]
pub(super) enum EventsError {
    /// Redis refused a command, or the connection failed.
    #[error("{command} failed: {error}")]
    Redis {
        command: &'static str,
        error: RedisError,
    },
    /// Redis did not answer in time.
    #[error("no answer to {command} within {timeout:?}")]
    Timeout {
        command: &'static str,
        timeout: Duration,
    },
    /// The server closed the connection.
    #[error("connection closed")]
    Closed,
}

impl From<CallError<&'static str>> for EventsError {
    fn from(error: CallError<&'static str>) -> Self {
        match error {
            CallError::Redis { label, source } => EventsError::Redis {
                command: label,
                error: source,
            },
            CallError::TimedOut { label, limit } => EventsError::Timeout {
                command: label,
                timeout: limit,
            },
        }
    }
}

impl EventsError {
    /// A permission error (`NOPERM`): the user may not subscribe.
    fn is_denied(&self) -> bool {
        matches!(self, EventsError::Redis { error, .. }
            if error.kind() == ErrorKind::Server(ServerErrorKind::NoPerm))
    }
}

/// Runs until the resolver is dropped.
pub(super) async fn run(engine: Arc<ResolverEngine>, first: Events) {
    let Some(commands) = engine.subscriptions() else {
        return; // no events: nothing to subscribe
    };
    let mut connection = Some(first);
    let mut reconnect = false;
    let mut backoff = MIN_BACKOFF;
    let mut told_denied = false;
    loop {
        let Events { pubsub, mut member } = match connection.take() {
            Some(events) => events,
            None => {
                let connecting = engine.endpoint().events(engine.timeouts().connect);
                let result = tokio::select! {
                    _ = engine.closed() => return,
                    result = connecting => result,
                };
                match result {
                    Ok(events) => events,
                    Err(error) => {
                        redis_error(RedisOperation::Subscribe);
                        tracing::debug!(%error, retry_in = ?backoff, "event connection: reconnect failed");
                        if !pause(&engine, commands, backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        if reconnect {
            let channels = engine.channels();
            if let Err(error) = subscribe(&engine, &mut sink, &channels).await {
                redis_error(RedisOperation::Subscribe);
                tracing::debug!(%error, "event connection: resubscribing failed");
                let delay = denied(&engine, &error, &mut told_denied).unwrap_or(backoff);
                if !pause(&engine, commands, delay).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            subscription_reconnected();
            tracing::info!(
                services = channels.len(),
                "event connection back: resubscribed, refreshing every cached service"
            );
            // Before the refresh, so its reads keep what they miss.
            engine.recovery().answered(tokio::time::Instant::now());
            engine.refresh_all();
        }
        reconnect = true;
        backoff = MIN_BACKOFF;
        let served = serve(&engine, &mut sink, &mut stream, member.as_mut(), commands).await;
        if served.is_err() {
            redis_error(RedisOperation::Subscribe);
        }
        match served {
            Ok(()) => return,
            Err(reason) if denied(&engine, &reason, &mut told_denied).is_some() => {}
            Err(reason) => {
                engine.recovery().lost();
                tracing::warn!(
                    %reason,
                    "event connection lost; serving cached instances, reconnecting"
                );
            }
        }
    }
}

/// A permission error (an ACL without the event channels) is not cured by
/// reconnecting: say so once, plainly, and retry only at the refresh
/// interval (the ACL may be fixed). `None` for any other error.
fn denied(engine: &ResolverEngine, error: &EventsError, told: &mut bool) -> Option<Duration> {
    if !error.is_denied() {
        return None;
    }
    if !*told {
        *told = true;
        let prefix = engine.keyspace().prefix();
        tracing::warn!(%error, "the Redis user may not subscribe to the event channels: changes arrive only with the periodic refresh (grant the channels, e.g. `&{prefix}:*` in its ACL, to have them pushed)");
    }
    Some(engine.refresh_interval().max(MAX_BACKOFF))
}

/// Waits `delay` while disconnected, releasing subscribers at once (the
/// channels are subscribed on reconnect). `false` if the resolver is gone.
async fn pause(engine: &ResolverEngine, commands: &Subscriptions, delay: Duration) -> bool {
    let until = tokio::time::sleep(delay);
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = engine.closed() => return false,
            _ = &mut until => return true,
            // Dropping the acks lets the first reads go ahead.
            _ = commands.changed() => drop(commands.take()),
        }
    }
}

/// Handles events and subscription changes until the connection is lost
/// (`Err`) or the resolver is dropped (`Ok`).
async fn serve(
    engine: &Arc<ResolverEngine>,
    sink: &mut PubSubSink,
    stream: &mut PubSubStream,
    mut member: Option<&mut MultiplexedConnection>,
    commands: &Subscriptions,
) -> Result<(), EventsError> {
    // Pub/sub connections are otherwise silent: a PING finds a dead one.
    let every = engine.refresh_interval();
    let mut ping = tokio::time::interval_at(after(every), every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = engine.closed() => return Ok(()),
            _ = commands.changed() => apply(engine, sink, commands.take()).await?,
            message = stream.next() => match message {
                Some(message) => engine.on_event(message.get_channel_name(), message.get_payload_bytes()),
                None => return Err(EventsError::Closed),
            },
            _ = ping.tick() => {
                connection::timed(engine.timeouts().command, "PING", async { sink.ping::<redis::Value>().await.map(drop) }).await?;
                if let Some(member) = member.as_deref_mut() {
                    check_member(member, engine.timeouts().command)
                        .await
                        .map_err(|error| EventsError::Redis { command: "CLUSTER INFO", error })?;
                }
            }
        }
    }
}

/// Applies the pending subscription changes: one `SUBSCRIBE` per
/// [`BATCH`] channels, then one `UNSUBSCRIBE` per batch (a channel is in
/// one list at most).
async fn apply(
    engine: &ResolverEngine,
    sink: &mut PubSubSink,
    changes: Changes,
) -> Result<(), EventsError> {
    let Changes {
        subscribe: channels,
        acks,
        unsubscribe,
    } = changes;
    subscribe(engine, sink, &channels).await?;
    drop(acks); // confirmed: the first reads go ahead
    for chunk in unsubscribe.chunks(BATCH) {
        connection::timed(
            engine.timeouts().command,
            "UNSUBSCRIBE",
            sink.unsubscribe(chunk),
        )
        .await?;
    }
    Ok(())
}

async fn subscribe(
    engine: &ResolverEngine,
    sink: &mut PubSubSink,
    channels: &[String],
) -> Result<(), EventsError> {
    for chunk in channels.chunks(BATCH) {
        connection::timed(
            engine.timeouts().command,
            "SUBSCRIBE",
            sink.subscribe(chunk),
        )
        .await?;
    }
    Ok(())
}
