//! `RedisResolver::tonic_channel` and `forward_changes` against real tonic
//! servers on loopback ports, registered in a real, private redis-server
//! (tests/support). No protoc: the servers answer one hand-written unary
//! method through tonic's generic server with a codec of raw bytes.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use redis_discovery::discover::forward_changes;
use redis_discovery::{Instance, RedisResolver};
use support::{eventually, init_tracing, registry, RedisServer, DEADLINE};
use tokio::sync::oneshot;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

const SERVICE: &str = "greeter";
const METHOD: &str = "/who.Who/Name";

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

/// A tonic server whose one method answers with the server's name and
/// counts its calls. Stops (gracefully) when dropped.
struct GrpcServer {
    name: &'static str,
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl GrpcServer {
    async fn start(name: &'static str) -> GrpcServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let service = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
            let counted = counted.clone();
            async move {
                let method = tower::service_fn(move |_: Request<Bytes>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Status>(Response::new(Bytes::from_static(name.as_bytes()))) }
                });
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                Ok::<_, Infallible>(grpc.unary(method, request).await)
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(Server::builder().serve_with_incoming_shutdown(
            service,
            TcpIncoming::from(listener),
            async move {
                let _ = stopped.await;
            },
        ));
        GrpcServer {
            name,
            addr,
            calls,
            _stop: stop,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn instance(&self) -> Instance {
        Instance::new(self.addr.to_string()).expect("valid address")
    }
}

fn endpoint(instance: &Instance) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{}", instance.addr()))
}

/// One call through `channel`; the name of the server that answered.
async fn call(channel: &Channel) -> Result<String, Status> {
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
async fn call_until(channel: &Channel, what: &str, done: impl Fn() -> bool) {
    eventually(what, || async {
        for _ in 0..10 {
            call(channel).await.expect("no call fails");
        }
        done().then_some(())
    })
    .await;
}

async fn resolver(server: &RedisServer) -> RedisResolver {
    RedisResolver::builder(server.url())
        .idle_expiry(Duration::from_secs(2))
        .connect()
        .await
        .expect("resolver connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_follows_the_registry() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let b = GrpcServer::start("b").await;
    let c = GrpcServer::start("c").await;
    let reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let _reg_b = registry.register(SERVICE, b.instance()).await.unwrap();

    let resolver = resolver(&redis).await;
    let channel = resolver.tonic_channel(SERVICE, endpoint).await.unwrap();

    // Calls spread over both servers.
    call_until(&channel, "calls reach both a and b", || {
        a.calls() > 0 && b.calls() > 0
    })
    .await;
    assert_eq!(c.calls(), 0, "c is not registered yet");

    // A third one registered gets calls.
    let registered = std::time::Instant::now();
    let _reg_c = registry.register(SERVICE, c.instance()).await.unwrap();
    call_until(&channel, "calls reach c once registered", || c.calls() > 0).await;
    // Measured, not asserted: a busy machine may take longer.
    eprintln!(
        "c got calls {:?} after its registration",
        registered.elapsed()
    );

    // `a` deregisters but keeps serving (a graceful exit): no call fails,
    // and once the channel has dropped it none reaches it.
    assert!(reg_a.deregister().await.unwrap());
    let mut seen = a.calls();
    let mut quiet = 0;
    eventually("a gets no more calls", || {
        let (now, quiet_before) = (a.calls(), quiet);
        quiet = if now == seen { quiet_before + 1 } else { 0 };
        seen = now;
        let channel = channel.clone();
        async move {
            for _ in 0..10 {
                call(&channel).await.expect("no call fails");
            }
            // Three rounds of ten calls in a row without `a`.
            (quiet_before >= 3).then_some(())
        }
    })
    .await;
    let before = (a.calls(), b.calls(), c.calls());
    for _ in 0..60 {
        let answer = call(&channel).await.expect("no call fails");
        assert_ne!(answer, a.name, "a call reached the deregistered server");
    }
    assert_eq!(a.calls(), before.0, "a was called after its removal");
    assert!(
        b.calls() > before.1 && c.calls() > before.2,
        "b and c share the calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_resolver_ends_the_task_and_the_channel_keeps_its_servers() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let _reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let resolver = resolver(&redis).await;

    let changes = resolver.changes(SERVICE).await.unwrap();
    let (channel, sender) = Channel::balance_channel(16);
    let forwarding = tokio::spawn(forward_changes(changes, endpoint, sender));
    assert_eq!(call(&channel).await.unwrap(), "a");

    drop(resolver);
    tokio::time::timeout(DEADLINE, forwarding)
        .await
        .expect("the forwarding task ends when the resolver is dropped")
        .expect("the forwarding task does not panic");
    // The last list stands: the channel still calls `a`.
    assert_eq!(call(&channel).await.unwrap(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_channel_ends_the_task() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let _reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let resolver = resolver(&redis).await;

    let changes = resolver.changes(SERVICE).await.unwrap();
    let (channel, sender) = Channel::balance_channel(16);
    let forwarding = tokio::spawn(forward_changes(changes, endpoint, sender));
    assert_eq!(call(&channel).await.unwrap(), "a");

    // Nothing changes in the registry: the task is waiting on the stream
    // when the channel goes, and must notice.
    drop(channel);
    tokio::time::timeout(DEADLINE, forwarding)
        .await
        .expect("the forwarding task ends when the channel is dropped")
        .expect("the forwarding task does not panic");
    drop(resolver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_fails_to_build_is_skipped() {
    init_tracing();
    let redis = RedisServer::start();
    let registry = registry(&redis).await;
    let a = GrpcServer::start("a").await;
    let b = GrpcServer::start("b").await;
    let _reg_a = registry.register(SERVICE, a.instance()).await.unwrap();
    let _reg_b = registry.register(SERVICE, b.instance()).await.unwrap();
    let resolver = resolver(&redis).await;

    let b_addr = b.addr.to_string();
    let channel = resolver
        .tonic_channel(SERVICE, move |instance: &Instance| {
            if instance.addr() == b_addr {
                Err("no endpoint for b")
            } else {
                endpoint(instance).map_err(|_| "bad uri")
            }
        })
        .await
        .unwrap();
    for _ in 0..30 {
        assert_eq!(call(&channel).await.unwrap(), "a");
    }
    assert_eq!(b.calls(), 0);
}
