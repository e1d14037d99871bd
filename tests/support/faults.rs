//! HTTP/1.1 servers on free loopback ports that fail the grey way: slow,
//! hanging, failing, flaky (and a healthy one to compare with), for the
//! integration tests and `benches/gray_failures.rs`.
//!
//! ```ignore
//! let slow = FaultServer::start(Fault::Slow(Duration::from_millis(50))).await?;
//! // … send requests to slow.addr() …
//! assert!(slow.requests() > 0);
//! drop(slow); // stops it and every connection it has
//! ```
//!
//! Self-contained (tokio, hyper, hyper-util, http-body-util only, no
//! `super::`), so a bench includes it with
//! `#[path = "../tests/support/faults.rs"] mod faults;`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::http_server::serve_http1;

/// How a [`FaultServer`] answers each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 200 with a small body ([`BODY`]) at once.
    Healthy,
    /// Sleeps this long, then answers as [`Fault::Healthy`].
    Slow(Duration),
    /// Accepts connections and reads requests (each is counted) but never
    /// answers; the connection stays open until the client closes it or the
    /// server stops.
    Hanging,
    /// 503 to every request.
    Failing,
    /// 503 and 200 in turn, by the order requests arrive at the server
    /// (over all its connections): the 1st, 3rd, 5th… get 503, the 2nd,
    /// 4th… get 200.
    Flaky,
}

/// The body of a 200 answer.
pub const BODY: &[u8] = b"ok";

/// A server on a free loopback port, answering as its [`Fault`] says.
/// Dropping it stops it: the accept loop and every connection task are
/// aborted (use [`stop`](Self::stop) to wait until they are gone).
#[derive(Debug)]
pub struct FaultServer {
    addr: SocketAddr,
    // Shared with the connections, so `set_fault` changes the next answer.
    fault: Arc<Mutex<Fault>>,
    requests: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FaultServer {
    /// Starts a server on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start(fault: Fault) -> io::Result<FaultServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let fault = Arc::new(Mutex::new(fault));
        let (f, r) = (fault.clone(), requests.clone());
        let task = tokio::spawn(serve_http1(listener, stopped, move || {
            let (fault, requests) = (f.clone(), r.clone());
            hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
                let nth = requests.fetch_add(1, Ordering::Relaxed);
                answer(*fault.lock().unwrap(), nth)
            })
        }));
        Ok(FaultServer {
            addr,
            fault,
            requests,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How it answers.
    pub fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    /// Answers every request from now on as `fault` says (a health endpoint
    /// that turns unhealthy and back).
    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Requests it has read so far (answered or not).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Stops it and returns once the accept loop and every connection are
    /// gone (their sockets closed).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its `JoinSet`, which aborts every
        // connection task: nothing of the server outlives it.
        self.task.abort();
    }
}

/// The answer to the server's `nth` request (from 0).
async fn answer(fault: Fault, nth: u64) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let ok = || hyper::Response::new(Full::new(Bytes::from_static(BODY)));
    let unavailable = || {
        let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"unavailable")));
        *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        response
    };
    Ok(match fault {
        Fault::Healthy => ok(),
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            ok()
        }
        Fault::Hanging => std::future::pending().await,
        Fault::Failing => unavailable(),
        Fault::Flaky if nth.is_multiple_of(2) => unavailable(),
        Fault::Flaky => ok(),
    })
}
