//! The connector under each instance's tonic `Channel`: connects as
//! tonic's own does (hyper-util's `HttpConnector` with the endpoint's TCP
//! settings) and records when that connection is lost, which tonic itself
//! only reports to the next call.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tonic::transport::Endpoint;
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::BoxError;
use tower_service::Service;

/// Whether one connection of an instance's channel was lost: a connect
/// failed, the connection read its end or an error (the server closed it
/// or died), or hyper let it go (an HTTP/2 keep-alive ping unanswered, a
/// `GOAWAY`). Each channel has its own, so a late report from an old
/// connection never marks a newer one.
#[derive(Debug, Default)]
pub(crate) struct Health {
    lost: AtomicBool,
    /// A response came over the connection: the server behind it works.
    answered: AtomicBool,
}

impl Health {
    pub(crate) fn answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn mark_lost(&self) {
        self.lost.store(true, Ordering::Release);
    }
}

/// Connects to the endpoint's address and watches the connection.
#[derive(Clone, Debug)]
pub(crate) struct WatchingConnector {
    http: HttpConnector,
    health: Arc<Health>,
}

impl WatchingConnector {
    /// The TCP settings are the endpoint's, as tonic's own connector takes
    /// them (its local address has no getter, so it is not used).
    pub(crate) fn new(endpoint: &Endpoint, health: Arc<Health>) -> WatchingConnector {
        let mut http = HttpConnector::new();
        // `https` endpoints: TLS is added on top by tonic, as for its own.
        http.enforce_http(false);
        http.set_nodelay(endpoint.get_tcp_nodelay());
        http.set_keepalive(endpoint.get_tcp_keepalive());
        http.set_keepalive_interval(endpoint.get_tcp_keepalive_interval());
        http.set_keepalive_retries(endpoint.get_tcp_keepalive_retries());
        http.set_connect_timeout(endpoint.get_connect_timeout());
        WatchingConnector { http, health }
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<WatchedIo>, BoxError>> + Send>>;

impl Service<Uri> for WatchingConnector {
    type Response = TokioIo<WatchedIo>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let connecting = self.http.call(uri);
        let health = self.health.clone();
        Box::pin(async move {
            match connecting.await {
                Ok(io) => Ok(TokioIo::new(WatchedIo {
                    io: io.into_inner(),
                    health,
                })),
                Err(error) => {
                    health.mark_lost();
                    Err(error.into())
                }
            }
        })
    }
}

/// A connection that marks its [`Health`] lost when it reads its end,
/// fails, or is dropped.
#[derive(Debug)]
pub(crate) struct WatchedIo {
    io: TcpStream,
    health: Arc<Health>,
}

impl WatchedIo {
    fn watch<T>(&self, polled: &Poll<io::Result<T>>) {
        if let Poll::Ready(Err(_)) = polled {
            self.health.mark_lost();
        }
    }
}

impl Drop for WatchedIo {
    // hyper drops the connection when it is done with it for any reason;
    // a channel dropped by us no longer reads its health.
    fn drop(&mut self) {
        self.health.mark_lost();
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (room, before) = (buf.remaining() > 0, buf.filled().len());
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.watch(&polled);
        // Nothing read into room for it: the peer closed the connection.
        if matches!(polled, Poll::Ready(Ok(()))) && room && buf.filled().len() == before {
            this.health.mark_lost();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(&polled);
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Our own close: not a loss.
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
