//! Redis URLs: parsing one into an [`Endpoint`] without connecting, and
//! hiding its secrets for display ([`redact`]).
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

use std::sync::Arc;

use redis::{ConnectionInfo, IntoConnectionInfo};

use super::endpoint::{Credentials, Endpoint, Sentinels};
use crate::error::ValidationError;

/// The port Sentinels listen on unless a URL says otherwise.
const SENTINEL_PORT: u16 = 26379;

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
mod tests;
