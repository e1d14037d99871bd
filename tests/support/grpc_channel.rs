//! Calls through a `GrpcChannel` (feature `tonic`) to the servers of
//! [`super::grpc`]: the helpers of tests/tonic*.rs.

use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use redis_discovery::discover::GrpcChannel;
use redis_discovery::{Instance, RedisRegistry, RedisResolver, Registration};
use tonic::transport::Endpoint;
use tonic::{Request, Status};

use super::grpc::{GrpcServer, RawCodec, METHOD};
use super::{eventually, init_tracing, registry, RedisServer, DEADLINE};

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

/// Servers `a` and `b` registered as [`SERVICE`] in a private Redis, and a
/// channel that has called both: where most tonic tests start. Fields are
/// kept alive as long as the value (the registrations keep the leases).
pub struct TwoServers {
    pub redis: RedisServer,
    pub registry: RedisRegistry,
    pub a: GrpcServer,
    pub b: GrpcServer,
    pub reg_a: Registration,
    pub reg_b: Registration,
    pub resolver: RedisResolver,
    pub channel: GrpcChannel,
}

pub async fn two_servers() -> TwoServers {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let b = GrpcServer::start("b").await;
    let reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let reg_b = registry.register(SERVICE, b.instance()).await.unwrap();
    let resolver = resolver(&redis).await;
    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();
    call_until(&channel, "calls reach both a and b", || {
        a.calls() > 0 && b.calls() > 0
    })
    .await;
    TwoServers {
        redis,
        registry,
        a,
        b,
        reg_a,
        reg_b,
        resolver,
        channel,
    }
}
