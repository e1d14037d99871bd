//! HTTP test servers on loopback: one that answers with its own address,
//! and a port that refuses every connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::{JoinHandle, JoinSet};

/// An HTTP server on a free loopback port that answers every request with
/// `ADDR HOST URI`: its own address, the `Host` header and the request URI.
pub async fn spawn_server() -> (SocketAddr, TestServer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let stream = tokio::select! {
                _ = &mut stopped => {
                    // Every connection ends before `crash` returns.
                    connections.shutdown().await;
                    return;
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            connections.spawn(async move {
                let service =
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
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
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
