//! Key schemas: where instances live in Redis and the scripts that read and
//! write them.
//!
//! Two schemas exist:
//!
//! * [`KeySchema::Native`] (the default): per-instance leases, atomic
//!   register/heartbeat, change events on pub/sub. Keys for service `svc`
//!   and prefix `sd`:
//!
//!   | key | type | content |
//!   | --- | --- | --- |
//!   | `sd:{svc}:instances` | HASH | field = `host:port`, value = JSON `{"service_name","addr","weight","tags"}` |
//!   | `sd:{svc}:leases` | ZSET | member = `host:port`, score = lease deadline (ms since the epoch, Redis `TIME`) |
//!   | `sd:{svc}:overrides` | HASH | the operator's overrides: field = `host:port`, value = JSON `{"weight":N}` (0: drained) or `{"disabled":true}` |
//!   | `sd:{svc}:events` | pub/sub channel | JSON `{"event":"register"\|"update"\|"deregister"\|"expire"\|"override","addr":…}` |
//!   | `sd:services` | SET | names of services that have had an instance |
//!
//!   `sd:services` is only for listing: every register and heartbeat adds
//!   the name (best-effort, as it may live on another cluster node than the
//!   service), a deregister of the last instance removes it, and a listing
//!   leaves out names whose keys have expired.
//!
//!   Heartbeats never write `sd:{svc}:overrides`
//!   ([`RedisRegistry::set_override`](crate::RedisRegistry::set_override)
//!   does): an override outlives its instance's re-registrations and
//!   deregistration, and expires with the service's other keys, a minute
//!   after the latest lease. Resolvers read it with the instances.
//!
//! * [`KeySchema::Hertz`]: exactly what hertz-contrib's Redis registry
//!   reads and writes, so Go Hertz and Rust services can share a registry:
//!   one HASH `/hertz/{svc}/server` per service, field = address, value =
//!   the same JSON, one `EXPIRE` for the whole hash, no events.
//!   Its weakness is inherent: a crashed instance stays listed for as long
//!   as any sibling keeps the hash alive. Prefer the native schema.
//!
//! Service names are case-insensitive ([`ServiceName`]): the native
//! schema's keys and channels hold the lowercase name. Go writes the Hertz
//! key with the case of its service name, so the Hertz key holds the name
//! as spelled ([`ServiceName::spelling`]).

mod hertz;
mod native;
mod overrides;
mod script;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::connection::Connection;
use crate::error::ValidationError;
use crate::instance::{AllowList, EntryError, Instance, ServiceName};

/// Which keys and values the registry and resolver use in Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeySchema {
    /// Per-instance leases, change events, cluster-friendly keys.
    #[default]
    Native,
    /// Byte-compatible with hertz-contrib's Redis registry.
    Hertz,
}

impl KeySchema {
    /// The lease TTL that fits the schema when none is configured: 15 s
    /// native, 60 s for Hertz (what Hertz sets; a shorter expiry on the
    /// shared hash could drop Go siblings that only refresh every 30 s).
    pub fn default_ttl(self) -> Duration {
        match self {
            KeySchema::Native => Duration::from_secs(15),
            KeySchema::Hertz => Duration::from_secs(60),
        }
    }

    /// The heartbeat interval that fits the schema: 5 s native, 30 s Hertz.
    pub fn default_heartbeat(self) -> Duration {
        match self {
            KeySchema::Native => Duration::from_secs(5),
            KeySchema::Hertz => Duration::from_secs(30),
        }
    }
}

impl FromStr for KeySchema {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(KeySchema::Native),
            "hertz" => Ok(KeySchema::Hertz),
            other => Err(ValidationError::Config(format!(
                "unknown key schema {other:?}: expected \"native\" or \"hertz\""
            ))),
        }
    }
}

impl fmt::Display for KeySchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeySchema::Native => "native",
            KeySchema::Hertz => "hertz",
        })
    }
}

/// The default key prefix of the native schema.
pub const DEFAULT_PREFIX: &str = "sd";

/// A schema with its prefix: computes key names and runs the scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keyspace {
    schema: KeySchema,
    prefix: String,
    /// The reader's allow-list (empty: the fixed rules alone).
    allow: AllowList,
}

/// One entry as stored, before decoding.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    /// The hash field (the address it was registered under).
    pub field: String,
    /// The stored value, if the hash still has one.
    pub value: Option<Vec<u8>>,
    /// The operator's override of the instance as stored, if any (native
    /// schema).
    pub override_value: Option<Vec<u8>>,
    /// Time left on the lease (native), or on the whole hash (Hertz).
    pub lease_left: Option<Duration>,
}

/// What one read of a service found.
#[derive(Debug, Clone)]
pub(crate) struct ReadReply {
    /// The live entries.
    pub entries: Vec<RawEntry>,
    /// Whether the service's keys exist (native: its leases key), which
    /// tells a registry that lost them (`FLUSHALL`, restart, failover)
    /// once a read found them before. `None`: the schema cannot tell
    /// (Hertz).
    pub keys_exist: Option<bool>,
}

/// What a register or heartbeat changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upserted {
    /// The entry was already there, unchanged.
    Renewed,
    /// The entry was new (first registration, or lost and re-created).
    Created,
    /// The entry existed with another value.
    Updated,
}

impl Upserted {
    /// The scripts' return codes: 1 created, 2 updated, else renewed.
    fn from_code(code: i64) -> Self {
        match code {
            1 => Upserted::Created,
            2 => Upserted::Updated,
            _ => Upserted::Renewed,
        }
    }

    /// A script's codes, one per entry written: any other count is an
    /// error (a proxy or a script of another version answered).
    fn from_codes(codes: Vec<i64>, entries: usize) -> redis::RedisResult<Vec<Self>> {
        if codes.len() != entries {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the upsert script answered another number of codes than entries written",
                format!("{} codes for {entries} entries", codes.len()),
            )));
        }
        Ok(codes.into_iter().map(Self::from_code).collect())
    }
}

/// The most instances one upsert script call writes: the registry splits
/// a bigger service into several calls, so one call stays short (Redis
/// runs nothing else meanwhile).
pub(crate) const UPSERT_BATCH: usize = 1000;

impl Keyspace {
    pub(crate) fn new(schema: KeySchema, prefix: &str) -> Result<Self, ValidationError> {
        validate_prefix(prefix)?;
        Ok(Keyspace {
            schema,
            prefix: prefix.to_owned(),
            allow: AllowList::default(),
        })
    }

    /// Entries outside `allow` are refused when decoded.
    pub(crate) fn with_allow_list(mut self, allow: AllowList) -> Self {
        self.allow = allow;
        self
    }

    pub(crate) fn schema(&self) -> KeySchema {
        self.schema
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pub/sub channel of a service's change events (native only).
    pub(crate) fn events_channel(&self, service: &str) -> Option<String> {
        match self.schema {
            KeySchema::Native => Some(native::events(&self.prefix, service)),
            KeySchema::Hertz => None,
        }
    }

    /// The stored form of an instance in this schema.
    pub(crate) fn encode(
        &self,
        service: &ServiceName,
        instance: &Instance,
    ) -> Result<String, ValidationError> {
        match self.schema {
            KeySchema::Native => instance.to_json(service),
            // Hertz reads weights <= 0 as 10: a "drained" entry would get traffic.
            KeySchema::Hertz if instance.weight() == 0 => Err(ValidationError::Config(format!(
                "weight 0 cannot drain {} in the Hertz schema: Hertz reads weights of 0 or less as 10; deregister the instance instead",
                instance.addr()
            ))),
            KeySchema::Hertz => instance.to_hertz_json(service),
        }
    }

    /// The service whose events channel is `channel` (the inverse of
    /// [`events_channel`](Self::events_channel)).
    pub(crate) fn service_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        match self.schema {
            KeySchema::Native => native::service_of_events(&self.prefix, channel),
            KeySchema::Hertz => None,
        }
    }

    /// Writes (or renews) `entries` (address, stored JSON) of one service
    /// in one script call, atomically. Idempotent. Returns one outcome per
    /// entry, in order. The services index is written apart
    /// ([`index`](Self::index)).
    pub(crate) async fn upsert(
        &self,
        conn: &mut Connection,
        service: &ServiceName,
        entries: &[(&str, &str)],
        ttl: Duration,
    ) -> redis::RedisResult<Vec<Upserted>> {
        debug_assert!(entries.len() <= UPSERT_BATCH);
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let codes = match self.schema {
            KeySchema::Native => native::upsert(conn, &self.prefix, service, entries, ttl).await,
            KeySchema::Hertz => hertz::upsert(conn, service, entries, ttl).await,
        }?;
        Upserted::from_codes(codes, entries.len())
    }

    /// Adds service names to the services index (native: `SADD
    /// PREFIX:services`, chunked; Hertz keeps no index). It lives in
    /// another cluster slot than the services' keys, so it is sent apart.
    pub(crate) async fn index(&self, conn: &Connection, names: &[&str]) -> redis::RedisResult<()> {
        match self.schema {
            KeySchema::Native => native::index(conn, &self.prefix, names).await,
            KeySchema::Hertz => Ok(()),
        }
    }

    /// Removes one instance. Returns whether it was there.
    pub(crate) async fn remove(
        &self,
        conn: &mut Connection,
        service: &ServiceName,
        addr: &str,
    ) -> redis::RedisResult<bool> {
        match self.schema {
            KeySchema::Native => native::remove(conn, &self.prefix, service, addr).await,
            KeySchema::Hertz => hertz::remove(conn, service, addr).await,
        }
    }

    /// Reads the live entries of a service in one round trip, writing
    /// nothing.
    pub(crate) async fn read(
        &self,
        conn: &mut Connection,
        service: &ServiceName,
    ) -> redis::RedisResult<ReadReply> {
        match self.schema {
            KeySchema::Native => native::read(conn, &self.prefix, service).await,
            KeySchema::Hertz => hertz::read(conn, service).await,
        }
    }

    /// Decodes one stored entry by the schema's rules and the address
    /// policy: its fixed rules and the allow-list.
    pub(crate) fn decode(&self, entry: &RawEntry) -> Result<Instance, EntryError> {
        let instance = self.decode_value(entry)?;
        match self.allow.check(&instance) {
            Ok(()) => Ok(instance),
            Err(reason) => Err(EntryError::Refused {
                addr: instance.addr().to_owned(),
                reason,
            }),
        }
    }

    fn decode_value(&self, entry: &RawEntry) -> Result<Instance, EntryError> {
        let value = entry.value.as_deref().ok_or(EntryError::Missing("value"))?;
        match self.schema {
            KeySchema::Native => {
                let instance = Instance::from_json(value)?;
                if instance.addr() != entry.field {
                    return Err(EntryError::Json(format!(
                        "field `addr` {:?} differs from the hash field {:?}",
                        instance.addr(),
                        entry.field
                    )));
                }
                Ok(instance)
            }
            // Hertz takes the address from the JSON, not the field.
            KeySchema::Hertz => Instance::from_hertz_json(value),
        }
    }

    /// The names of known services, sorted.
    pub(crate) async fn services(&self, conn: &mut Connection) -> redis::RedisResult<Vec<String>> {
        let mut names: Vec<String> = match self.schema {
            KeySchema::Native => native::services(conn, &self.prefix).await?,
            KeySchema::Hertz => hertz::services(conn).await?,
        };
        // A SCAN may return a key twice (and more so if a failover moved
        // the connection between its pages).
        names.sort();
        names.dedup();
        Ok(names)
    }
}

fn validate_prefix(prefix: &str) -> Result<(), ValidationError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Config(format!(
            "key prefix {prefix:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ - : /"
        )))
    }
}

#[cfg(test)]
mod tests;
