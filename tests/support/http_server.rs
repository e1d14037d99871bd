//! HTTP test servers on loopback: the accept loop they all run, one that
//! answers with its own address, and a port that refuses every connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::{JoinHandle, JoinSet};

/// Serves HTTP/1 on `listener`, each connection in a task of its own with
/// the service `service_for` makes for it, until `stopped` fires (or its
/// sender is dropped); then every connection ends before this returns.
/// Finished connections are reaped, so a long run does not pile them up.
pub async fn serve_http1<F, S, B>(
    listener: tokio::net::TcpListener,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    mut service_for: F,
) where
    F: FnMut() -> S,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => {
                connections.shutdown().await;
                return;
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A transient accept error (e.g. out of descriptors): retry.
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service_for();
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An HTTP server on a free loopback port that answers every request with
/// `ADDR HOST URI`: its own address, the `Host` header and the request URI.
pub async fn spawn_server() -> (SocketAddr, TestServer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_http1(listener, stopped, move || {
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| async move {
            let host = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(format!(
                "{addr} {host} {}",
                req.uri()
            )))))
        })
    }));
    (
        addr,
        TestServer {
            stop: Some(stop),
            task,
        },
    )
}

/// A running test server.
pub struct TestServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Kills the server with all its connections, as a crash would, and
    /// returns once they are all gone (an abort alone takes effect later).
    pub async fn crash(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A loopback port that refuses every connection: bound, so no other test
/// takes it while this lives, but not listening.
pub struct RefusingPort {
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        RefusingPort {
            _socket: socket,
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A hyper-util client that notes the authority every attempt was sent to.
#[derive(Clone)]
pub struct Recording {
    client: Client<HttpConnector, String>,
    sent: Arc<Mutex<Vec<String>>>,
}

impl Recording {
    pub fn new() -> Self {
        Recording {
            client: Client::builder(TokioExecutor::new()).build_http(),
            sent: Arc::default(),
        }
    }

    /// The authorities of the attempts since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

impl tower::Service<http::Request<String>> for Recording {
    type Response = hyper::Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<http::Request<String>>::poll_ready(&mut self.client, cx)
    }

    fn call(&mut self, req: http::Request<String>) -> Self::Future {
        let authority = req.uri().authority().map(|a| a.to_string());
        self.sent
            .lock()
            .unwrap()
            .push(authority.unwrap_or_default());
        self.client.call(req)
    }
}
