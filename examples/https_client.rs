//! A hyper client that calls a service's instances over HTTPS (and
//! optionally mTLS), checking each instance's certificate against the
//! service's name rather than its address.
//!
//! ```sh
//! TLS_CA=ca.pem TLS_SERVER_NAME='{service}.internal' \
//!     cargo run --example https_client --features rustls -- orders
//! # mTLS: also TLS_CLIENT_CERT=client.pem TLS_CLIENT_KEY=client.key
//! ```
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`).
//! Without `TLS_CA`, Mozilla's roots are trusted.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_discovery::https::ServiceTls;
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
    let var = |name: &str| std::env::var(name).ok();

    // The name each instance's certificate must hold, from the service's.
    let mut tls = ServiceTls::builder()
        .server_name(var("TLS_SERVER_NAME").unwrap_or_else(|| "{service}".to_owned()));
    if let Some(path) = var("TLS_CA") {
        tls = tls.root_certificates_pem(&std::fs::read(path)?)?;
    }
    if let (Some(cert), Some(key)) = (var("TLS_CLIENT_CERT"), var("TLS_CLIENT_KEY")) {
        tls = tls.client_certificate_pem(&std::fs::read(cert)?, &std::fs::read(key)?)?;
    }
    let tls = tls.build()?;

    let resolver = RedisResolver::connect(redis_url).await?;
    let client = DiscoveryLayer::builder(resolver)
        .service_tls(true)
        .build()
        .layer(Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(tls.connector()));

    for _ in 0..5 {
        // `https://SERVICE/…`: the layer picks an instance, the connector
        // checks its certificate against the service's name.
        let request = http::Request::get(format!("https://{service}/"))
            .discover()
            .body(Empty::new())?;
        let response = client.clone().oneshot(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        print!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}
