//! A tonic client whose `GrpcChannel` follows a service's instances in the
//! registry. Start one or more examples/tonic_server.rs first:
//!
//! ```sh
//! cargo run --example tonic_server --features tonic &   # twice, for two instances
//! cargo run --example tonic_client --features tonic     # 20 calls, one every 500 ms
//! cargo run --example tonic_client --features tonic -- example.who 100
//! ```
//!
//! Stop a server with Ctrl-C (it deregisters) or `kill -9` (it does not):
//! either way the calls keep going to the others. Uses the Redis at
//! `REDIS_URL` (default `redis://127.0.0.1:6379`). No protoc: the one
//! method, `/who.Who/Name`, sends and answers raw bytes through tonic's
//! generic client (examples/raw_codec). A client generated from a
//! `.proto` takes the same channel: `GreeterClient::new(channel)`.

mod errors;
mod raw_codec;

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use raw_codec::{RawCodec, METHOD, SERVICE};
use redis_discovery::RedisResolver;
use tonic::transport::Endpoint;
use tonic::{Request, Response};

#[tokio::main]
async fn main() -> ExitCode {
    errors::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let service = args.next().unwrap_or_else(|| SERVICE.to_owned());
    let calls: u32 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(20);
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    // The endpoint template is yours (scheme, TLS, timeouts); the channel
    // follows the registry until it is dropped.
    let resolver = RedisResolver::connect(redis_url.as_str()).await?;
    let channel = resolver
        .tonic_channel(service.as_str(), |instance| {
            Endpoint::from_shared(format!("http://{}", instance.addr()))
                .map(|endpoint| endpoint.timeout(Duration::from_secs(5)))
        })
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    for _ in 0..calls {
        client.ready().await?;
        let answer: Result<Response<Bytes>, _> = client
            .unary(
                Request::new(Bytes::new()),
                PathAndQuery::from_static(METHOD),
                RawCodec,
            )
            .await;
        match answer {
            Ok(answer) => println!("answered by {}", String::from_utf8_lossy(answer.get_ref())),
            // With no server registered and up, calls fail `Unavailable`.
            Err(status) => println!("failed: {status}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
