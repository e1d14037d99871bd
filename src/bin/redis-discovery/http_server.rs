//! The accept loop of the CLI's HTTP servers (`proxy`, `console`): at
//! most a given number of connections, a header timer, and a graceful
//! drain when told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::Error;

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

/// What a server is called in its messages, and its limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeOptions {
    /// `proxy` or `console`: "proxy stopping", "proxy stopped".
    pub(crate) name: &'static str,
    pub(crate) max_connections: usize,
    /// After the stop, how long connections may take to finish.
    pub(crate) drain_timeout: Duration,
}

/// HTTP/1.1 and h2c on one port, with the header timer (a client that
/// never finishes its headers is closed) and HTTP/2 pings (which find
/// connections whose client is gone).
pub(crate) fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL);
    builder
}

/// Accepts until `stop`, each connection served by the task `connection`
/// returns (given the stream, the client's address, and a flag that turns
/// `true` when the drain begins: the task then shuts its connection down
/// gracefully). Then stops accepting and waits up to the drain timeout
/// for the connections to end.
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    options: ServeOptions,
    stop: impl Future<Output = ()>,
    mut connection: F,
) -> Result<(), Error>
where
    F: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = options.name;
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let (draining, drain) = watch::channel(false);
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
        let served = connection(stream, peer, drain.clone());
        tokio::spawn(async move {
            served.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = draining.send(true);
    let max = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    let open = options.max_connections - slots.available_permits();
    out!(
        "{name} stopping: draining {open} connections (at most {:?})",
        options.drain_timeout
    );
    // Every connection gives its slot back when it ends.
    match tokio::time::timeout(options.drain_timeout, slots.acquire_many(max)).await {
        Ok(_) => out!("{name} stopped"),
        Err(_) => {
            tracing::warn!(
                timeout = ?options.drain_timeout,
                "requests still in flight at the end of the drain timeout were cut"
            );
            out!("{name} stopped (drain timeout reached)");
        }
    }
    Ok(())
}
