//! For the proxy's tests: an HTTP/1.1 instance that answers by path and
//! records every request's head, a client that talks to the proxy the way
//! curl does (origin-form or absolute-form), and the proxy process itself.
//!
//! Paths of an [`Upstream`]:
//! - `/slow/MS`: answers its address after MS milliseconds;
//! - `/hang`: never answers;
//! - `/download/N`: N bytes, made as they are sent (64 KiB at a time);
//! - `/upload`: reads the body as it comes, answers how many bytes;
//! - `/hop`: its address, with hop-by-hop response headers the proxy must
//!   strip (`Connection: X-Secret`, `X-Secret`, `Keep-Alive`,
//!   `Proxy-Authenticate`, `Upgrade`) and `X-Kept: yes`;
//! - anything else: its address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use redis_discovery::{Instance, Registration};

use super::cli::{lines, spawn, wait_for_line, Running};
use super::http_server::serve_http1;
use super::{registry, RedisServer, DEADLINE};

/// A request as an [`Upstream`] saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: String,
    pub headers: HeaderMap,
}

type Answer = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// An instance on a free loopback port; dropping it stops it and every
/// connection it has (as a crash would).
pub struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    requests: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let (s, r) = (seen.clone(), requests.clone());
        let task = tokio::spawn(serve_http1(listener, stopped, move || {
            let (s, r) = (s.clone(), r.clone());
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let (s, r) = (s.clone(), r.clone());
                async move { Ok::<_, Infallible>(answer(addr, req, &s, &r).await) }
            })
        }));
        Upstream {
            addr,
            seen,
            requests,
            stop: Some(stop),
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests read so far (answered or not).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The requests seen since the last call.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Kills it with every connection, as a crash would, and returns once
    /// they are all closed.
    pub async fn crash(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    addr: SocketAddr,
    req: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    requests: &AtomicU64,
) -> Answer {
    seen.lock().unwrap().push(Seen {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let text = |s: String| Response::new(Full::new(Bytes::from(s)).boxed_unsync());
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        return text(addr.to_string());
    }
    if path == "/hang" {
        std::future::pending::<()>().await;
    }
    if let Some(n) = path.strip_prefix("/download/") {
        return Response::new(Generated(n.parse().unwrap()).boxed_unsync());
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut bytes = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => bytes += frame.data_ref().map_or(0, |d| d.len()),
                Err(e) => return text(format!("upload failed: {e}")),
            }
        }
        return text(bytes.to_string());
    }
    let mut response = text(addr.to_string());
    if path == "/hop" {
        let headers = response.headers_mut();
        for (name, value) in [
            ("connection", "X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic"),
            ("upgrade", "foo"),
            ("x-kept", "yes"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
    }
    response
}

/// A body of N bytes made 64 KiB at a time, as the reader takes them.
pub struct Generated(pub usize);

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let n = self.0.min(CHUNK.len());
        if n == 0 {
            return Poll::Ready(None);
        }
        self.0 -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0 as u64)
    }
}

/// Registers `addr` in `service` with `weight`.
pub async fn register(
    redis: &RedisServer,
    service: &str,
    addr: SocketAddr,
    weight: u32,
) -> Registration {
    registry(redis)
        .await
        .register(
            service,
            Instance::from_socket_addr(addr)
                .unwrap()
                .with_weight(weight),
        )
        .await
        .unwrap()
}

pub fn start_proxy(redis: &RedisServer, args: &[&str]) -> Proxy {
    tokio::task::block_in_place(|| Proxy::start(&redis.url(), args))
}

/// Waits until the proxy routes `service` to all `n` instances.
pub async fn wait_routed(proxy: SocketAddr, service: &str, n: usize) {
    let mut client = ProxyConnection::open(proxy).await;
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + DEADLINE;
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "{service} not routed to {n} instances"
        );
        let (status, body) = read(client.get("/", Some(service)).await.unwrap()).await;
        if status == 200 {
            seen.insert(body);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `redis-discovery proxy` process on a free port, once it listens.
pub struct Proxy {
    pub process: Running,
    pub addr: SocketAddr,
    pub out: std::sync::mpsc::Receiver<String>,
    /// Its stderr lines (the access log), read as they come so that the
    /// pipe never fills and blocks it.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Its stderr when nobody reads it ([`Proxy::start_stderr_unread`]):
    /// kept open, so the pipe fills.
    _unread: Option<std::process::ChildStderr>,
}

impl Proxy {
    /// Starts `proxy --listen 127.0.0.1:0 ARGS` against the Redis at `url`.
    /// Blocks (call it outside the runtime or in `block_in_place`).
    pub fn start(url: &str, args: &[&str]) -> Proxy {
        Proxy::start_with(url, args, true)
    }

    /// [`Proxy::start`], with a stderr pipe that nobody reads: once it
    /// is full, writing to it blocks.
    pub fn start_stderr_unread(url: &str, args: &[&str]) -> Proxy {
        Proxy::start_with(url, args, false)
    }

    fn start_with(url: &str, args: &[&str], read_stderr: bool) -> Proxy {
        use std::io::BufRead;
        let mut all = vec!["proxy", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut process = spawn(url, &all);
        let out = lines(&mut process);
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = process.stderr.take().expect("piped stderr");
        let mut unread = None;
        if read_stderr {
            let kept = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    kept.lock().unwrap().push(line);
                }
            });
        } else {
            unread = Some(stderr);
        }
        let line = wait_for_line(&out, "proxy listening on ");
        let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
        Proxy {
            process,
            addr,
            out,
            log,
            _unread: unread,
        }
    }

    /// The stderr lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

/// One client connection to the proxy, sending requests as written: an
/// absolute URI goes out in absolute-form (a forward proxy's request), a
/// path in origin-form (then set `Host`).
pub struct ProxyConnection {
    sender: hyper::client::conn::http1::SendRequest<UnsyncBoxBody<Bytes, Infallible>>,
}

impl ProxyConnection {
    pub async fn open(proxy: SocketAddr) -> ProxyConnection {
        let stream = TcpStream::connect(proxy).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        ProxyConnection { sender }
    }

    /// Sends a request with an empty body.
    pub async fn get(
        &mut self,
        uri: &str,
        host: Option<&str>,
    ) -> hyper::Result<Response<Incoming>> {
        let mut builder = Request::get(uri);
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        }
        self.send(
            builder
                .body(Full::new(Bytes::new()).boxed_unsync())
                .unwrap(),
        )
        .await
    }

    pub async fn send(
        &mut self,
        req: Request<UnsyncBoxBody<Bytes, Infallible>>,
    ) -> hyper::Result<Response<Incoming>> {
        self.sender.ready().await?;
        self.sender.send_request(req).await
    }
}

/// The status and the whole body (tests' bodies are small).
pub async fn read(response: Response<Incoming>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Sends raw bytes (a request ending with `Connection: close`) and reads
/// the answer to its end.
pub async fn raw(proxy: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
