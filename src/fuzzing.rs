//! Entry points for the fuzz targets in `fuzz/`, to the parsers that are
//! not public. Compiled only with `--cfg fuzzing` (which `cargo fuzz`
//! passes), so the public API is unchanged.

use crate::connection::{redact, Endpoint};
use crate::error::ValidationError;
use crate::instance::{EntryError, Instance};
use crate::schema::{KeySchema, Keyspace, RawEntry, DEFAULT_PREFIX};

/// A Redis URL as the registry and resolver builders parse it.
#[derive(Debug)]
pub struct RedisUrl {
    /// The endpoint's `Debug` form.
    pub debug: String,
    /// Every password it holds (Redis nodes, Sentinels), decoded.
    pub passwords: Vec<String>,
}

/// Parses a Redis URL (plain, Sentinel or Cluster) without connecting.
pub fn parse_redis_url(url: &str) -> Result<RedisUrl, ValidationError> {
    let endpoint = Endpoint::parse(url)?;
    Ok(RedisUrl {
        debug: format!("{endpoint:?}"),
        passwords: endpoint.passwords(),
    })
}

/// The URL as errors and logs show it.
pub fn redact_redis_url(url: &str) -> String {
    redact(url)
}

/// Decodes a hash entry (field and value) read from Redis, as the resolver
/// does in `schema`.
pub fn decode_entry(schema: KeySchema, field: &str, value: &[u8]) -> Result<Instance, EntryError> {
    let keyspace = Keyspace::new(schema, DEFAULT_PREFIX).map_err(EntryError::Invalid)?;
    keyspace.decode(&RawEntry {
        field: field.to_owned(),
        value: Some(value.to_vec()),
        override_value: None,
        lease_left: None,
    })
}

/// The service whose events channel (native schema, `prefix`) is
/// `channel`, as the resolver reads pub/sub messages; `None` also for an
/// invalid prefix.
pub fn service_of_channel(prefix: &str, channel: &str) -> Option<String> {
    let keyspace = Keyspace::new(KeySchema::Native, prefix).ok()?;
    keyspace.service_of_channel(channel).map(str::to_owned)
}

/// The events channel of `service` (native schema, `prefix`).
pub fn events_channel(prefix: &str, service: &str) -> Option<String> {
    Keyspace::new(KeySchema::Native, prefix)
        .ok()?
        .events_channel(service)
}
