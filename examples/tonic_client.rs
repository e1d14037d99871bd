//! A tonic client whose `Channel` follows a service's instances in the
//! registry. To be self-contained it also starts two tiny gRPC servers on
//! loopback ports and registers them; a real server registers itself the
//! same way.
//!
//! ```sh
//! cargo run --example tonic_client --features tonic
//! ```
//!
//! Uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`). No
//! protoc: the one method, `/who.Who/Name`, sends and answers raw bytes
//! through tonic's generic client and server with a hand-written codec. A
//! client generated from a `.proto` takes the same `Channel`.

use std::convert::Infallible;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use redis_discovery::{Instance, RedisRegistry, RedisResolver};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

mod errors;

const SERVICE: &str = "example.who";
const METHOD: &str = "/who.Who/Name";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    errors::exit_code(run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let registry = RedisRegistry::connect(redis_url.as_str()).await?;
    let mut registrations = Vec::new();
    for name in ["one", "two"] {
        let addr = serve(name).await?;
        registrations.push(registry.register(SERVICE, Instance::new(addr)?).await?);
    }

    // The client side: the endpoint template is yours (scheme, TLS,
    // timeouts); the channel follows the registry until it is dropped.
    let resolver = RedisResolver::connect(redis_url.as_str()).await?;
    let channel = resolver
        .tonic_channel(SERVICE, |instance| {
            Endpoint::from_shared(format!("http://{}", instance.addr()))
                .map(|endpoint| endpoint.timeout(std::time::Duration::from_secs(5)))
        })
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    for _ in 0..6 {
        client.ready().await?;
        let answer: Response<Bytes> = client
            .unary(
                Request::new(Bytes::new()),
                PathAndQuery::from_static(METHOD),
                RawCodec,
            )
            .await?;
        println!("answered by {}", String::from_utf8_lossy(answer.get_ref()));
    }

    for registration in registrations {
        registration.deregister().await?;
    }
    Ok(())
}

/// Serves `/who.Who/Name`, answering `name`, on a free loopback port.
async fn serve(name: &'static str) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let service = tower::service_fn(
        move |request: http::Request<tonic::body::Body>| async move {
            let method = tower::service_fn(move |_: Request<Bytes>| async move {
                Ok::<_, Status>(Response::new(Bytes::from_static(name.as_bytes())))
            });
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok::<_, Infallible>(grpc.unary(method, request).await)
        },
    );
    tokio::spawn(Server::builder().serve_with_incoming(service, TcpIncoming::from(listener)));
    Ok(addr)
}

/// Messages are their bytes as they are: no protobuf, so no protoc.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
