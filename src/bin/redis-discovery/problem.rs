//! How every command reports a problem with Redis: one line, the same way.

use std::fmt::Display;

use redis_discovery::{redact_url, RegistryError, ResolveError};

use crate::{Error, Global};

/// How every command reports a problem with Redis (unreachable, silent,
/// refusing): one line naming it by its URL, password hidden.
fn redis_problem(g: &Global, detail: &dyn Display) -> Error {
    format!("Redis at {}: {detail}", redact_url(&g.redis)).into()
}

/// A resolver error: refused input as it is, anything else a Redis problem.
pub(crate) fn resolve_failed(g: &Global) -> impl Fn(ResolveError) -> Error + '_ {
    move |e| match e {
        ResolveError::Invalid(e) => e.into(),
        // It names the URL itself; say it once.
        ResolveError::Connect { source, .. } => redis_problem(g, &source),
        e => redis_problem(g, &e),
    }
}

/// A registry error: refused input as it is, anything else a Redis problem.
pub(crate) fn registry_failed(g: &Global) -> impl Fn(RegistryError) -> Error + '_ {
    move |e| match e {
        RegistryError::Invalid(e) => e.into(),
        RegistryError::Redis { source } => redis_problem(g, &source),
        // It names the URL itself; say it once.
        RegistryError::Connect { source, .. } => redis_problem(g, &source),
        e => redis_problem(g, &e),
    }
}
