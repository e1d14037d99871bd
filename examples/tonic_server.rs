//! A tonic server that registers itself on start; on Ctrl-C or SIGTERM
//! it deregisters, then drains its calls and stops.
//! examples/tonic_client.rs calls it through the registry.
//!
//! ```sh
//! cargo run --example tonic_server --features tonic                    # "example.who", a free port
//! cargo run --example tonic_server --features tonic -- example.who 50051
//! ```
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`). No
//! protoc: its one method, `/who.Who/Name`, answers its address as raw
//! bytes through tonic's generic server (examples/raw_codec).

mod errors;
mod raw_codec;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use raw_codec::{RawCodec, METHOD, SERVICE};
use redis_discovery::{Instance, RedisRegistry};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

#[tokio::main]
async fn main() -> ExitCode {
    errors::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let service = args.next().unwrap_or_else(|| SERVICE.to_owned());
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    let answer = Bytes::from(addr.to_string());
    // The one method, without generated code.
    let routes = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let answer = answer.clone();
        async move {
            if request.uri().path() != METHOD {
                return Ok(Status::unimplemented(request.uri().path().to_owned()).into_http());
            }
            let method = tower::service_fn(move |_: Request<Bytes>| {
                let answer = answer.clone();
                async move { Ok::<_, Status>(Response::new(answer)) }
            });
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok::<_, Infallible>(grpc.unary(method, request).await)
        }
    });

    // Register only once the listener is bound, so clients never see an
    // address that refuses connections.
    let registry = RedisRegistry::connect(redis_url).await?;
    let registration = registry
        .register(service.as_str(), Instance::from_socket_addr(addr)?)
        .await?;
    eprintln!("serving {service} on {addr} (Ctrl-C to stop)");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();

    let mut server = tokio::spawn(Server::builder().serve_with_incoming_shutdown(
        routes,
        TcpIncoming::from(listener),
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::select! {
        served = &mut server => return Ok(served??),
        () = shutdown_signal() => {}
    }

    // Deregister first, while still serving: clients stop sending new
    // calls here (once they see the change), and the calls already sent
    // are still answered. Then drain: stop accepting, finish the calls in
    // flight, close.
    let deregistered = registration.deregister().await;
    let _ = stop.send(());
    server.await??;
    deregistered?;
    eprintln!("deregistered {addr}, then stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM (what process managers send).
async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}
