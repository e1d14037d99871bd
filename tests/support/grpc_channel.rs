//! Calls through a `GrpcChannel` (feature `tonic`) to the servers of
//! [`super::grpc`]: the helpers of tests/tonic*.rs.

use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use redis_discovery::discover::GrpcChannel;
use redis_discovery::{Instance, RedisResolver};
use tonic::transport::Endpoint;
use tonic::{Request, Status};

use super::grpc::{RawCodec, METHOD};
use super::{eventually, RedisServer, DEADLINE};

pub const SERVICE: &str = "greeter";

pub fn endpoint(instance: &Instance) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{}", instance.addr()))
}

/// One call through `channel`; the name of the server that answered.
pub async fn call(channel: &GrpcChannel) -> Result<String, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let answer = tokio::time::timeout(DEADLINE, async move {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary::<Bytes, Bytes, _>(
            Request::new(Bytes::new()),
            PathAndQuery::from_static(METHOD),
            RawCodec,
        )
        .await
    })
    .await
    .map_err(|_| Status::deadline_exceeded("no answer within the test deadline"))??;
    Ok(String::from_utf8_lossy(&answer.into_inner()).into_owned())
}

/// Calls until `done` holds; every call must succeed.
pub async fn call_until(channel: &GrpcChannel, what: &str, done: impl Fn() -> bool) {
    eventually(what, || async {
        for _ in 0..10 {
            call(channel).await.expect("no call fails");
        }
        done().then_some(())
    })
    .await;
}

pub async fn resolver(server: &RedisServer) -> RedisResolver {
    RedisResolver::builder(server.url())
        .idle_expiry(Duration::from_secs(2))
        .connect()
        .await
        .expect("resolver connects")
}
