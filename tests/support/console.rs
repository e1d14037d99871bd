//! For the console's tests: the `redis-discovery console` process on a
//! free loopback port, and plain HTTP calls to it (any header, any
//! method; its stream is read by [`super::sse`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use http::{HeaderMap, Method, Request};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;

use super::cli::{Running, BIN};
use super::sse::Stream;
use super::{RedisServer, DEADLINE};

/// A token long enough for the console (8 characters at least).
pub const TOKEN: &str = "s3cret-console-token-4417";

/// What an address needs encoded to be one path segment (`:` included,
/// as the contract's `[::1]:80` -> `%5B%3A%3A1%5D%3A80`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'/')
    .add(b':')
    .add(b'[')
    .add(b']')
    .add(b'%')
    .add(b'?')
    .add(b'#');

/// `addr` percent-encoded for an action's path.
pub fn encode(addr: &str) -> String {
    utf8_percent_encode(addr, SEGMENT).to_string()
}

/// `/api/services/{service}/instances/{addr}/{action}`.
pub fn action_path(service: &str, addr: &str, action: &str) -> String {
    format!(
        "/api/services/{}/instances/{}/{action}",
        encode(service),
        encode(addr)
    )
}

/// The `redis-discovery console` process, once it said where it listens;
/// killed when dropped.
pub struct Console {
    pub process: Running,
    pub addr: SocketAddr,
    /// `http://ADDR` (no trailing slash).
    pub base: String,
    /// Every stdout and stderr line so far, read as they come so that no
    /// pipe fills and blocks it.
    output: Arc<Mutex<Vec<String>>>,
    client: Client<HttpConnector, UnsyncBoxBody<Bytes, Infallible>>,
}

/// An answer: status, headers and the whole body (the tests' are small).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.body) {
            Ok(v) => v,
            Err(e) => panic!("not JSON ({e}): {:?}", self.body),
        }
    }

    /// The `error` field of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

impl Console {
    /// Starts `console --listen 127.0.0.1:0 ARGS` against `redis` and waits
    /// for `console listening on http://ADDR/`. Blocks (call it in
    /// `block_in_place` on a multi-thread runtime).
    pub fn start(redis: &RedisServer, args: &[&str]) -> Console {
        Console::start_with_env(redis, args, &[])
    }

    /// [`Console::start`] with extra environment variables.
    pub fn start_with_env(redis: &RedisServer, args: &[&str], env: &[(&str, &str)]) -> Console {
        Console::launch(&redis.url(), "127.0.0.1:0", args, env)
    }

    /// `console --listen LISTEN ARGS` against the Redis at `url`, with
    /// extra environment variables; blocks like [`Console::start`].
    pub fn launch(url: &str, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Console {
        let mut all = vec!["console", "--listen", listen];
        all.extend_from_slice(args);
        let (process, output, lines) = spawn_console(url, &all, env);
        let deadline = Instant::now() + DEADLINE;
        let prefix = "console listening on http://";
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        break rest.trim_end_matches('/').parse::<SocketAddr>();
                    }
                }
                Err(_) => panic!(
                    "no line {prefix:?} within {DEADLINE:?}; output: {:?}",
                    output.lock().unwrap()
                ),
            }
        };
        let addr = addr.unwrap_or_else(|e| panic!("bad address after {prefix:?}: {e}"));
        Console {
            process,
            addr,
            base: format!("http://{addr}"),
            output,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// Every stdout and stderr line so far, joined.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[], "").await
    }

    /// GET `path`, expecting 200 and JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let reply = self.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
        reply.json()
    }

    /// POST `path` with `body`, with `Authorization: Bearer TOKEN` if a
    /// token is given.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("authorization", b)])
            .unwrap_or_default();
        self.request(Method::POST, path, &headers, body).await
    }

    /// Any request: `headers` as given (a `host` among them replaces the
    /// one the client would send). Panics if it gets no answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        match self.try_request(method.clone(), path, headers, body).await {
            Ok(reply) => reply,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    /// [`Console::request`], with the error if there was no answer (the
    /// connection closed while the request was being sent, say); panics
    /// only after [`DEADLINE`].
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.to_owned())).boxed_unsync())
            .expect("a valid request");
        let call = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Reply {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match tokio::time::timeout(DEADLINE, call).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => panic!("{method} {path}: no answer within {DEADLINE:?}"),
        }
    }

    /// Opens `GET /api/stream`, expecting 200.
    pub async fn stream(&self) -> Stream {
        match self.try_stream().await {
            Ok(stream) => stream,
            Err(status) => panic!("GET /api/stream: {status}"),
        }
    }

    /// Opens `GET /api/stream`: the stream, or the status if not 200.
    pub async fn try_stream(&self) -> Result<Stream, u16> {
        let request = Request::get(self.url("/api/stream"))
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()).boxed_unsync())
            .expect("a valid request");
        let response = tokio::time::timeout(DEADLINE, self.client.request(request))
            .await
            .expect("the stream answers within the deadline")
            .expect("the stream answers");
        if response.status() != 200 {
            return Err(response.status().as_u16());
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content-type {content_type:?}"
        );
        Ok(Stream::new(response.into_body()))
    }

    /// The overrides HASH of `service` (prefix `sd`), field -> value.
    pub fn overrides(redis: &RedisServer, service: &str) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> =
            redis.cmd(&["HGETALL", &format!("sd:{{{service}}}:overrides")]);
        all.sort();
        all
    }

    /// The instances HASH fields of `service` (prefix `sd`), sorted.
    pub fn entries(redis: &RedisServer, service: &str) -> Vec<String> {
        let mut all: Vec<String> = redis.cmd(&["HKEYS", &format!("sd:{{{service}}}:instances")]);
        all.sort();
        all
    }
}

/// Spawns the binary with `args` and `env`; its stdout and stderr lines
/// go to the shared list, stdout's also to the channel.
fn spawn_console(
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Running, Arc<Mutex<Vec<String>>>, mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut command = Command::new(BIN);
    command
        .args(["--redis", url])
        .args(args)
        .env_remove("REDIS_DISCOVERY_CONSOLE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn the console");
    let output = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let kept = output.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            kept.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    let kept = output.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            kept.lock().unwrap().push(line);
        }
    });
    (Running::from(child), output, rx)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// [`Console::start`] from a test on a multi-thread runtime.
pub fn start_console(redis: &RedisServer, args: &[&str]) -> Console {
    tokio::task::block_in_place(|| Console::start(redis, args))
}

/// Registers `addr` (an address nothing listens on: the console never
/// calls instances) in `service` with `weight` and `tags`, through the
/// library's registry (3 s leases, heartbeats every 500 ms).
pub async fn register(
    registry: &redis_discovery::RedisRegistry,
    service: &str,
    addr: &str,
    weight: u32,
    tags: &[(&str, &str)],
) -> redis_discovery::Registration {
    let instance = redis_discovery::Instance::new(addr)
        .and_then(|i| i.with_tags(tags.iter().copied()))
        .unwrap_or_else(|e| panic!("instance {addr}: {e}"))
        .with_weight(weight);
    registry
        .register(service, instance)
        .await
        .unwrap_or_else(|e| panic!("register {addr} in {service}: {e}"))
}
