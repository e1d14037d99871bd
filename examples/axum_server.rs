//! An axum server that registers itself on start and deregisters on Ctrl-C
//! or SIGTERM.
//!
//! ```sh
//! cargo run --example axum_server                 # service "example.hello", a free port
//! cargo run --example axum_server -- orders 8080  # service "orders" on port 8080
//! ```
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`).

mod errors;

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::{routing::get, Router};
use redis_discovery::{Instance, RedisRegistry};

#[tokio::main]
async fn main() -> ExitCode {
    errors::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let service = args.next().unwrap_or_else(|| "example.hello".to_owned());
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/",
        get(move || async move { format!("hello from {addr}\n") }),
    );

    // Register only once the listener is bound, so clients never see an
    // address that refuses connections.
    let registry = RedisRegistry::connect(redis_url).await?;
    let registration = registry
        .register(service.as_str(), Instance::from_socket_addr(addr)?)
        .await?;
    eprintln!("serving {service} on http://{addr}/ (Ctrl-C to stop)");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;

    // Deregister before exiting, so clients stop picking this instance now
    // rather than when its lease runs out.
    registration.deregister().await?;
    eprintln!("deregistered {addr}");
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
