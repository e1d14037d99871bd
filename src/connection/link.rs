//! [`Connection`]: the crate's one connection type, which reconnects by
//! itself, follows the master across Sentinel failovers, and routes by slot
//! on Redis Cluster.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionAddr, Pipeline, RedisFuture, RedisResult, Value};
use tokio::task::AbortHandle;

use super::endpoint::{Endpoint, CLUSTER_RETRIES};
use super::failover_sign::{command_sign, only_reads, pipeline_sign, resend, Sign};
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
