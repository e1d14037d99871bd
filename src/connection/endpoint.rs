//! Where Redis is: one server by URL, or the master a set of Sentinels name.
//!
//! Sentinel URLs follow the shape of the plain ones, with several hosts and
//! the master's name as the path:
//!
//! ```text
//! redis+sentinel://[user:password@]host[:port][,host[:port]...]/master[/db][?sentinel_username=u&sentinel_password=p]
//! ```
//!
//! The userinfo and `db` apply to the Redis nodes (as in `redis://`); the
//! Sentinels themselves are reached with the `sentinel_*` parameters, since
//! they often have no password, or another one. A host without a port
//! means Sentinel's 26379. `rediss+sentinel://` uses TLS for both (feature
//! `tls`).
//!
//! Cluster URLs list seed nodes (any reachable one tells the client the
//! rest of the cluster); a cluster has no databases, so no path:
//!
//! ```text
//! redis+cluster://[user:password@]host[:port][,host[:port]...]
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisResult};

use super::{timed, Timeouts, CONNECTING};
use crate::error::ValidationError;

/// The port Sentinels listen on unless a URL says otherwise.
const SENTINEL_PORT: u16 = 26379;

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
    addrs: Vec<ConnectionAddr>,
    master: String,
    db: i64,
    /// For the Redis nodes.
    credentials: Credentials,
    /// For the Sentinels.
    sentinel_credentials: Credentials,
    tls: bool,
}

#[derive(Default)]
struct Credentials {
    user: Option<String>,
    password: Option<String>,
}

impl Sentinels {
    fn client(&self) -> RedisResult<SentinelClient> {
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
    /// Parses a Redis URL (`redis://`, `rediss://`, `unix://` with user,
    /// password and db, or a Sentinel URL) without connecting.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, ValidationError> {
        #[cfg(feature = "tls")]
        install_tls_provider();
        let invalid = |reason: String| ValidationError::RedisUrl {
            url: redact(url),
            // The reasons quote parts of the URL (a master name, a
            // parameter), which may then be parts of the password.
            reason: if userinfo_is_ambiguous(url) {
                AMBIGUOUS_USERINFO.to_owned()
            } else {
                reason
            },
        };
        for (scheme, tls) in [("redis+sentinel://", false), ("rediss+sentinel://", true)] {
            if let Some(rest) = url.strip_prefix(scheme) {
                return sentinel(rest, tls).map_err(invalid);
            }
        }
        for (scheme, tls) in [("redis+cluster://", false), ("rediss+cluster://", true)] {
            if let Some(rest) = url.strip_prefix(scheme) {
                return cluster(rest, tls).map_err(invalid);
            }
        }
        let scheme_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok {
            return Err(invalid(
                "expected redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// \
                 (e.g. redis://127.0.0.1:6379/0)"
                    .into(),
            ));
        }
        redis::Client::open(url)
            .map(|client| Endpoint::Server(Box::new(client)))
            .map_err(|e| invalid(e.to_string()))
    }

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

/// What follows the scheme of a multi-host URL.
struct Parts<'a> {
    credentials: Credentials,
    hosts: &'a str,
    /// After the first `/`, if any.
    path: Option<&'a str>,
    query: Option<&'a str>,
}

impl<'a> Parts<'a> {
    /// Splits and decodes the credentials, which end at the last `@`, so a
    /// password may hold `/`.
    fn split(rest: &'a str) -> Result<Self, String> {
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (credentials(userinfo)?, rest),
            None => (Credentials::default(), rest),
        };
        let (hosts, path) = match rest.split_once('/') {
            Some((hosts, path)) => (hosts, Some(path)),
            None => (rest, None),
        };
        Ok(Parts {
            credentials,
            hosts,
            path,
            query,
        })
    }
}

/// Chooses ring as rustls's crypto provider unless the process chose one:
/// without a choice (or with two provider features on), a TLS connect
/// panics.
#[cfg(feature = "tls")]
fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one first: either way one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Parses comma-separated hosts; `default_port` for those without one.
fn hosts(
    hosts: &str,
    tls: bool,
    default_port: u16,
    what: &str,
) -> Result<Vec<ConnectionInfo>, String> {
    let scheme = if tls { "rediss" } else { "redis" };
    let mut parsed = Vec::new();
    for (i, host) in hosts.split(',').enumerate() {
        if host.is_empty() {
            return Err(format!("expected one or more {what}s, separated by commas"));
        }
        // Without a port the redis crate would assume 6379.
        let has_port = match host.rfind(']') {
            Some(bracket) => host[bracket..].contains(':'),
            None => host.contains(':'),
        };
        let url = if has_port {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{default_port}")
        };
        // The host text is not echoed: a mistyped URL may hold a password there.
        let info = url
            .into_connection_info()
            .map_err(|e| format!("{what} #{} is not host[:port]: {e}", i + 1))?;
        parsed.push(info);
    }
    Ok(parsed)
}

/// Parses what follows `redis+sentinel://`.
fn sentinel(rest: &str, tls: bool) -> Result<Endpoint, String> {
    let parts = Parts::split(rest)?;
    let path = parts
        .path
        .ok_or("the path must name the master, e.g. redis+sentinel://127.0.0.1:26379/mymaster")?;
    let addrs = hosts(parts.hosts, tls, SENTINEL_PORT, "Sentinel host")?
        .into_iter()
        .map(|info| info.addr().clone())
        .collect();
    let path = path.strip_suffix('/').unwrap_or(path);
    let (master, db) = match path.split_once('/') {
        Some((master, db)) => {
            let db: i64 = db
                .parse()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| format!("database {db:?} must be a number, 0 or more"))?;
            (master, db)
        }
        None => (path, 0),
    };
    let name_ok = !master.is_empty()
        && master
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !name_ok {
        return Err(format!(
            "master name {master:?} must be non-empty: letters, digits, '-', '_', '.' or ':'"
        ));
    }
    let mut sentinel_credentials = Credentials::default();
    for pair in parts
        .query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "sentinel_username" => &mut sentinel_credentials.user,
            "sentinel_password" => &mut sentinel_credentials.password,
            _ => {
                return Err(format!(
                    "unknown parameter {key:?}: expected sentinel_username or sentinel_password"
                ))
            }
        };
        *slot = Some(decode(value, key)?);
    }
    let sentinels = Sentinels {
        addrs,
        master: master.to_owned(),
        db,
        credentials: parts.credentials,
        sentinel_credentials,
        tls,
    };
    // Surfaces what the redis crate refuses now rather than at connect time.
    sentinels.client().map_err(|e| e.to_string())?;
    Ok(Endpoint::Sentinel(Arc::new(sentinels)))
}

/// Parses what follows `redis+cluster://`.
fn cluster(rest: &str, tls: bool) -> Result<Endpoint, String> {
    let parts = Parts::split(rest)?;
    let Parts {
        credentials,
        hosts: host_list,
        path,
        query,
    } = parts;
    if path.is_some_and(|p| !p.is_empty()) {
        return Err("a Redis Cluster has no databases: remove the path".into());
    }
    if query.is_some_and(|q| !q.is_empty()) {
        return Err("a cluster URL takes no parameters".into());
    }
    let mut seeds = hosts(host_list, tls, 6379, "cluster node")?;
    for seed in &mut seeds {
        let mut settings = seed.redis_settings().clone();
        if let Some(user) = &credentials.user {
            settings = settings.set_username(user);
        }
        if let Some(password) = &credentials.password {
            settings = settings.set_password(password);
        }
        *seed = seed.clone().set_redis_settings(settings);
    }
    Ok(Endpoint::Cluster(seeds.into()))
}

/// Percent-decodes one URL component.
fn decode(text: &str, what: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("{what} is not valid UTF-8 once percent-decoded"))
}

/// Decodes `user:password` or `user` (percent-encoded, as in any URL).
fn credentials(userinfo: &str) -> Result<Credentials, String> {
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    let user = Some(decode(user, "the user name")?).filter(|u| !u.is_empty());
    let password = match password {
        Some(p) => Some(decode(p, "the password")?).filter(|p| !p.is_empty()),
        None => None,
    };
    Ok(Credentials { user, password })
}

/// Whether an '@' follows a '?' in `url`: it could end a password that
/// holds '?', or sit in a query value, so no part of the URL after the
/// scheme is known not to be the password.
fn userinfo_is_ambiguous(url: &str) -> bool {
    let rest = url.find("://").map_or(url, |s| &url[s + 3..]);
    rest.rfind('@').is_some_and(|at| rest[..at].contains('?'))
}

/// The reason given for an invalid URL whose userinfo is ambiguous: any
/// other would quote a part of the URL.
const AMBIGUOUS_USERINFO: &str = "an '@' follows a '?', so where the password ends is unclear \
     (percent-encode '?' as %3F and '@' as %40 in passwords and parameter values)";

/// A Redis URL with its secrets replaced by `***`, as the crate shows URLs
/// in `Debug`, errors and logs; for tools that print a Redis URL.
///
/// It hides the userinfo password (up to the last `@`, so a password may
/// hold `/` or `@`), and every query value except the few known to be
/// harmless (`db`, `protocol`, `sentinel_username`; a mistyped
/// `sentinel_pasword=` stays hidden too). When in doubt (an `@` after a
/// `?`) it hides everything after the scheme.
///
/// ```
/// use redis_discovery::redact_url;
///
/// assert_eq!(redact_url("redis://app:s3cret@10.0.0.5:6379/0"), "redis://app:***@10.0.0.5:6379/0");
/// assert_eq!(
///     redact_url("redis+sentinel://s1,s2/mymaster?sentinel_password=s3cret"),
///     "redis+sentinel://s1,s2/mymaster?sentinel_password=***"
/// );
/// ```
pub fn redact(url: &str) -> String {
    const SHOWN: [&str; 3] = ["db", "protocol", "sentinel_username"];
    let (head, rest) = match url.find("://") {
        Some(s) => url.split_at(s + 3),
        None => ("", url),
    };
    if userinfo_is_ambiguous(url) {
        return format!("{head}***");
    }
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => {
            let userinfo = match rest[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => "***@".to_owned(),
            };
            (userinfo, &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    let rest = match rest.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if !SHOWN.iter().any(|s| k.eq_ignore_ascii_case(s)) => {
                        format!("{k}=***")
                    }
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => rest.to_owned(),
    };
    format!("{head}{userinfo}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel_of(url: &str) -> Arc<Sentinels> {
        match Endpoint::parse(url) {
            Ok(Endpoint::Sentinel(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn error_of(url: &str) -> String {
        match Endpoint::parse(url) {
            Err(e) => e.to_string(),
            Ok(e) => panic!("{url} parsed: {e:?}"),
        }
    }

    /// Asserts that each URL is refused with an error naming the reason.
    fn refused_because(cases: &[(&str, &str)]) {
        for (url, why) in cases {
            let e = error_of(url);
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn server_urls() {
        assert!(Endpoint::parse("redis://127.0.0.1:6379/0").is_ok());
        assert!(Endpoint::parse("redis://user:pw@127.0.0.1/2").is_ok());
        assert!(Endpoint::parse("http://127.0.0.1").is_err());
        assert!(Endpoint::parse("").is_err());
        assert!(Endpoint::parse("redis://").is_err());
        let e = error_of("http://u:secret@h");
        assert!(!e.contains("secret"), "{e}");
        assert!(!Endpoint::parse("redis://h").unwrap().follows_failovers());
    }

    #[test]
    fn sentinel_urls() {
        let s = sentinel_of("redis+sentinel://127.0.0.1:26380,[::1],localhost/mymaster");
        assert_eq!(s.master, "mymaster");
        assert!(Endpoint::parse("redis+sentinel://h/m")
            .unwrap()
            .follows_failovers());
        sentinel_of("redis+sentinel://:p%40ss@h1:1,h2:2/my-master.1/3");
        sentinel_of("redis+sentinel://h/m?sentinel_password=only");
        sentinel_of("redis+sentinel://h/m/?");
        sentinel_of("redis+sentinel://h/m/2/");
        let s = sentinel_of(
            "redis+sentinel://u:pa/ss@h/m?sentinel_username=a:b&sentinel_password=c%40d/e",
        );
        assert_eq!(s.credentials.user.as_deref(), Some("u"));
        assert_eq!(s.credentials.password.as_deref(), Some("pa/ss"));
        assert_eq!(s.sentinel_credentials.user.as_deref(), Some("a:b"));
        assert_eq!(s.sentinel_credentials.password.as_deref(), Some("c@d/e"));
        let s = sentinel_of("redis+sentinel://:p%40ss@h/m/3");
        assert_eq!(
            (
                s.credentials.user.as_deref(),
                s.credentials.password.as_deref()
            ),
            (None, Some("p@ss"))
        );
        assert_eq!(s.db, 3);
    }

    #[test]
    fn cluster_urls() {
        for url in [
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
            "redis+cluster://u:p%40ss@h:7000/",
            "redis+cluster://[::1]:7000",
            "redis+cluster://h",
        ] {
            match Endpoint::parse(url) {
                Ok(Endpoint::Cluster(seeds)) => assert!(!seeds.is_empty(), "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        let Ok(Endpoint::Cluster(seeds)) = Endpoint::parse("redis+cluster://:p%40ss@a:1,b:2")
        else {
            panic!("cluster URL")
        };
        assert_eq!(seeds.len(), 2);
        assert!(seeds
            .iter()
            .all(|s| s.redis_settings().password() == Some("p@ss")));
        refused_because(&[
            ("redis+cluster://h:7000/1", "no databases"),
            ("redis+cluster://a,,b", "cluster nodes"),
            ("redis+cluster://h:x", "cluster node #1"),
            ("redis+cluster://h?x=1", "no parameters"),
        ]);
    }

    #[test]
    fn bad_sentinel_urls_say_why() {
        refused_because(&[
            ("redis+sentinel://h", "name the master"),
            ("redis+sentinel://h/", "master name"),
            ("redis+sentinel:///m", "Sentinel hosts"),
            ("redis+sentinel://a,,b/m", "Sentinel hosts"),
            ("redis+sentinel://h:notaport/m", "Sentinel host #1"),
            ("redis+sentinel://h/m/x", "database"),
            ("redis+sentinel://h/m/-1", "database"),
            ("redis+sentinel://h/m y", "master name"),
            ("redis+sentinel://h/m?db=2", "unknown parameter \"db\""),
        ]);
        for url in [
            "redis+sentinel://u:secret@h/m?sentinel_password=hidden&db=1",
            "redis+sentinel://u:se/cret@h:x/m",
            "redis+cluster://u:se/cret@h:x",
            "redis+sentinel://h/m?sentinel_pasword=secret",
        ] {
            let e = error_of(url);
            assert!(
                !e.contains("secret") && !e.contains("hidden") && !e.contains("cret"),
                "{e}"
            );
        }
    }

    /// Found by fuzz/fuzz_targets/redis_url.rs: the reason quoted a
    /// parameter name, a master name or a database that, with an '@'
    /// after a '?', may be part of the password the redacted URL hides.
    #[test]
    fn ambiguous_userinfo_is_not_quoted_in_errors() {
        for url in [
            // The fuzzer's input, its NULs replaced by the secrets.
            "redis+sentinel://u:Hunter00#pw@128.0.0.aster/3?senti\tHunter01#pwHunter02#pw\
             Hunter03#pwnel_usernam@128.0.0.ael_pass=Hunter04#pw",
            "redis+sentinel://u:1/Hunter01 x?y@h/m",
            "redis+sentinel://u:1/m/Hunter01?y@h/m",
            "redis+cluster://u:1/Hunter01?y@h",
        ] {
            let e = error_of(url);
            assert!(!e.contains("Hunter"), "{url}: {e}");
            assert!(e.contains("where the password ends is unclear"), "{e}");
        }
        // Without that ambiguity the reason still names the culprit.
        refused_because(&[("redis+sentinel://u:p@h/m?x=1", "unknown parameter \"x\"")]);
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact("unix:///run/redis.sock?db=1&pass=secret"),
            "unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(
            redact("redis+sentinel://u:pw@a:1,b:2/m?sentinel_password=s&sentinel_username=x"),
            "redis+sentinel://u:***@a:1,b:2/m?sentinel_password=***&sentinel_username=x"
        );
        // A '/' in a password, a mistyped parameter.
        assert_eq!(redact("redis://u:pa/ss@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(
            redact("redis+sentinel://h/m?sentinel_pasword=topsecret"),
            "redis+sentinel://h/m?sentinel_pasword=***"
        );
        // A '?' in a password, an '@' in a query value: all is hidden.
        for url in [
            "redis://u:p?x=y@h",
            "redis+sentinel://h/m?sentinel_password=pa@ss",
            "redis+sentinel://h/m?sentinel_password=se:cr@et",
            "unix:///run/redis.sock?db=1&pass=se@cret",
        ] {
            let scheme = &url[..url.find("://").unwrap() + 3];
            assert_eq!(redact(url), format!("{scheme}***"));
        }
    }
}
