//! Connecting to where Redis is ([`Endpoint`]): one server, the master a
//! set of Sentinels name, or a Redis Cluster. URLs are parsed in
//! [`redis_url`](super::redis_url).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ConnectionInfo, RedisResult};

use super::{timed, Timeouts, CONNECTING};

/// Retries of one command on a cluster connection.
pub(crate) const CLUSTER_RETRIES: u32 = 3;

/// A Redis to talk to: the server of a URL, whichever node the Sentinels
/// currently name master, or a Redis Cluster.
#[derive(Clone)]
pub(crate) enum Endpoint {
    Server(Box<redis::Client>),
    Sentinel(Arc<Sentinels>),
    /// The seed nodes, credentials included.
    Cluster(Arc<[ConnectionInfo]>),
}

/// The Sentinels of one master and how to reach it. A client is built for
/// every lookup, so no connection to a Sentinel outlives it.
pub(crate) struct Sentinels {
    pub(super) addrs: Vec<ConnectionAddr>,
    pub(super) master: String,
    pub(super) db: i64,
    /// For the Redis nodes.
    pub(super) credentials: Credentials,
    /// For the Sentinels.
    pub(super) sentinel_credentials: Credentials,
    pub(super) tls: bool,
}

/// A user name and password, percent-decoded.
#[derive(Default)]
pub(super) struct Credentials {
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
}

impl Sentinels {
    pub(super) fn client(&self) -> RedisResult<SentinelClient> {
        let mut builder = SentinelClientBuilder::new(
            self.addrs.clone(),
            &self.master,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_db(self.db);
        if let Some(user) = &self.credentials.user {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &self.credentials.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(user) = &self.sentinel_credentials.user {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &self.sentinel_credentials.password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if self.tls {
            builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        }
        builder.build()
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Server(client) => {
                write!(f, "Server({})", client.get_connection_info().addr())
            }
            Endpoint::Sentinel(s) => write!(f, "Sentinel(master {:?})", s.master),
            Endpoint::Cluster(seeds) => write!(f, "Cluster({} seed nodes)", seeds.len()),
        }
    }
}

impl Endpoint {
    /// A client for the node to use now: the server, or the current master
    /// (which the Sentinels name and the node itself confirms). A cluster
    /// has no one node: it is reached through [`cluster`](Self::cluster)
    /// and [`events`](Self::events).
    pub(crate) async fn client(&self, timeout: Duration) -> RedisResult<redis::Client> {
        match self {
            Endpoint::Server(client) => Ok((**client).clone()),
            Endpoint::Cluster(_) => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a Redis Cluster has no single node to connect to",
            ))),
            Endpoint::Sentinel(sentinels) => {
                let ask = async { sentinels.client()?.async_get_client().await };
                let context = |kind, detail: String| {
                    let master = &sentinels.master;
                    redis::RedisError::from((
                        kind,
                        "asking the Sentinels for the master",
                        format!("master {master:?}: {detail}"),
                    ))
                };
                // Not `timed`: its extra async layer here makes rustc's
                // query depth overflow building the CLI for the tests.
                match tokio::time::timeout(timeout, ask).await {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(e)) => Err(context(e.kind(), e.to_string())),
                    Err(_) => Err(context(
                        redis::ErrorKind::Io,
                        format!("no answer within {timeout:?}"),
                    )),
                }
            }
        }
    }

    /// Whether the node to use can change (Sentinel).
    pub(crate) fn follows_failovers(&self) -> bool {
        matches!(self, Endpoint::Sentinel(_))
    }

    /// A cluster client with the crate's timeouts, if this is a cluster.
    pub(crate) fn cluster(&self, timeouts: Timeouts) -> RedisResult<Option<ClusterClient>> {
        let Endpoint::Cluster(seeds) = self else {
            return Ok(None);
        };
        ClusterClient::builder(seeds.iter().cloned())
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.command)
            // A few quick retries, enough for redirections while the slot
            // map is refreshed (after a failover or a resharding); not the
            // default ladder of 16 waits from 1.28 s up: the next call
            // (heartbeat, refresh) tries again anyway.
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .retry_wait_formula(20, 2)
            .build()
            .map(Some)
    }

    /// The resolver's event connection: to the server, to the master of the
    /// moment behind Sentinel (so a resubscribe after a failover lands on
    /// the new one), or to a cluster seed. Classic pub/sub messages reach
    /// every node of a cluster, so any seed that is a member will do: they
    /// are tried in order, and the connection comes with a plain one to the
    /// same node, to check now and then that it still is one.
    pub(crate) async fn events(&self, timeout: Duration) -> RedisResult<Events> {
        let Endpoint::Cluster(seeds) = self else {
            let client = self.client(timeout).await?;
            let pubsub = timed(timeout, CONNECTING, client.get_async_pubsub()).await?;
            return Ok(Events {
                pubsub,
                member: None,
            });
        };
        let mut last = None;
        for seed in seeds.iter() {
            let client = redis::Client::open(seed.clone())?;
            let joined = async {
                let connect = client.get_multiplexed_async_connection();
                let mut member = timed(timeout, CONNECTING, connect).await?;
                check_member(&mut member, timeout).await?;
                let pubsub = timed(timeout, CONNECTING, client.get_async_pubsub()).await?;
                Ok::<_, redis::RedisError>(Events {
                    pubsub,
                    member: Some(member),
                })
            };
            match joined.await {
                Ok(events) => return Ok(events),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "no cluster seed nodes",
            ))
        }))
    }
}

/// The passwords a parsed URL holds (for the Redis nodes and, behind
/// Sentinel, for the Sentinels), so the fuzz targets can check that none
/// shows in a redacted URL, an error or `Debug`.
#[cfg(fuzzing)]
impl Endpoint {
    pub(crate) fn passwords(&self) -> Vec<String> {
        let of = |info: &ConnectionInfo| info.redis_settings().password().map(str::to_owned);
        match self {
            Endpoint::Server(client) => of(client.get_connection_info()).into_iter().collect(),
            Endpoint::Sentinel(s) => [&s.credentials.password, &s.sentinel_credentials.password]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            Endpoint::Cluster(seeds) => seeds.iter().filter_map(of).collect(),
        }
    }
}

/// The resolver's event connection.
pub(crate) struct Events {
    pub(crate) pubsub: PubSub,
    /// On a cluster: a plain connection to the subscribed node.
    pub(crate) member: Option<MultiplexedConnection>,
}

/// Fails unless the node still belongs to a cluster whose slots are
/// assigned: a node that was reset (or never joined) answers PING but would
/// never see another node's events. The cluster's state is not checked: it
/// reads `fail` on every node during a failover, which is no reason to move.
pub(crate) async fn check_member(
    member: &mut MultiplexedConnection,
    timeout: Duration,
) -> RedisResult<()> {
    let mut query = redis::cmd("CLUSTER");
    query.arg("INFO");
    let info: String = timed(
        timeout,
        "timed out waiting for Redis",
        query.query_async(member),
    )
    .await?;
    let assigned = info
        .lines()
        .find_map(|line| line.strip_prefix("cluster_slots_assigned:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if assigned > 0 {
        Ok(())
    } else {
        Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "the subscribed node is no longer a member of the cluster",
        )))
    }
}
