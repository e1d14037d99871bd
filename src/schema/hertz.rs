//! hertz-contrib's Redis registry layout, byte for byte: one HASH
//! `/hertz/{svc}/server` per service, field = address, value = JSON, one
//! `EXPIRE` for the whole hash, no events.
//!
//! Unlike Hertz, our heartbeat re-runs `HSET` + `EXPIRE` (Hertz's keepalive
//! is `EXPIRE` alone), so an entry lost to a restart or flush comes back.

use std::sync::LazyLock;
use std::time::Duration;

use crate::connection::Connection;
use redis::RedisResult;

use super::script::{with_entries, LuaScript};
use super::{RawEntry, ReadReply};
use crate::instance::ServiceName;

pub(super) fn key(service: &str) -> String {
    format!("/hertz/{service}/server")
}

/// KEYS: hash. ARGV: ttl seconds, then addr, json for each instance.
/// Returns one code per instance, in order: 0 renewed, 1 created, 2
/// updated. What Hertz runs is the `HSET`s and the `EXPIRE`; the `HGET`s
/// only tell us what changed.
const UPSERT: &str = r#"
local codes = {}
for i = 2, #ARGV - 1, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if not old then
    codes[#codes + 1] = 1
  elseif old ~= ARGV[i + 1] then
    codes[#codes + 1] = 2
  else
    codes[#codes + 1] = 0
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return codes
"#;

static UPSERT_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(UPSERT));

/// Writes (or renews) `entries` (address, JSON) of one service in one
/// script call. Returns the script's code per entry, in order.
pub(super) async fn upsert(
    conn: &mut Connection,
    service: &ServiceName,
    entries: &[(&str, &str)],
    ttl: Duration,
) -> RedisResult<Vec<i64>> {
    // EXPIRE takes whole seconds; round up so the lease is never shorter.
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let args = with_entries(&[&secs], entries);
    UPSERT_SCRIPT
        .run(&[&key(service.spelling())], &args, conn)
        .await
}

pub(super) async fn remove(
    conn: &mut Connection,
    service: &ServiceName,
    addr: &str,
) -> RedisResult<bool> {
    let removed: i64 = redis::cmd("HDEL")
        .arg(key(service.spelling()))
        .arg(addr)
        .query_async(conn)
        .await?;
    Ok(removed > 0)
}

/// Says nothing of whether the hash exists: a hash emptied by the last
/// `HDEL` is gone too, so its absence cannot tell a lost registry from a
/// service whose last instance left (and Hertz has no events to tell them
/// apart).
pub(super) async fn read(conn: &mut Connection, service: &ServiceName) -> RedisResult<ReadReply> {
    let k = key(service.spelling());
    let (entries, ttl): (Vec<(String, Vec<u8>)>, i64) = redis::pipe()
        .cmd("HGETALL")
        .arg(&k)
        .cmd("PTTL")
        .arg(&k)
        .query_async(conn)
        .await?;
    let lease_left = u64::try_from(ttl).ok().map(Duration::from_millis);
    let entries = entries
        .into_iter()
        .map(|(field, value)| RawEntry {
            field,
            value: Some(value),
            override_value: None,
            lease_left,
        })
        .collect();
    Ok(ReadReply {
        entries,
        keys_exist: None,
    })
}

/// Hertz keeps no list of services: find the hashes with `SCAN`. A cluster
/// would need a `SCAN` on every node; Hertz itself has no cluster support,
/// so this is refused there rather than answered with a partial list.
pub(super) async fn services(conn: &mut Connection) -> RedisResult<Vec<String>> {
    if conn.is_cluster() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "listing services with the Hertz schema is not supported on Redis Cluster \
             (it needs SCAN on every node); resolve services by name instead",
        )));
    }
    let mut cursor: u64 = 0;
    let mut names = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("/hertz/*/server")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        names.extend(keys.into_iter().filter_map(|k| {
            k.strip_prefix("/hertz/")
                .and_then(|r| r.strip_suffix("/server"))
                .map(str::to_owned)
        }));
        if next == 0 {
            return Ok(names);
        }
        cursor = next;
    }
}
