//! The native schema: per-instance leases in a ZSET beside the HASH of
//! entries, all keys of a service in one cluster slot (`{svc}` hash tag).

use std::sync::LazyLock;
use std::time::Duration;

use crate::connection::Connection;
use redis::RedisResult;

use super::script::{with_entries, LuaScript};
use super::{RawEntry, ReadReply};
use crate::instance::ServiceName;

pub(super) fn instances(prefix: &str, service: &str) -> String {
    format!("{prefix}:{{{service}}}:instances")
}

pub(super) fn leases(prefix: &str, service: &str) -> String {
    format!("{prefix}:{{{service}}}:leases")
}

pub(super) fn events(prefix: &str, service: &str) -> String {
    format!("{prefix}:{{{service}}}:events")
}

pub(super) fn service_of_events<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
    channel
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix("}:events")
}

/// The operator's overrides of a service's instances (see `overrides.rs`).
pub(super) fn overrides(prefix: &str, service: &str) -> String {
    format!("{prefix}:{{{service}}}:overrides")
}

/// The keys of the upsert and read scripts: instances, leases, overrides.
fn service_keys(prefix: &str, service: &str) -> [String; 3] {
    [
        instances(prefix, service),
        leases(prefix, service),
        overrides(prefix, service),
    ]
}

pub(super) fn services_key(prefix: &str) -> String {
    format!("{prefix}:services")
}

/// Register and heartbeat, atomically, in one round trip, for any number
/// of instances of one service (the registry sends at most
/// [`UPSERT_BATCH`](super::UPSERT_BATCH) per call).
///
/// KEYS: instances, leases, overrides. ARGV: ttl ms, events channel, then
/// addr, json for each instance. Returns one code per instance, in order: 0 renewed,
/// 1 created, 2 updated.
///
/// The lease deadline comes from Redis `TIME`, one clock for every client.
/// Expired leases of the service are pruned (at most 100 per call, so one
/// call stays short; the call's own instances are renewed, not pruned) and
/// announced as `expire` events. The keys (the operator's overrides too,
/// if any) expire a grace period after the latest lease, so a dead
/// service leaves nothing. Each instance's state is
/// read before anything is written, so its code and its `register` or
/// `update` event are what one call for it alone would give.
const UPSERT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, channel = tonumber(ARGV[1]), ARGV[2]
local mine, codes = {}, {}
for i = 3, #ARGV - 1, 2 do
  local addr, json = ARGV[i], ARGV[i + 1]
  mine[addr] = true
  local old = redis.call('HGET', KEYS[1], addr)
  local score = redis.call('ZSCORE', KEYS[2], addr)
  if not (old and score and tonumber(score) >= now) then
    codes[#codes + 1] = 1
  elseif old ~= json then
    codes[#codes + 1] = 2
  else
    codes[#codes + 1] = 0
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now, 'LIMIT', 0, 100)
for _, a in ipairs(expired) do
  if not mine[a] then
    redis.call('HDEL', KEYS[1], a)
    redis.call('ZREM', KEYS[2], a)
    redis.call('PUBLISH', channel, '{"event":"expire","addr":"' .. a .. '"}')
  end
end
for i = 3, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
end
local last = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local gc = tonumber(last[2]) + 60000
redis.call('PEXPIREAT', KEYS[1], gc)
redis.call('PEXPIREAT', KEYS[2], gc)
redis.call('PEXPIREAT', KEYS[3], gc)
for k, code in ipairs(codes) do
  local addr = ARGV[1 + 2 * k]
  if code == 1 then
    redis.call('PUBLISH', channel, '{"event":"register","addr":"' .. addr .. '"}')
  elseif code == 2 then
    redis.call('PUBLISH', channel, '{"event":"update","addr":"' .. addr .. '"}')
  end
end
return codes
"#;

/// KEYS: instances, leases. ARGV: addr, events channel. Returns 0 if the
/// instance was not there, 1 if removed, 2 if removed and it was the last.
const REMOVE: &str = r#"
local n = redis.call('HDEL', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
if n == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], '{"event":"deregister","addr":"' .. ARGV[1] .. '"}')
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then return 2 end
return 1
"#;

/// Read-only: the live leases joined with their entries and the
/// operator's overrides.
///
/// KEYS: instances, leases, overrides. Returns `{now, exists, addr1,
/// deadline1, json1, override1, …}` where `exists` is 1 if the leases key
/// exists (0 after a `FLUSHALL`, a restart or a failover that lost it: the
/// resolver's recovery grace, see `resolver::recovery`) and a missing json
/// or override is nil (false in Lua). Only `HMGET`s and `EXISTS`, so a
/// read-only ACL user with the commands the README lists runs it. HMGET is
/// chunked because Lua's `unpack` is limited to a few thousand values.
/// An overrides key that is no hash (written by hand) is read as no
/// overrides: it must not make the service unresolvable (the registry's
/// listing of overrides fails on it, so an operator sees it).
const READ: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf', 'WITHSCORES')
local out = {now, redis.call('EXISTS', KEYS[2])}
local overridden = redis.call('EXISTS', KEYS[3]) == 1
local chunk = 1000
for i = 1, #live / 2, chunk do
  local addrs = {}
  for j = i, math.min(i + chunk - 1, #live / 2) do
    addrs[#addrs + 1] = live[2 * j - 1]
  end
  local values = redis.call('HMGET', KEYS[1], unpack(addrs))
  local overrides = {}
  if overridden then
    overrides = redis.pcall('HMGET', KEYS[3], unpack(addrs))
    if overrides.err then
      if not string.find(overrides.err, 'WRONGTYPE', 1, true) then
        return redis.error_reply(overrides.err)
      end
      overridden, overrides = false, {}
    end
  end
  for k = 1, #addrs do
    local j = i + k - 1
    out[#out + 1] = live[2 * j - 1]
    out[#out + 1] = live[2 * j]
    out[#out + 1] = values[k]
    out[#out + 1] = overrides[k] or false
  end
end
return out
"#;

static UPSERT_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(UPSERT));
static REMOVE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(REMOVE));
static READ_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(READ));

/// Writes (or renews) `entries` (address, JSON) of one service in one
/// script call. Returns the script's code per entry, in order.
pub(super) async fn upsert(
    conn: &mut Connection,
    prefix: &str,
    service: &ServiceName,
    entries: &[(&str, &str)],
    ttl: Duration,
) -> RedisResult<Vec<i64>> {
    let s = service.as_str();
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let channel = events(prefix, s);
    let args = with_entries(&[&ttl_ms, &channel], entries);
    let keys = service_keys(prefix, s);
    UPSERT_SCRIPT
        .run(&keys.each_ref().map(String::as_str), &args, conn)
        .await
}

/// Adds `names` to the services index: one `SADD` per
/// [`INDEX_BATCH`] names, sent at once on the multiplexed connection.
pub(super) async fn index(conn: &Connection, prefix: &str, names: &[&str]) -> RedisResult<()> {
    let key = services_key(prefix);
    let adds = names.chunks(INDEX_BATCH).map(|chunk| {
        let mut conn = conn.clone();
        let mut sadd = redis::cmd("SADD");
        sadd.arg(&key).arg(chunk);
        async move { sadd.exec_async(&mut conn).await }
    });
    futures_util::future::try_join_all(adds).await.map(drop)
}

/// Names per `SADD` of the services index.
const INDEX_BATCH: usize = 1000;

pub(super) async fn remove(
    conn: &mut Connection,
    prefix: &str,
    service: &ServiceName,
    addr: &str,
) -> RedisResult<bool> {
    let s = service.as_str();
    let removed: i64 = REMOVE_SCRIPT
        .run(
            &[&instances(prefix, s), &leases(prefix, s)],
            &[&addr, &events(prefix, s)],
            conn,
        )
        .await?;
    if removed == 2 {
        // The last instance is gone: drop the name from the index. A
        // registration racing with this is re-added by its next heartbeat.
        // If this fails, listing still leaves the name out once the keys
        // are gone (see `services`).
        let srem = redis::cmd("SREM")
            .arg(services_key(prefix))
            .arg(s)
            .exec_async(conn)
            .await;
        if let Err(error) = srem {
            tracing::warn!(service = s, %error, "could not remove the service from the services index");
        }
    }
    Ok(removed > 0)
}

pub(super) async fn read(
    conn: &mut Connection,
    prefix: &str,
    service: &ServiceName,
) -> RedisResult<ReadReply> {
    let s = service.as_str();
    let keys = service_keys(prefix, s);
    let reply: Vec<redis::Value> = READ_SCRIPT
        .run_read_only(&keys.each_ref().map(String::as_str), &[], conn)
        .await?;
    let mut values = reply.into_iter();
    let (Some(now), Some(exists)) = (values.next(), values.next()) else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the read script answered without the Redis time and the keys' existence",
        )));
    };
    let now: i64 = redis::from_redis_value(now)?;
    let exists: i64 = redis::from_redis_value(exists)?;
    let mut entries = Vec::with_capacity(values.len() / 4);
    while let (Some(field), Some(deadline), Some(value), Some(override_value)) =
        (values.next(), values.next(), values.next(), values.next())
    {
        let deadline: i64 = redis::from_redis_value(deadline)?;
        entries.push(RawEntry {
            field: redis::from_redis_value(field)?,
            value: redis::from_redis_value(value)?,
            override_value: redis::from_redis_value(override_value)?,
            lease_left: Some(Duration::from_millis(
                u64::try_from(deadline.saturating_sub(now)).unwrap_or(0),
            )),
        });
    }
    Ok(ReadReply {
        entries,
        keys_exist: Some(exists != 0),
    })
}

/// The members of the services set whose instances hash still exists. A
/// service whose instances all crashed keeps its name in the set (nobody is
/// left to remove it, and reads write nothing), but its keys expire a minute
/// after its last lease, and from then on it is not listed.
pub(super) async fn services(conn: &mut Connection, prefix: &str) -> RedisResult<Vec<String>> {
    let names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(services_key(prefix))
        .query_async(conn)
        .await?;
    if names.is_empty() {
        return Ok(names);
    }
    // One EXISTS per key, sent at once on the multiplexed connection (one
    // round trip); not a pipeline, whose keys must share a cluster slot.
    // A name whose check fails (its node is down) is kept: unknown is not
    // gone, and one node's outage must not fail the whole list.
    let exists: Vec<RedisResult<bool>> = futures_util::future::join_all(names.iter().map(|name| {
        let mut conn = conn.clone();
        let key = instances(prefix, name);
        async move { redis::cmd("EXISTS").arg(key).query_async(&mut conn).await }
    }))
    .await;
    Ok(names
        .into_iter()
        .zip(exists)
        .filter_map(|(name, exists)| match exists {
            Ok(exists) => exists.then_some(name),
            Err(error) => {
                tracing::warn!(service = %name, %error, "could not check whether the service still has keys; listing it");
                Some(name)
            }
        })
        .collect())
}
