//! Test support shared by every integration test: private `redis-server`
//! processes on free loopback ports, and waiting for conditions.
//!
//! Never touches the Redis on 127.0.0.1:6379.
#![allow(dead_code)]

#[cfg(feature = "console")]
pub mod browser;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "console")]
pub mod console;
pub mod faults;
pub mod grpc;
#[cfg(feature = "tonic")]
pub mod grpc_channel;
pub mod http_server;
pub mod list_watch;
pub mod load;
pub mod outage;
#[cfg(feature = "cli")]
pub mod proxy;
pub mod recorder;
#[cfg(feature = "console")]
pub mod sse;

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any condition may take before a test fails. Generous: the
/// machine running the tests may be busy.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A private `redis-server` on a free loopback port, killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    role: Role,
    /// Extra `redis-server` arguments (configuration directives).
    args: Vec<String>,
}

/// What a [`RedisServer`] runs as.
#[derive(Clone)]
enum Role {
    Master,
    /// A replica of the server on this port.
    Replica(u16),
    /// A Sentinel monitoring the master on this port as [`SENTINEL_MASTER`].
    Sentinel(u16),
    /// A Redis Cluster node (its bus on port + 10000).
    ClusterNode,
}

/// The master name test Sentinels monitor.
pub const SENTINEL_MASTER: &str = "mymaster";

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        Self::start_as(Role::Master)
    }

    /// Starts a server with extra configuration, e.g.
    /// `["--rename-command", "EVALSHA_RO", ""]`.
    pub fn start_with(args: &[&str]) -> RedisServer {
        Self::start_as_with(Role::Master, args)
    }

    /// Starts a replica of `master` and waits until its replication link is
    /// up (so it holds the master's data).
    pub fn start_replica_of(master: &RedisServer) -> RedisServer {
        let replica = Self::start_as(Role::Replica(master.port));
        eventually_sync("the replica's link to its master", || {
            let info: String = replica.cmd(&["INFO", "replication"]);
            info.contains("master_link_status:up").then_some(())
        });
        replica
    }

    /// Starts a Sentinel that monitors `master` as [`SENTINEL_MASTER`]
    /// (quorum 1, down after 3 s) and waits until it has found
    /// `replicas` replicas.
    pub fn start_sentinel(master: &RedisServer, replicas: usize) -> RedisServer {
        let sentinel = Self::start_as(Role::Sentinel(master.port));
        eventually_sync("the Sentinel to find the replicas", || {
            let found: Vec<redis::Value> = sentinel.cmd(&["SENTINEL", "REPLICAS", SENTINEL_MASTER]);
            (found.len() >= replicas).then_some(())
        });
        sentinel
    }

    /// `redis+sentinel://127.0.0.1:PORT/mymaster`, for a Sentinel.
    pub fn sentinel_url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{SENTINEL_MASTER}", self.port)
    }

    /// The replication role this server reports: `master` or `slave`.
    pub fn role(&self) -> String {
        let role: Vec<redis::Value> = self.cmd(&["ROLE"]);
        match role.first() {
            Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            other => panic!("unexpected ROLE reply: {other:?}"),
        }
    }

    fn start_as(role: Role) -> RedisServer {
        Self::start_as_with(role, &[])
    }

    fn start_as_with(role: Role, args: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "redis-discovery-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..10 {
            let port = match role {
                Role::ClusterNode => free_port_with_bus(),
                _ => free_port(),
            };
            let mut server = RedisServer {
                port,
                dir: dir.clone(),
                child: None,
                role: role.clone(),
                args: args.iter().map(|a| a.to_string()).collect(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("could not start redis-server on a free port after 10 attempts");
    }

    fn spawn(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        if let Role::Sentinel(master) = self.role {
            // A Sentinel needs a config file it can rewrite.
            let config = self.dir.join(format!("sentinel-{}.conf", self.port));
            let text = format!(
                "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 3000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
            );
            if let Err(e) = std::fs::write(&config, text) {
                panic!("cannot write {}: {e}", config.display());
            }
            command.arg(&config).arg("--sentinel");
        }
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir);
        if !matches!(self.role, Role::Sentinel(_)) {
            command.args(["--save", "", "--appendonly", "no"]);
        }
        command.args(&self.args);
        match self.role {
            Role::Master | Role::Sentinel(_) => {}
            Role::Replica(master) => {
                command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
            }
            Role::ClusterNode => {
                let config = format!("nodes-{}.conf", self.port);
                command
                    .args(["--cluster-enabled", "yes", "--cluster-config-file", &config])
                    .args(["--cluster-node-timeout", "2000"])
                    // The other nodes' slots stay served when one node dies.
                    .args(["--cluster-require-full-coverage", "no"]);
            }
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH. Install it, e.g. `apt-get install redis-server` \
                 (Debian/Ubuntu) or `brew install redis` (macOS)."
            ),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false; // exited: port taken
                }
            }
            // Ours, not another server that took the port while this one
            // was stopped (a restart).
            if self.ping() && self.child.as_ref().is_some_and(|c| self.runs_as(c.id())) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// Whether the server answering on the port is the process `pid`.
    fn runs_as(&self, pid: u32) -> bool {
        let info = redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c));
        info.is_ok_and(|info| {
            info.lines()
                .any(|l| l.trim() == format!("process_id:{pid}"))
        })
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers
    /// nothing, as a hung or partitioned server would. Dropping it still
    /// kills it.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let Some(child) = self.child.as_ref() else {
            panic!("the server on port {} is not running", self.port)
        };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "kill {signal}: {status:?}"
        );
    }

    /// Stops the server (SIGKILL, as a crash would); `restart` brings it back
    /// empty on the same port.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart redis-server on port {}", self.port);
    }

    /// A plain (blocking) connection for raw commands in tests.
    ///
    /// Bounded by [`DEADLINE`], so a frozen or hung server fails the test
    /// instead of hanging it.
    pub fn conn(&self) -> redis::Connection {
        connect(&self.url())
    }

    /// Runs one raw command.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        match self.try_cmd(args) {
            Ok(v) => v,
            Err(e) => panic!("{args:?} failed: {e}"),
        }
    }

    /// Runs one raw command that may fail.
    pub fn try_cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut self.conn())
    }

    /// Client connections other than the one asking (`CLIENT LIST` lines).
    pub fn clients(&self) -> Vec<String> {
        let list: String = self.cmd(&["CLIENT", "LIST"]);
        list.lines()
            .filter(|l| !l.contains("cmd=client|list"))
            .map(str::to_owned)
            .collect()
    }

    /// `FLUSHALL` on this (private) server.
    pub fn flushall(&self) {
        self.cmd::<()>(&["FLUSHALL"]);
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.cmd(&["KEYS", "*"]);
        keys.sort();
        keys
    }

    /// Number of calls per command from `INFO commandstats`, e.g.
    /// `calls("evalsha")`.
    pub fn commandstats(&self) -> HashMap<String, u64> {
        let info: String = self.cmd(&["INFO", "commandstats"]);
        info.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }

    /// Calls of one command (lowercase name, e.g. `evalsha`).
    pub fn calls(&self, command: &str) -> u64 {
        self.commandstats().get(command).copied().unwrap_or(0)
    }

    /// Total number of write-ish commands: scripts and hash/zset writes.
    pub fn writes(&self) -> u64 {
        let stats = self.commandstats();
        [
            "evalsha", "eval", "hset", "hdel", "zadd", "zrem", "sadd", "expire", "publish",
        ]
        .iter()
        .map(|c| stats.get(*c).copied().unwrap_or(0))
        .sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port_with_bus() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
    panic!("cannot find a free port whose cluster bus port is free too");
}

/// A private Redis Cluster of masters on loopback, killed when dropped.
pub struct RedisCluster {
    /// The nodes: first the masters in slot order (master `i` serves the
    /// `i`-th share of slots), then any replicas.
    pub nodes: Vec<RedisServer>,
    masters: usize,
}

impl RedisCluster {
    /// Starts `n` nodes, splits the 16384 slots evenly between them, joins
    /// them and waits until every node reports the cluster ok.
    pub fn start(n: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| RedisServer::start_as(Role::ClusterNode))
            .collect();
        for (i, node) in nodes.iter().enumerate() {
            let slots: Vec<String> = Self::slots(i, n).map(|slot| slot.to_string()).collect();
            let mut args = vec!["CLUSTER", "ADDSLOTS"];
            args.extend(slots.iter().map(String::as_str));
            node.cmd::<()>(&args);
        }
        for node in &nodes[1..] {
            nodes[0].cmd::<()>(&["CLUSTER", "MEET", "127.0.0.1", &node.port.to_string()]);
        }
        let cluster = RedisCluster { nodes, masters: n };
        eventually_sync("the cluster to form", || {
            cluster
                .nodes
                .iter()
                .all(|node| {
                    // Every node ok, knowing every node and every slot's owner.
                    let info: String = node.cmd(&["CLUSTER", "INFO"]);
                    let slots: Vec<redis::Value> = node.cmd(&["CLUSTER", "SLOTS"]);
                    info.contains("cluster_state:ok")
                        && info.contains(&format!("cluster_known_nodes:{n}\r"))
                        && slots.len() == n
                })
                .then_some(())
        });
        cluster
    }

    /// Starts a replica of node `of` and waits until it replicates and
    /// every master knows it as a replica. Returns the replica's index in `nodes`.
    pub fn add_replica(&mut self, of: usize) -> usize {
        let replica = RedisServer::start_as(Role::ClusterNode);
        let master_id: String = self.nodes[of].cmd(&["CLUSTER", "MYID"]);
        self.nodes[0].cmd::<()>(&["CLUSTER", "MEET", "127.0.0.1", &replica.port.to_string()]);
        let known = self.nodes.len() + 1;
        eventually_sync("the replica to join the cluster", || {
            let info: String = replica.cmd(&["CLUSTER", "INFO"]);
            info.contains(&format!("cluster_known_nodes:{known}\r"))
                .then_some(())
        });
        // REPLICATE fails until the replica has learned the master's id.
        eventually_sync("the replica to take its master", || {
            replica
                .try_cmd::<()>(&["CLUSTER", "REPLICATE", &master_id])
                .ok()
        });
        eventually_sync("the replica's link to its master", || {
            let info: String = replica.cmd(&["INFO", "replication"]);
            info.contains("master_link_status:up").then_some(())
        });
        // The masters vote in a failover: they must know it as a replica.
        let replica_id: String = replica.cmd(&["CLUSTER", "MYID"]);
        eventually_sync("every master to know the replica", || {
            self.nodes[..self.masters]
                .iter()
                .all(|node| {
                    let nodes: String = node.cmd(&["CLUSTER", "NODES"]);
                    nodes
                        .lines()
                        .any(|line| line.starts_with(&replica_id) && line.contains("slave"))
                })
                .then_some(())
        });
        self.nodes.push(replica);
        self.nodes.len() - 1
    }

    /// The slots node `i` of `n` serves.
    fn slots(i: usize, n: usize) -> std::ops::Range<usize> {
        16384 * i / n..16384 * (i + 1) / n
    }

    /// `redis+cluster://` with every master as a seed, in order.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes[..self.masters]
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The index of the node that serves `key`.
    pub fn node_of(&self, key: &str) -> usize {
        let slot: usize = self.nodes[0].cmd(&["CLUSTER", "KEYSLOT", key]);
        let n = self.masters;
        (0..n)
            .find(|&i| Self::slots(i, n).contains(&slot))
            .unwrap_or(0)
    }
}

/// A plain connection to `url`, every call bounded by [`DEADLINE`].
pub fn connect(url: &str) -> redis::Connection {
    let connect = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(DEADLINE))
        .and_then(|c| {
            c.set_read_timeout(Some(DEADLINE))?;
            c.set_write_timeout(Some(DEADLINE))?;
            Ok(c)
        });
    match connect {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to test redis at {url}: {e}"),
    }
}

/// A free loopback port this process has not handed out before: a
/// server stopped for a while (then restarted on its port) must not see
/// another test's server take it meanwhile.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..100 {
        let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot find a free port: {e}"),
        };
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("cannot find a free port not handed out before");
}

/// The addresses of a service's cached snapshot, if the resolver has one.
pub fn cached_addrs(
    resolver: &redis_discovery::RedisResolver,
    service: &str,
) -> Option<Vec<String>> {
    let snapshot = redis_discovery::Resolve::cached(resolver, service)?;
    Some(
        snapshot
            .instances()
            .iter()
            .map(|i| i.addr().to_owned())
            .collect(),
    )
}

/// The lease deadline of `addr` in `service` on `server` (native schema,
/// prefix `sd`), if it has one and the server answers.
pub fn lease(server: &RedisServer, service: &str, addr: &str) -> Option<f64> {
    let key = format!("sd:{{{service}}}:leases");
    server.try_cmd(&["ZSCORE", &key, addr]).ok().flatten()
}

/// Waits until a heartbeat renews the lease of `addr` on `server` (after a
/// failover: proof that heartbeats reach the new master).
pub async fn lease_renewed(server: &RedisServer, service: &str, addr: &str) {
    let before = lease(server, service, addr).unwrap_or(0.0);
    eventually("a heartbeat to renew the lease", || async {
        lease(server, service, addr)
            .filter(|&now| now > before)
            .map(|_| ())
    })
    .await;
}

/// A registry on `server` whose leases show a crash within seconds: a
/// 3 s lease renewed every 500 ms.
pub async fn registry(server: &RedisServer) -> redis_discovery::RedisRegistry {
    redis_discovery::RedisRegistry::builder(server.url())
        .lease_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(500))
        .connect()
        .await
        .expect("registry connects")
}

/// Polls `check` until it returns `Some`, or panics after [`DEADLINE`] with
/// `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {DEADLINE:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Blocking variant of [`eventually`] for synchronous checks.
pub fn eventually_sync<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {DEADLINE:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Captures what a `tracing` subscriber writes, for tests that check logs.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// A subscriber writing plain text at `level` and above into this
    /// capture; with `spans`, also a line when a span is created.
    pub fn subscriber(
        &self,
        level: tracing::Level,
        spans: bool,
    ) -> impl tracing::Subscriber + Send + Sync {
        // With one dispatcher registered (a capture's), `tracing` takes a
        // call site first hit on another test's thread, which has none,
        // as disabled for the whole process (tokio-rs/tracing#3611), and
        // captures miss its lines. With two alive it asks every dispatcher.
        static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let writer = self.clone();
        let events = if spans {
            tracing_subscriber::fmt::format::FmtSpan::NEW
        } else {
            tracing_subscriber::fmt::format::FmtSpan::NONE
        };
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(level)
            .with_span_events(events)
            .finish()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
