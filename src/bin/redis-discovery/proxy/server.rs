//! The proxy's connections: each request through the layer, and a
//! connection closed once idle for `--idle-timeout`. The accept loop
//! (`--max-connections`, the drain on SIGINT/SIGTERM) is
//! [`crate::http_server`]'s.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::idle::Activity;

use super::forwarding::Proxy;
use super::headers::Downstream;
use super::Limits;
use crate::http_server::{self, connection_builder, ServeOptions};
use crate::{shutdown_signal, Error};

/// Serves until SIGINT/SIGTERM, then stops accepting and waits up to the
/// drain timeout for the requests in flight.
pub(crate) async fn serve(proxy: Proxy, limits: Limits) -> Result<(), Error> {
    let listener = TcpListener::bind(proxy.listen())
        .await
        .map_err(|e| format!("--listen {}: {e}", proxy.listen()))?;
    let local = listener.local_addr()?;
    out!("proxy listening on {local}");
    let proxy = Arc::new(proxy);
    let builder = connection_builder();
    let options = ServeOptions {
        name: "proxy",
        max_connections: limits.max_connections,
        drain_timeout: limits.drain_timeout,
    };
    http_server::serve(
        listener,
        options,
        shutdown_signal(),
        |stream, peer, mut drain| {
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
            let idle_timeout = limits.idle_timeout;
            async move {
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
            }
        },
    )
    .await
}
