//! A reqwest client that finds its server through the registry
//! (feature `reqwest`).
//!
//! ```sh
//! cargo run --example axum_server                               # one terminal
//! cargo run --example reqwest_client --features reqwest          # another
//! ```
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`).

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

    let resolver = RedisResolver::connect(redis_url).await?;
    let http = reqwest::Client::new();
    // reqwest::Client is a tower::Service<reqwest::Request>.
    let client = DiscoveryLayer::new(resolver).layer(http.clone());

    for _ in 0..5 {
        // `.discover()` flags the request (reqwest hides request extensions,
        // so it is a header that the layer removes before sending).
        let request = http.get(format!("http://{service}/")).discover().build()?;
        let response = client.clone().oneshot(request).await?;
        print!("{}", response.text().await?);
    }
    Ok(())
}
