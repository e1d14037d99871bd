//! The one pub/sub connection of a resolver (native schema): subscribed to
//! the events channel of every cached service; an event refreshes its
//! service. Reconnects with backoff; after a reconnect it resubscribes and
//! refreshes every cached service, since events published while it was
//! away are lost (pub/sub is at-most-once).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use super::redis::{after, Shared};
use crate::connection::{check_member, Events};

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Channels per SUBSCRIBE command.
const BATCH: usize = 1000;

/// A change to the subscriptions, sent by the cache.
pub(super) enum Command {
    /// Subscribe; the sender is dropped once Redis confirmed (or failed).
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// Runs until the resolver is dropped.
pub(super) async fn run(
    shared: Arc<Shared>,
    first: Events,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut connection = Some(first);
    let mut reconnect = false;
    let mut backoff = MIN_BACKOFF;
    let mut told_denied = false;
    loop {
        let Events { pubsub, mut member } = match connection.take() {
            Some(events) => events,
            None => {
                let connecting = shared.endpoint().events(shared.timeouts.connect);
                let result = tokio::select! {
                    _ = shared.cancel.cancelled() => return,
                    result = connecting => result,
                };
                match result {
                    Ok(events) => events,
                    Err(error) => {
                        tracing::debug!(%error, retry_in = ?backoff, "event connection: reconnect failed");
                        if !pause(&shared, &mut commands, backoff).await {
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
            let channels = shared.channels();
            if let Err(error) = subscribe(&shared, &mut sink, &channels).await {
                tracing::debug!(%error, "event connection: resubscribing failed");
                let delay = denied(&shared, &error, &mut told_denied).unwrap_or(backoff);
                if !pause(&shared, &mut commands, delay).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            tracing::info!(
                services = channels.len(),
                "event connection back: resubscribed, refreshing every cached service"
            );
            shared.refresh_all();
        }
        reconnect = true;
        backoff = MIN_BACKOFF;
        match serve(
            &shared,
            &mut sink,
            &mut stream,
            member.as_mut(),
            &mut commands,
        )
        .await
        {
            Ok(()) => return,
            Err(reason) if denied(&shared, &reason, &mut told_denied).is_some() => {}
            Err(reason) => tracing::warn!(
                %reason,
                "event connection lost; serving cached instances, reconnecting"
            ),
        }
    }
}

/// A permission error (an ACL without the event channels) is not cured by
/// reconnecting: say so once, plainly, and retry only at the refresh
/// interval (the ACL may be fixed). `None` for any other error.
fn denied(shared: &Shared, error: &str, told: &mut bool) -> Option<Duration> {
    // "NOPERM" from Redis, "NoPerm" as the redis crate names the kind.
    if !error.to_ascii_uppercase().contains("NOPERM") {
        return None;
    }
    if !*told {
        *told = true;
        let prefix = shared.keyspace.prefix();
        tracing::warn!(%error, "the Redis user may not subscribe to the event channels: changes arrive only with the periodic refresh (grant the channels, e.g. `&{prefix}:*` in its ACL, to have them pushed)");
    }
    Some(shared.refresh_interval().max(MAX_BACKOFF))
}

/// Waits `delay` while disconnected, releasing subscribers at once (the
/// channels are subscribed on reconnect). `false` if the resolver is gone.
async fn pause(
    shared: &Shared,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    delay: Duration,
) -> bool {
    let until = tokio::time::sleep(delay);
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return false,
            _ = &mut until => return true,
            command = commands.recv() => {
                if command.is_none() {
                    return false;
                }
                // Dropping a Subscribe's ack lets its first read go ahead.
            }
        }
    }
}

/// Handles events and subscription changes until the connection is lost
/// (`Err`) or the resolver is dropped (`Ok`).
async fn serve(
    shared: &Arc<Shared>,
    sink: &mut PubSubSink,
    stream: &mut PubSubStream,
    mut member: Option<&mut MultiplexedConnection>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<(), String> {
    // Pub/sub connections are otherwise silent: a PING finds a dead one.
    let every = shared.refresh_interval();
    let mut ping = tokio::time::interval_at(after(every), every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return Ok(()),
            command = commands.recv() => {
                let Some(command) = command else { return Ok(()) };
                let mut batch = vec![command];
                while batch.len() < BATCH {
                    match commands.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
                apply(shared, sink, batch).await?;
            }
            message = stream.next() => match message {
                Some(message) => shared.on_event(message.get_channel_name(), message.get_payload_bytes()),
                None => return Err("connection closed".into()),
            },
            _ = ping.tick() => {
                let pong = tokio::time::timeout(shared.timeouts.command, sink.ping::<redis::Value>()).await;
                match pong {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("PING failed: {e}")),
                    Err(_) => return Err(format!("no answer to PING within {:?}", shared.timeouts.command)),
                }
                if let Some(member) = member.as_deref_mut() {
                    check_member(member, shared.timeouts.command).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
}

/// Applies subscription changes in order, one command per run of the same
/// kind.
async fn apply(shared: &Shared, sink: &mut PubSubSink, batch: Vec<Command>) -> Result<(), String> {
    let mut commands = batch.into_iter().peekable();
    while let Some(command) = commands.next() {
        match command {
            Command::Subscribe(channel, ack) => {
                let mut channels = vec![channel];
                let mut acks = vec![ack];
                while let Some(Command::Subscribe(..)) = commands.peek() {
                    if let Some(Command::Subscribe(channel, ack)) = commands.next() {
                        channels.push(channel);
                        acks.push(ack);
                    }
                }
                subscribe(shared, sink, &channels).await?;
                for ack in acks {
                    let _ = ack.send(());
                }
            }
            Command::Unsubscribe(channel) => {
                let mut channels = vec![channel];
                while let Some(Command::Unsubscribe(_)) = commands.peek() {
                    if let Some(Command::Unsubscribe(channel)) = commands.next() {
                        channels.push(channel);
                    }
                }
                let call = sink.unsubscribe(&channels);
                timed(shared, "UNSUBSCRIBE", call).await?;
            }
        }
    }
    Ok(())
}

async fn subscribe(
    shared: &Shared,
    sink: &mut PubSubSink,
    channels: &[String],
) -> Result<(), String> {
    for chunk in channels.chunks(BATCH) {
        timed(shared, "SUBSCRIBE", sink.subscribe(chunk)).await?;
    }
    Ok(())
}

async fn timed(
    shared: &Shared,
    what: &str,
    call: impl std::future::Future<Output = redis::RedisResult<()>>,
) -> Result<(), String> {
    match tokio::time::timeout(shared.timeouts.command, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{what} failed: {e}")),
        Err(_) => Err(format!(
            "no answer to {what} within {:?}",
            shared.timeouts.command
        )),
    }
}
