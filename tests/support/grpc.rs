//! Real tonic servers on loopback ports, without protoc: one hand-written
//! unary method through tonic's generic server, with a codec of raw bytes.
//! Each runs on its own runtime (its own thread), so that killing it
//! closes its listener and every connection at once, as a process dying.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use redis_discovery::Instance;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tonic::transport::Server;
use tonic::{Request, Response, Status};

// The examples' codec and method: the tests call what a user copies.
#[path = "../../examples/raw_codec/mod.rs"]
mod raw_codec;
// Not every test binary that includes the support calls the method.
#[allow(unused_imports)]
pub use raw_codec::{RawCodec, METHOD};

/// A tonic server whose one method answers with the server's name; counts
/// its calls and its open connections. Stops gracefully when dropped;
/// [`kill`](Self::kill) stops it abruptly.
pub struct GrpcServer {
    pub name: &'static str,
    pub addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    kill: Option<oneshot::Sender<()>>,
    dead: Option<oneshot::Receiver<()>>,
    _stop: oneshot::Sender<()>,
}

impl GrpcServer {
    pub async fn start(name: &'static str) -> GrpcServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let (kill, killed) = oneshot::channel::<()>();
        let (dead_tx, dead) = oneshot::channel::<()>();
        let (counted, open) = (calls.clone(), connections.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = TcpIncoming::from(listener)
                    .map(move |accepted| accepted.map(|stream| Counted::new(stream, &open)));
                let service =
                    tower::service_fn(move |request: http::Request<tonic::body::Body>| {
                        let counted = counted.clone();
                        async move {
                            let method = tower::service_fn(move |_: Request<Bytes>| {
                                counted.fetch_add(1, Ordering::SeqCst);
                                async move {
                                    Ok::<_, Status>(Response::new(Bytes::from_static(
                                        name.as_bytes(),
                                    )))
                                }
                            });
                            let mut grpc = tonic::server::Grpc::new(RawCodec);
                            Ok::<_, Infallible>(grpc.unary(method, request).await)
                        }
                    });
                let serve =
                    Server::builder().serve_with_incoming_shutdown(service, incoming, async move {
                        let _ = stopped.await;
                    });
                tokio::select! {
                    _ = serve => {}
                    Ok(()) = killed => {}
                }
            });
            // Dropping the runtime drops every connection task: their
            // sockets close as when the process dies.
            drop(runtime);
            let _ = dead_tx.send(());
        });
        GrpcServer {
            name,
            addr,
            calls,
            connections,
            kill: Some(kill),
            dead: Some(dead),
            _stop: stop,
        }
    }

    /// Stops the server at once, without a goodbye: its listener and
    /// connections close. Returns when they are closed.
    pub async fn kill(&mut self) {
        if let (Some(kill), Some(dead)) = (self.kill.take(), self.dead.take()) {
            let _ = kill.send(());
            let _ = dead.await;
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Connections accepted and not yet closed.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn instance(&self) -> Instance {
        Instance::new(self.addr.to_string()).expect("valid address")
    }
}

/// An accepted connection, counted while open.
struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Counted {
    fn new(stream: TcpStream, open: &Arc<AtomicUsize>) -> Counted {
        open.fetch_add(1, Ordering::SeqCst);
        Counted {
            stream,
            open: open.clone(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A port that accepts connections and closes each at once (a server
/// crash-looping behind its listener, a proxy without a backend): a
/// connect succeeds, the connection ends right after. Counts the accepts.
/// Stops when dropped.
pub struct ClosingPort {
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ClosingPort {
    pub async fn start() -> ClosingPort {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counted = accepts.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        ClosingPort {
            addr,
            accepts,
            task,
        }
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn instance(&self) -> Instance {
        Instance::new(self.addr.to_string()).expect("valid address")
    }
}

impl Drop for ClosingPort {
    fn drop(&mut self) {
        self.task.abort();
    }
}
