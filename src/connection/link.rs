//! [`Connection`]: the crate's one connection type, which reconnects by
//! itself, follows the master across Sentinel failovers, and routes by slot
//! on Redis Cluster.

use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

use super::endpoint::{address, Endpoint};
use super::{manager, Timeouts};

/// A multiplexed connection, cheap to clone (clones share it).
///
/// To one server it is a [`ConnectionManager`]. Behind Sentinel it is a
/// `ConnectionManager` to the current master, replaced when a command fails
/// in a way a failover causes (the node is gone, or answers `READONLY`
/// because it was demoted) and the Sentinels name another master; the
/// command is then sent once more to the new master. Every command the
/// crate sends is idempotent, so that second try is safe. On Redis Cluster
/// it is redis-rs's cluster connection, which routes each command to the
/// node of its key's slot and follows redirections and topology changes.
#[derive(Clone)]
pub(crate) struct Connection {
    link: Link,
    /// Which master `link` is for; behind Sentinel only.
    generation: u64,
    follower: Option<Arc<Follower>>,
}

#[derive(Clone)]
enum Link {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

/// What the clones of a Sentinel connection share.
struct Follower {
    endpoint: Endpoint,
    timeouts: Timeouts,
    current: Mutex<Master>,
    /// One lookup at a time, counted: callers that failed together wait for
    /// one lookup and share its answer, instead of asking the Sentinels one
    /// after another.
    lookups: tokio::sync::Mutex<u64>,
}

#[derive(Clone)]
struct Master {
    generation: u64,
    manager: ConnectionManager,
    client: redis::Client,
}

impl Connection {
    /// Connects to the endpoint's node (or cluster); fails if it does not
    /// answer now.
    pub(crate) async fn open(endpoint: &Endpoint, timeouts: Timeouts) -> RedisResult<Connection> {
        if let Some(cluster) = endpoint.cluster(timeouts)? {
            let connect = cluster.get_async_connection();
            let connection =
                match tokio::time::timeout(timeouts.connect + timeouts.command, connect).await {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(RedisError::from((
                            ErrorKind::Io,
                            "timed out connecting to the Redis Cluster",
                        )))
                    }
                };
            return Ok(Connection {
                link: Link::Cluster(connection),
                generation: 0,
                follower: None,
            });
        }
        let client = endpoint.client(timeouts.connect + timeouts.command).await?;
        let manager = manager(client.clone(), timeouts).await?;
        let follower = endpoint.follows_failovers().then(|| {
            Arc::new(Follower {
                endpoint: endpoint.clone(),
                timeouts,
                current: Mutex::new(Master {
                    generation: 0,
                    manager: manager.clone(),
                    client,
                }),
                lookups: tokio::sync::Mutex::new(0),
            })
        });
        Ok(Connection {
            link: Link::Node(manager),
            generation: 0,
            follower,
        })
    }

    /// Whether this is a Redis Cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// Takes up the master another clone switched to, if any.
    fn catch_up(&mut self, follower: &Follower) {
        let current = follower.lock();
        if current.generation != self.generation {
            self.generation = current.generation;
            self.link = Link::Node(current.manager.clone());
        }
    }

    /// After a failover sign: whether this connection now points at another
    /// master than the one that failed (so the command is worth one more try).
    async fn switched(&mut self) -> bool {
        let Some(follower) = self.follower.clone() else {
            return false;
        };
        let failed = self.generation;
        let seen = follower.lookups.try_lock().map(|n| *n).ok();
        let mut lookups = follower.lookups.lock().await;
        self.catch_up(&follower);
        if self.generation != failed {
            return true; // another caller already switched
        }
        if seen.is_none_or(|seen| seen != *lookups) {
            return false; // a lookup ran while this caller waited: its answer stands
        }
        *lookups += 1;
        let timeouts = follower.timeouts;
        let client = match follower
            .endpoint
            .client(timeouts.connect + timeouts.command)
            .await
        {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(error = %e, "Sentinels named no master yet");
                return false;
            }
        };
        let old = follower.lock().client.clone();
        if address(&client) == address(&old) {
            return false; // same master: the manager reconnects by itself
        }
        let manager = match manager(client.clone(), timeouts).await {
            Ok(manager) => manager,
            Err(e) => {
                tracing::debug!(error = %e, master = %address(&client), "new master not reachable yet");
                return false;
            }
        };
        tracing::warn!(from = %address(&old), to = %address(&client), "Redis master changed (Sentinel failover)");
        {
            let mut current = follower.lock();
            current.generation += 1;
            current.manager = manager;
            current.client = client;
        }
        self.catch_up(&follower);
        true
    }
}

impl Follower {
    fn lock(&self) -> std::sync::MutexGuard<'_, Master> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Errors a failover causes: the node is unreachable or went away, or it
/// was demoted and refuses writes.
fn is_failover_error(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

/// A server's error reply is a value until the caller converts it.
fn is_failover_reply(value: &Value) -> bool {
    matches!(value, Value::ServerError(e)
        if matches!(e.kind(), Some(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)))
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if let Some(follower) = self.follower.clone() {
                self.catch_up(&follower);
            }
            let result = self.link.req_packed_command(cmd).await;
            let sign = match &result {
                Ok(value) => is_failover_reply(value),
                Err(e) => is_failover_error(e),
            };
            if sign && self.switched().await {
                return self.link.req_packed_command(cmd).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if let Some(follower) = self.follower.clone() {
                self.catch_up(&follower);
            }
            let result = self.link.req_packed_commands(pipeline, offset, count).await;
            let sign = match &result {
                Ok(values) => values.iter().any(is_failover_reply),
                Err(e) => is_failover_error(e),
            };
            if sign && self.switched().await {
                return self.link.req_packed_commands(pipeline, offset, count).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.link.get_db()
    }
}

impl Link {
    async fn req_packed_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Link::Node(manager) => manager.req_packed_command(cmd).await,
            Link::Cluster(cluster) => cluster.req_packed_command(cmd).await,
        }
    }

    async fn req_packed_commands(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Link::Node(manager) => manager.req_packed_commands(pipeline, offset, count).await,
            Link::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count).await,
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Node(manager) => manager.get_db(),
            Link::Cluster(cluster) => cluster.get_db(),
        }
    }
}
