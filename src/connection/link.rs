//! [`Connection`]: the crate's one connection type, which reconnects by
//! itself, follows the master across Sentinel failovers, and routes by slot
//! on Redis Cluster.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};
use tokio::task::AbortHandle;

use super::endpoint::{Endpoint, CLUSTER_RETRIES};
use super::{manager, timed, Timeouts};

/// How often an active Sentinel connection asks the Sentinels whether the
/// master moved, besides after every failover sign: a demoted master may
/// accept writes for a while (or, cut off from the Sentinels, for good).
const RECHECK: Duration = Duration::from_secs(5);

/// A multiplexed connection, cheap to clone (clones share it).
///
/// * One server: a [`ConnectionManager`].
/// * Redis Cluster: redis-rs's cluster connection, which routes each
///   command to the node of its key's slot and follows redirections and
///   topology changes.
/// * Sentinel: a `ConnectionManager` to the current master, shared by all
///   clones and replaced when the Sentinels name another master. They are
///   asked after a command fails the way a failover makes it fail, and every
///   [`RECHECK`] while commands flow. After a switch, the failed command is
///   sent once more to the new master if that cannot do harm: it certainly
///   did not run (the node refused it with `READONLY` or `MASTERDOWN`, or
///   refused the connection), or it only reads. A write that may have run
///   (a dropped connection, a timeout) is not resent, and fails as it would
///   on one server.
///
/// Each connection also remembers whether its server runs read-only
/// scripts ([`ReadOnlyScripts`]): per server, since one process may talk
/// to servers of different versions (behind Sentinel, per master).
#[derive(Clone)]
pub(crate) enum Connection {
    Node(ConnectionManager, Arc<ReadOnlyScripts>),
    /// The nodes of one cluster are taken to run one version.
    Cluster(ClusterConnection, Arc<ReadOnlyScripts>),
    Sentinel(Arc<Follower>),
}

/// Whether a server runs `EVALSHA_RO` and `EVAL_RO` (Redis 7 and later,
/// unless renamed away), as learned from its answers: assumed until it
/// refuses them while taking the plain commands.
#[derive(Debug, Default)]
pub(crate) struct ReadOnlyScripts {
    refused: AtomicBool,
}

impl ReadOnlyScripts {
    /// Whether to try the read-only commands.
    pub(crate) fn available(&self) -> bool {
        !self.refused.load(Ordering::Relaxed)
    }

    /// The server refused them: use the plain commands from now on.
    pub(crate) fn refused(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }
}

/// What the clones of a Sentinel connection share.
pub(crate) struct Follower {
    endpoint: Endpoint,
    timeouts: Timeouts,
    current: Mutex<Master>,
    /// Held while a lookup runs: one at a time.
    lookup: Arc<tokio::sync::Mutex<()>>,
    /// Lookups started so far; each is numbered by this count.
    started: AtomicU64,
    /// The number of the latest lookup that finished (a dropped one does not
    /// count). A caller whose command failed shares the answer of a lookup
    /// that started after the command was sent, instead of asking the
    /// Sentinels again; an older answer may predate the failover.
    answered: AtomicU64,
    /// The background lookup, aborted when the last clone goes.
    recheck: Mutex<Option<AbortHandle>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        let recheck = self.recheck.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = recheck.take() {
            task.abort();
        }
    }
}

/// What the Sentinels said.
enum Found {
    /// The same master, or none reachable: keep the current one.
    Nothing,
    /// Another master, already connected.
    Master(ConnectionAddr, ConnectionManager),
}

/// What a command was sent with.
struct Sent {
    generation: u64,
    /// Lookups started before it was sent.
    lookups: u64,
}

/// The master commands go to.
struct Master {
    /// Bumped on every switch.
    generation: u64,
    manager: ConnectionManager,
    addr: ConnectionAddr,
    /// When the Sentinels were last asked.
    asked: Instant,
    /// What this master runs (a new master may run another version).
    read_only_scripts: Arc<ReadOnlyScripts>,
}

/// What a failed command says about a failover.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sign {
    /// Nothing.
    None,
    /// The node is unreachable or was demoted, and the command did not run.
    NotRun,
    /// The connection broke or timed out: the command may have run.
    MaybeRan,
}

impl Connection {
    /// Connects to the endpoint's node (or cluster); fails if it does not
    /// answer now.
    pub(crate) async fn open(endpoint: &Endpoint, timeouts: Timeouts) -> RedisResult<Connection> {
        let limit = timeouts.connect + timeouts.command;
        if let Some(cluster) = endpoint.cluster(timeouts)? {
            let connect = cluster.get_async_connection();
            let connection = timed(limit, "timed out connecting to the Redis Cluster", connect);
            let scripts = Arc::default();
            return Ok(Connection::Cluster(connection.await?, scripts));
        }
        let client = endpoint.client(limit).await?;
        let addr = client.get_connection_info().addr().clone();
        let manager = manager(client, timeouts).await?;
        if !endpoint.follows_failovers() {
            return Ok(Connection::Node(manager, Arc::default()));
        }
        Ok(Connection::Sentinel(Arc::new(Follower {
            endpoint: endpoint.clone(),
            timeouts,
            current: Mutex::new(Master {
                generation: 0,
                manager,
                addr,
                asked: Instant::now(),
                read_only_scripts: Arc::default(),
            }),
            lookup: Arc::new(tokio::sync::Mutex::new(())),
            started: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            recheck: Mutex::new(None),
        })))
    }

    /// Whether this is a Redis Cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(..))
    }

    /// Whether the server (behind Sentinel: the current master) runs
    /// read-only scripts.
    pub(crate) fn read_only_scripts(&self) -> Arc<ReadOnlyScripts> {
        match self {
            Connection::Node(_, scripts) | Connection::Cluster(_, scripts) => scripts.clone(),
            Connection::Sentinel(follower) => follower.lock().read_only_scripts.clone(),
        }
    }
}

impl Timeouts {
    /// The longest one call on `connection` may take: a command, plus what
    /// that kind of connection may do on the way (a reconnect and its
    /// retries on a cluster; a Sentinel lookup, a connect to the new master
    /// and the resend behind Sentinel).
    pub(crate) fn call_limit(&self, connection: &Connection) -> Duration {
        let (connect, command) = (self.connect, self.command);
        match connection {
            Connection::Node(..) => command,
            Connection::Cluster(..) => connect + command * (CLUSTER_RETRIES + 1),
            Connection::Sentinel(_) => connect * 2 + command * 4,
        }
    }
}

impl Follower {
    fn lock(&self) -> MutexGuard<'_, Master> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The master to use now, and what a command sent to it is sent with.
    fn current(&self) -> (ConnectionManager, Sent) {
        let master = self.lock();
        let sent = Sent {
            generation: master.generation,
            lookups: self.started.load(Ordering::Acquire),
        };
        (master.manager.clone(), sent)
    }

    /// Sends with `send` to the current master; after a failover sign (as
    /// `sign` reads the result), follows a switch of master and sends once
    /// more if that cannot do harm (`reads`: the commands only read).
    async fn send<T, Fut>(
        self: &Arc<Self>,
        reads: bool,
        sign: fn(&RedisResult<T>) -> Sign,
        send: impl Fn(ConnectionManager) -> Fut,
    ) -> RedisResult<T>
    where
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        self.recheck_if_due();
        let (manager, sent) = self.current();
        let result = send(manager).await;
        let sign = sign(&result);
        if sign != Sign::None && self.switched(&sent).await && resend(sign, reads) {
            return send(self.current().0).await;
        }
        result
    }

    /// After a failover sign from a command sent with `sent`: whether
    /// another master is current now.
    async fn switched(&self, sent: &Sent) -> bool {
        let _one_at_a_time = self.lookup.lock().await;
        if self.lock().generation != sent.generation {
            return true; // another caller already switched
        }
        if self.answered.load(Ordering::Acquire) > sent.lookups {
            return false; // a lookup begun after the command answered: it stands
        }
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        self.lock().asked = Instant::now();
        let switched = self.apply(find(&self.endpoint, self.timeouts, self.addr()).await);
        // Recorded only once finished: a lookup dropped half-way (its caller
        // gave up) leaves the next caller to ask again.
        self.answered.fetch_max(number, Ordering::AcqRel);
        switched
    }

    fn addr(&self) -> ConnectionAddr {
        self.lock().addr.clone()
    }

    /// Switches to what the Sentinels named, if another master. The caller
    /// holds `lookup`.
    fn apply(&self, found: Found) -> bool {
        let Found::Master(addr, manager) = found else {
            return false;
        };
        let mut master = self.lock();
        tracing::warn!(from = %master.addr, to = %addr, "Redis master changed (Sentinel failover)");
        master.generation += 1;
        master.manager = manager;
        master.addr = addr;
        master.read_only_scripts = Arc::default();
        true
    }

    /// Starts a lookup in the background when the last one is older than
    /// [`RECHECK`] and none is running. The task holds no strong reference:
    /// it is aborted when the last clone of the connection goes, and ends
    /// within its timeouts otherwise.
    fn recheck_if_due(self: &Arc<Self>) {
        {
            let mut master = self.lock();
            if master.asked.elapsed() < RECHECK {
                return;
            }
            master.asked = Instant::now();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(running) = Arc::clone(&self.lookup).try_lock_owned() else {
            return; // a lookup is running: it answers this check too
        };
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let (endpoint, timeouts, old) = (self.endpoint.clone(), self.timeouts, self.addr());
        let follower = Arc::downgrade(self);
        let task = runtime.spawn(async move {
            let found = find(&endpoint, timeouts, old).await;
            if let Some(follower) = follower.upgrade() {
                follower.apply(found);
                follower.answered.fetch_max(number, Ordering::AcqRel);
            }
            drop(running);
        });
        let mut recheck = self.recheck.lock().unwrap_or_else(|e| e.into_inner());
        *recheck = Some(task.abort_handle());
    }
}

/// Asks the Sentinels for the master and, if it is not `old`, connects to it.
async fn find(endpoint: &Endpoint, timeouts: Timeouts, old: ConnectionAddr) -> Found {
    let client = match endpoint.client(timeouts.connect + timeouts.command).await {
        Ok(client) => client,
        Err(e) => {
            tracing::debug!(error = %e, "the Sentinels named no reachable master");
            return Found::Nothing;
        }
    };
    let addr = client.get_connection_info().addr().clone();
    if addr == old {
        return Found::Nothing; // same master: its manager reconnects by itself
    }
    match manager(client, timeouts).await {
        Ok(manager) => Found::Master(addr, manager),
        Err(e) => {
            tracing::debug!(error = %e, master = %addr, "the new master is not reachable yet");
            Found::Nothing
        }
    }
}

/// Commands this crate sends that only read, and whose answer does not
/// depend on the node they went to before (unlike `SCAN`'s cursor): they
/// may be sent again after a switch even if the first try may have run.
const READS: [&[u8]; 6] = [
    b"EVALSHA_RO",
    b"EVAL_RO",
    b"SMEMBERS",
    b"EXISTS",
    b"HGETALL",
    b"PTTL",
];

fn only_reads(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => READS.iter().any(|r| r.eq_ignore_ascii_case(name)),
        _ => false,
    }
}

/// Whether to send a failed command again after a switch of master.
fn resend(sign: Sign, reads: bool) -> bool {
    sign == Sign::NotRun || (sign == Sign::MaybeRan && reads)
}

/// What an error says about a failover.
fn error_sign(error: &RedisError) -> Sign {
    let kind = match error.kind() {
        ErrorKind::Server(kind) => Some(kind),
        _ => None,
    };
    if error.is_connection_refusal() || refused_by_failover(kind, error.detail()) {
        Sign::NotRun
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
        Sign::MaybeRan
    } else {
        Sign::None
    }
}

/// What a command's result says about a failover.
fn command_sign(result: &RedisResult<Value>) -> Sign {
    match result {
        Ok(value) => reply_sign(value),
        Err(e) => error_sign(e),
    }
}

/// What a pipeline's result says about a failover: any refused command.
fn pipeline_sign(result: &RedisResult<Vec<Value>>) -> Sign {
    match result {
        Ok(values) if values.iter().any(|v| reply_sign(v) == Sign::NotRun) => Sign::NotRun,
        Ok(_) => Sign::None,
        Err(e) => error_sign(e),
    }
}

/// A server's error reply is a value until the caller converts it.
fn reply_sign(value: &Value) -> Sign {
    match value {
        Value::ServerError(e) if refused_by_failover(e.kind(), e.details()) => Sign::NotRun,
        _ => Sign::None,
    }
}

/// Whether a server error (its kind and detail) says the node was demoted
/// or lost its master, so the command did not run.
fn refused_by_failover(kind: Option<ServerErrorKind>, detail: Option<&str>) -> bool {
    let kind = match kind {
        // Redis 6 reports the error a script's `redis.call` got inside a
        // generic one: `ERR Error running script (...): @user_script:1:
        // -READONLY You can't write...`. Read the inner code with the redis
        // crate's own parser.
        Some(ServerErrorKind::ResponseError) => detail.and_then(wrapped_error_kind),
        kind => kind,
    };
    matches!(
        kind,
        Some(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
    )
}

/// The kind of the error reply a Redis 6 script error wraps, if any.
fn wrapped_error_kind(detail: &str) -> Option<ServerErrorKind> {
    let (_, inner) = detail.rsplit_once(": -")?;
    let reply = format!("-{}\r\n", inner.trim_end());
    match redis::parse_redis_value(reply.as_bytes()) {
        Ok(Value::ServerError(e)) => e.kind(),
        _ => None,
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self {
                Connection::Node(manager, _) => manager.req_packed_command(cmd).await,
                Connection::Cluster(cluster, _) => cluster.req_packed_command(cmd).await,
                Connection::Sentinel(follower) => {
                    let send = |mut manager: ConnectionManager| async move {
                        manager.req_packed_command(cmd).await
                    };
                    follower.send(only_reads(cmd), command_sign, send).await
                }
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self {
                Connection::Node(manager, _) => {
                    manager.req_packed_commands(pipeline, offset, count).await
                }
                Connection::Cluster(cluster, _) => {
                    cluster.req_packed_commands(pipeline, offset, count).await
                }
                Connection::Sentinel(follower) => {
                    let send = |mut manager: ConnectionManager| async move {
                        manager.req_packed_commands(pipeline, offset, count).await
                    };
                    let reads = pipeline.cmd_iter().all(only_reads);
                    follower.send(reads, pipeline_sign, send).await
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(manager, _) => manager.get_db(),
            Connection::Cluster(cluster, _) => cluster.get_db(),
            Connection::Sentinel(follower) => follower.lock().manager.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_commands_are_resent() {
        let mut read = redis::cmd("EVALSHA_RO");
        read.arg("sha").arg(1).arg("key");
        let mut write = redis::cmd("EVALSHA");
        write.arg("sha").arg(1).arg("key");
        let mut scan = redis::cmd("SCAN");
        scan.arg(17);
        assert!(only_reads(&read) && only_reads(&redis::cmd("smembers")));
        assert!(!only_reads(&write) && !only_reads(&scan));
        // Not run: always resent; maybe run: only if it only reads.
        assert!(resend(Sign::NotRun, false));
        assert!(resend(Sign::MaybeRan, true));
        assert!(!resend(Sign::MaybeRan, false));
        assert!(!resend(Sign::None, true));
    }

    #[test]
    fn failover_signs() {
        let readonly = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert!(error_sign(&readonly) == Sign::NotRun);
        // Redis 6 wraps it in a script error.
        let wrapped = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "Error running script",
            "@user_script:1: -READONLY You can't write against a read only replica.".to_owned(),
        ));
        assert!(error_sign(&wrapped) == Sign::NotRun);
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(error_sign(&dropped) == Sign::MaybeRan);
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(error_sign(&refused) == Sign::NotRun);
        let other = RedisError::from((ErrorKind::Server(ServerErrorKind::NoScript), "NOSCRIPT"));
        assert!(error_sign(&other) == Sign::None);
        // Any other script error is just that.
        let script = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "Error running script",
            "@user_script:1: Script attempted to access a READONLY global".to_owned(),
        ));
        assert!(error_sign(&script) == Sign::None);
        assert_eq!(
            wrapped_error_kind(
                "(call to f_1): @user_script:1: @user_script: 1: -MASTERDOWN Link down "
            ),
            Some(ServerErrorKind::MasterDown)
        );
        assert_eq!(wrapped_error_kind("-READONLY"), None, "no wrapper");
    }
}
