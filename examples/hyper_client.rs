//! A hyper client that finds its server through the registry.
//!
//! ```sh
//! cargo run --example axum_server            # in one terminal (or several)
//! cargo run --example hyper_client           # in another
//! ```
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`).

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{DiscoverExt, DiscoveryLayer};
use redis_discovery::RedisResolver;
use tower::{Layer, ServiceExt};

mod errors;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    errors::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let service = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "example.hello".to_owned());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    // The resolver caches each service's instances and keeps them fresh
    // (pub/sub pushes, periodic refresh); the layer picks one per request.
    let resolver = RedisResolver::connect(redis_url).await?;
    let client = DiscoveryLayer::new(resolver)
        .layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    for _ in 0..5 {
        // The URI host is the service name; `.discover()` flags the request.
        let request = http::Request::get(format!("http://{service}/"))
            .discover()
            .body(Empty::new())?;
        let response = client.clone().oneshot(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        print!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}
