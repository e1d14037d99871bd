//! The connection behind a [`RegistryEvents`](super::RegistryEvents) and
//! the task that serves it: one pub/sub connection of its own,
//! `PSUBSCRIBE`d to every events channel of the keyspace, reconnected with
//! the event connection's backoff, pinged as it is (a pub/sub connection is
//! otherwise silent, so a dead one would go unnoticed).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;
use tokio::time::{Instant, MissedTickBehavior};

use super::{wire, RegistryEvent};
use crate::connection::{self, check_member, Events};
use crate::metrics::{redis_error, RedisOperation};
use crate::resolver::engine::ResolverEngine;
use crate::resolver::pubsub::{MAX_BACKOFF, MIN_BACKOFF};
use crate::schema::Keyspace;
use crate::time::after;

/// A connection whose `PSUBSCRIBE` Redis confirmed.
pub(super) struct Subscribed {
    sink: PubSubSink,
    stream: PubSubStream,
    /// On a cluster: a plain connection to the subscribed node.
    member: Option<MultiplexedConnection>,
}

/// Connects (within the connect timeout) and subscribes `pattern`
/// (within the command timeout).
pub(super) async fn connect(engine: &ResolverEngine, pattern: &str) -> RedisResult<Subscribed> {
    let timeouts = engine.timeouts();
    let Events { pubsub, member } = engine.endpoint().events(timeouts.connect).await?;
    let (mut sink, stream) = pubsub.split();
    connection::timed(timeouts.command, "PSUBSCRIBE", sink.psubscribe(pattern)).await?;
    Ok(Subscribed {
        sink,
        stream,
        member,
    })
}

/// Forwards events to `sender` until its receiver is dropped or the
/// resolver is closed; reconnects whenever the connection is lost, and
/// owes the reader a [`RegistryEvent::Missed`] from then on.
pub(super) async fn run(
    engine: Arc<ResolverEngine>,
    pattern: String,
    sender: Sender<RegistryEvent>,
    first: Subscribed,
) {
    let mut connection = Some(first);
    // Whether events were lost since the reader last heard: it gets one
    // `Missed`, in their place, as soon as there is room.
    let mut owed = false;
    let mut backoff = MIN_BACKOFF;
    let mut told_denied = false;
    loop {
        let subscribed = match connection.take() {
            Some(subscribed) => subscribed,
            None => {
                let result = tokio::select! {
                    biased;
                    _ = engine.closed() => return,
                    _ = sender.closed() => return,
                    result = connect(&engine, &pattern) => result,
                };
                match result {
                    Ok(subscribed) => {
                        tracing::info!("registry events: subscribed again (events published meanwhile are missed)");
                        owed = true;
                        subscribed
                    }
                    Err(error) => {
                        redis_error(RedisOperation::Subscribe);
                        let delay =
                            denied(&engine, &pattern, &error, &mut told_denied).unwrap_or(backoff);
                        tracing::debug!(%error, retry_in = ?delay, "registry events: reconnect failed");
                        if !pause(&engine, &sender, delay).await {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
        };
        let served_since = Instant::now();
        let Err(error) = serve(&engine, &sender, &mut owed, subscribed).await else {
            return; // the reader or the resolver is gone
        };
        redis_error(RedisOperation::Subscribe);
        owed = true;
        tracing::warn!(%error, "registry events: connection lost, reconnecting");
        // A connection that dies as soon as it is made (a server that
        // drops its clients) is not retried in a tight loop.
        if served_since.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF;
        }
        if !pause(&engine, &sender, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A permission error is not cured by reconnecting: say so once and retry
/// at the refresh interval only (the ACL may be fixed). `None` for any
/// other error.
fn denied(
    engine: &ResolverEngine,
    pattern: &str,
    error: &RedisError,
    told: &mut bool,
) -> Option<Duration> {
    if error.kind() != ErrorKind::Server(ServerErrorKind::NoPerm) {
        return None;
    }
    if !*told {
        *told = true;
        tracing::warn!(%error, pattern, "registry events: the Redis user may not subscribe to the events channels any more (it needs +psubscribe and, in its channel rules, this very pattern, or allchannels)");
    }
    Some(engine.refresh_interval().max(MAX_BACKOFF))
}

/// Waits `delay`. `false` if the reader or the resolver is gone.
async fn pause(engine: &ResolverEngine, sender: &Sender<RegistryEvent>, delay: Duration) -> bool {
    tokio::select! {
        biased;
        _ = engine.closed() => false,
        _ = sender.closed() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Forwards the connection's events until it is lost (`Err`) or the
/// reader or the resolver is gone (`Ok`).
async fn serve(
    engine: &ResolverEngine,
    sender: &Sender<RegistryEvent>,
    owed: &mut bool,
    subscribed: Subscribed,
) -> RedisResult<()> {
    let Subscribed {
        mut sink,
        mut stream,
        mut member,
    } = subscribed;
    let every = engine.refresh_interval();
    let mut ping = tokio::time::interval_at(after(every), every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let command_timeout = engine.timeouts().command;
    loop {
        tokio::select! {
            biased;
            _ = engine.closed() => return Ok(()),
            _ = sender.closed() => return Ok(()),
            // Room again: the `Missed` goes before any later change.
            permit = sender.reserve(), if *owed => match permit {
                Ok(permit) => {
                    permit.send(RegistryEvent::Missed);
                    *owed = false;
                }
                Err(_) => return Ok(()),
            },
            message = stream.next() => match message {
                Some(message) => forward(
                    engine.keyspace(),
                    sender,
                    owed,
                    message.get_channel_name(),
                    message.get_payload_bytes(),
                ),
                None => return Err(RedisError::from((ErrorKind::Io, "connection closed"))),
            },
            _ = ping.tick() => {
                let pinged = sink.ping::<redis::Value>();
                connection::timed(command_timeout, "PING", pinged).await?;
                if let Some(member) = member.as_mut() {
                    check_member(member, command_timeout).await?;
                }
            }
        }
    }
}

/// Queues the change a message announces, if it is one. Never waits: when
/// the queue is full the change is dropped and a `Missed` owed instead.
fn forward(
    keyspace: &Keyspace,
    sender: &Sender<RegistryEvent>,
    owed: &mut bool,
    channel: &str,
    payload: &[u8],
) {
    let Some(change) = wire::change(keyspace, channel, payload) else {
        return;
    };
    if *owed {
        if sender.try_send(RegistryEvent::Missed).is_err() {
            return; // still full (or the reader is gone: the loop ends)
        }
        *owed = false;
    }
    if let Err(TrySendError::Full(_)) = sender.try_send(RegistryEvent::Changed(change)) {
        *owed = true;
        tracing::debug!(
            "registry events: the reader fell behind; dropping events until it catches up"
        );
    }
}
