//! The accept loop: HTTP/1.1 and h2c on one port, at most
//! `--max-connections` connections, idle ones closed, and a graceful
//! drain on SIGINT/SIGTERM.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::idle::Activity;

use super::forwarding::Proxy;
use super::headers::Downstream;
use super::Limits;
use crate::{shutdown_signal, Error};

/// How long a client may take to send a request's headers, and how long
/// an idle keep-alive connection is kept (hyper's HTTP/1 header timer runs
/// while it waits for the next request too).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an HTTP/2 connection is pinged (hyper closes it when a ping
/// goes unanswered for 20 s).
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed `accept` (out of file descriptors), the pause before the
/// next, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves until SIGINT/SIGTERM, then stops accepting and waits up to the
/// drain timeout for the requests in flight.
pub(crate) async fn serve(proxy: Proxy, limits: Limits) -> Result<(), Error> {
    let listener = TcpListener::bind(proxy.listen())
        .await
        .map_err(|e| format!("--listen {}: {e}", proxy.listen()))?;
    let local = listener.local_addr()?;
    out!("proxy listening on {local}");
    let proxy = Arc::new(proxy);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // HTTP/2 has no header timer: pings find connections whose client is
    // gone, and the idle timeout closes live ones that ask nothing.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // `true` once the drain has begun: every connection shuts down
    // gracefully (HTTP/2 GOAWAY; HTTP/1 closes after its response).
    let (draining, drain) = watch::channel(false);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        // At the limit, stop accepting: the kernel's backlog holds the
        // next connections until one ends.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot?,
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        // One `Arc` clone per request.
        let connection = Arc::new((proxy.clone(), Downstream::new(peer), activity.clone()));
        let service = service_fn(move |req| {
            let connection = connection.clone();
            async move {
                let (proxy, client, activity) = &*connection;
                let _busy = activity.busy();
                Ok::<_, Infallible>(proxy.handle(client, req).await)
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let mut drain = drain.clone();
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                let idle_at = activity.idle_at(idle_timeout);
                tokio::select! {
                    ended = connection.as_mut() => {
                        // Errors are the client's (a reset, a malformed
                        // request, a header timeout): nothing to do but close.
                        if let Err(e) = ended {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = drain.wait_for(|&d| d), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    () = tokio::time::sleep_until(idle_at), if !closing => {
                        if activity.is_idle(idle_timeout) {
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = draining.send(true);
    let max = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let open = limits.max_connections - slots.available_permits();
    out!(
        "proxy stopping: draining {open} connections (at most {:?})",
        limits.drain_timeout
    );
    // Every connection gives its slot back when it ends.
    match tokio::time::timeout(limits.drain_timeout, slots.acquire_many(max)).await {
        Ok(_) => out!("proxy stopped"),
        Err(_) => {
            tracing::warn!(
                timeout = ?limits.drain_timeout,
                "requests still in flight at the end of the drain timeout were cut"
            );
            out!("proxy stopped (drain timeout reached)");
        }
    }
    Ok(())
}
