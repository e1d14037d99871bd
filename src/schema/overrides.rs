//! The operator's overrides (native schema only): one HASH per service,
//! `PREFIX:{svc}:overrides`, field = `host:port`, value = the override's
//! JSON (`{"weight":N}` or `{"disabled":true}`), in the service's cluster
//! slot.
//!
//! Heartbeats never write it, so an override outlives the instance's
//! re-registrations. It lives as long as the service's other keys: the
//! upsert script moves its expiry with theirs (a grace period after the
//! latest lease), and writing an override sets the same deadline (a grace
//! period from now when the service has no lease). The read script returns
//! each live instance's override beside its entry.

use std::sync::LazyLock;

use futures_util::{StreamExt, TryStreamExt};
use redis::RedisResult;

use super::native::{events, leases, overrides as overrides_key, services_key};
use super::script::LuaScript;
use super::{KeySchema, Keyspace};
use crate::connection::Connection;
use crate::instance::ServiceName;

/// Writes one override and publishes an `override` event if it changed.
///
/// KEYS: overrides, leases. ARGV: addr, JSON, events channel. The key
/// expires a grace period (60 s, as in the upsert script) after the
/// service's latest lease, or from now if it has none. Returns 1 if an
/// instance at the address holds a live lease now, else 0.
///
/// Everything that can fail (a key of another type) is read before the
/// first write: Redis does not roll a script back, and an `HSET` whose
/// `PEXPIREAT` never ran would leave a key that never expires.
const SET: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('HGET', KEYS[1], ARGV[1])
local last = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
local gc = now + 60000
if last[2] and tonumber(last[2]) + 60000 > now then
  gc = tonumber(last[2]) + 60000
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], gc)
if old ~= ARGV[2] then
  redis.call('PUBLISH', ARGV[3], '{"event":"override","addr":"' .. ARGV[1] .. '"}')
end
if score and tonumber(score) >= now then return 1 end
return 0
"#;

/// Removes one override and publishes an `override` event if there was
/// one. KEYS: overrides. ARGV: addr, events channel. Returns 1 if there
/// was one, else 0.
const CLEAR: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], '{"event":"override","addr":"' .. ARGV[1] .. '"}')
return 1
"#;

static SET_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(SET));
static CLEAR_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(CLEAR));

/// Services whose overrides are read at once when listing them all.
const LIST_CONCURRENCY: usize = 64;

/// One service's overrides as stored: (address, JSON).
pub(crate) type StoredOverrides = Vec<(String, Vec<u8>)>;

impl Keyspace {
    /// The native prefix, or an error in the Hertz schema (which has no
    /// room for overrides; the registry refuses before calling).
    fn overrides_prefix(&self) -> RedisResult<&str> {
        match self.schema {
            KeySchema::Native => Ok(&self.prefix),
            KeySchema::Hertz => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "the Hertz schema has no operator overrides",
            ))),
        }
    }

    /// Writes the override `json` of `addr`. Returns whether an instance
    /// at `addr` holds a live lease now.
    pub(crate) async fn set_override(
        &self,
        conn: &mut Connection,
        service: &ServiceName,
        addr: &str,
        json: &str,
    ) -> RedisResult<bool> {
        let prefix = self.overrides_prefix()?;
        let s = service.as_str();
        let (key, leases) = (overrides_key(prefix, s), leases(prefix, s));
        let live: i64 = SET_SCRIPT
            .run(&[&key, &leases], &[&addr, &json, &events(prefix, s)], conn)
            .await?;
        Ok(live == 1)
    }

    /// Removes the override of `addr`. Returns whether there was one.
    pub(crate) async fn clear_override(
        &self,
        conn: &mut Connection,
        service: &ServiceName,
        addr: &str,
    ) -> RedisResult<bool> {
        let prefix = self.overrides_prefix()?;
        let s = service.as_str();
        let removed: i64 = CLEAR_SCRIPT
            .run(
                &[&overrides_key(prefix, s)],
                &[&addr, &events(prefix, s)],
                conn,
            )
            .await?;
        Ok(removed == 1)
    }

    /// The overrides of one service as stored, sorted by address.
    pub(crate) async fn overrides(
        &self,
        conn: &mut Connection,
        service: &ServiceName,
    ) -> RedisResult<StoredOverrides> {
        let prefix = self.overrides_prefix()?;
        read_overrides(conn.clone(), overrides_key(prefix, service.as_str())).await
    }

    /// The overrides of every service in the services index that has any,
    /// sorted by service name. The index drops a service's name when its
    /// last instance deregisters: overrides left by such a service (until
    /// they expire) are read by its name ([`overrides`](Self::overrides)).
    pub(crate) async fn all_overrides(
        &self,
        conn: &mut Connection,
    ) -> RedisResult<Vec<(String, StoredOverrides)>> {
        let prefix = self.overrides_prefix()?;
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(services_key(prefix))
            .query_async(conn)
            .await?;
        // A name written by hand that is no service name is not read: its
        // key could be anything (`a}b` makes `PREFIX:{a}b}:overrides`).
        names.retain(|name| ServiceName::new(name).is_ok());
        names.sort();
        names.dedup();
        // Each key on its own (keys of other services live in other
        // cluster slots), a bounded number at once on the multiplexed
        // connection.
        let reads = names.into_iter().map(|name| {
            let read = read_overrides(conn.clone(), overrides_key(prefix, &name));
            async move { read.await.map(|stored| (name, stored)) }
        });
        let all: Vec<(String, StoredOverrides)> = futures_util::stream::iter(reads)
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(all.into_iter().filter(|(_, o)| !o.is_empty()).collect())
    }
}

/// `HGETALL` of one overrides key, sorted by address.
async fn read_overrides(mut conn: Connection, key: String) -> RedisResult<StoredOverrides> {
    let mut stored: StoredOverrides = redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut conn)
        .await?;
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(stored)
}
