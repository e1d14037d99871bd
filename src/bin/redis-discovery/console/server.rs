//! The console's connections: each request through the router, with the
//! client's address for the action log. The accept loop (at most
//! [`MAX_CONNECTIONS`], the header timer, the drain) is
//! [`crate::http_server`]'s.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_service::Service as _;

use crate::http_server::{self, connection_builder, ServeOptions};
use crate::Error;

/// Plenty for the operators of one registry (each page holds one stream
/// and a few short requests), and well under any file-descriptor limit.
const MAX_CONNECTIONS: usize = 256;
/// After the stop, how long requests in flight may take (the live
/// streams end at once).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `router` until `stop`.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let builder = connection_builder();
    let options = ServeOptions {
        name: "console",
        max_connections: MAX_CONNECTIONS,
        drain_timeout: DRAIN_TIMEOUT,
    };
    http_server::serve(
        listener,
        options,
        stop,
        |stream, peer: SocketAddr, mut drain| {
            let router = router.clone();
            let service = service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().call(req)
            });
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            async move {
                tokio::pin!(connection);
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(e) = ended {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                        return;
                    }
                    _ = drain.wait_for(|&d| d) => connection.as_mut().graceful_shutdown(),
                }
                if let Err(e) = connection.await {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            }
        },
    )
    .await
}
