//! [`RedisFailure`]: the Redis client library's error, behind a type of
//! the crate's own.

use std::fmt;

/// A failure reported by Redis or by the connection to it, inside
/// [`RegistryError`](super::RegistryError) and [`ResolveError`](super::ResolveError).
///
/// Opaque, so that the crate's API does not depend on the Redis client
/// library's version; it tells what callers act on: the server's error
/// code, whether the connection failed or timed out, and the message.
/// `Display` is the client library's text, which never shows a password.
///
/// ```
/// use redis_discovery::{RedisFailure, ResolveError};
///
/// /// What to tell an operator about a failed read.
/// fn advice(failure: &RedisFailure) -> &'static str {
///     match failure.code() {
///         Some("NOPERM") => "grant the resolver's user the read commands",
///         Some("LOADING") => "Redis is loading its data: retry soon",
///         _ if failure.is_connection_failure() => "check that Redis is up",
///         _ if failure.is_timeout() => "Redis is slow: check its load",
///         _ => "see the message",
///     }
/// }
///
/// fn report(error: &ResolveError) -> Option<&'static str> {
///     match error {
///         ResolveError::Redis { source, .. } | ResolveError::Connect { source, .. } => {
///             Some(advice(source))
///         }
///         _ => None,
///     }
/// }
/// assert_eq!(report(&ResolveError::Shutdown), None);
/// ```
#[derive(Clone)]
pub struct RedisFailure(redis::RedisError);

impl RedisFailure {
    /// Wraps a client library error; crate-private, so that no public
    /// signature names the library's type.
    pub(crate) fn new(error: redis::RedisError) -> Self {
        RedisFailure(error)
    }

    /// The error code Redis answered with, e.g. `"NOPERM"`, `"NOSCRIPT"`,
    /// `"READONLY"`; `None` if the failure is not an error reply.
    pub fn code(&self) -> Option<&str> {
        self.0.code()
    }

    /// The message that came with the failure, without its code (the
    /// server's text after `NOPERM`, or the detail of a client-side
    /// failure); `None` if there is none. The `Display` form is the whole
    /// text.
    pub fn message(&self) -> Option<&str> {
        self.0.detail()
    }

    /// Whether Redis did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.0.is_timeout()
    }

    /// Whether the connection failed (it was refused, dropped or broke
    /// at the I/O level) rather than Redis answering with an error. A
    /// timeout is [`is_timeout`](Self::is_timeout), not this.
    pub fn is_connection_failure(&self) -> bool {
        crate::connection::broke(&self.0)
    }
}

impl fmt::Debug for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisFailure").field(&self.0).finish()
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

// Transparent, as its `Display` is the wrapped error's: the chain goes on
// with what that error wraps (an I/O error, a server reply), which says
// something new, rather than repeating the same text.
impl std::error::Error for RedisFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;
    use crate::error::RegistryError;

    fn io_failure(kind: io::ErrorKind) -> RedisFailure {
        RedisFailure::new(redis::RedisError::from(io::Error::from(kind)))
    }

    #[test]
    fn a_failure_tells_connection_from_timeout_from_reply() {
        let refused = io_failure(io::ErrorKind::ConnectionRefused);
        assert!(refused.is_connection_failure() && !refused.is_timeout());
        assert_eq!(refused.code(), None);
        let timed_out = io_failure(io::ErrorKind::TimedOut);
        assert!(timed_out.is_timeout() && !timed_out.is_connection_failure());

        let denied = RedisFailure::new(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm),
            "no permissions",
            "this user has no permissions to run the 'evalsha_ro' command".to_owned(),
        )));
        assert_eq!(denied.code(), Some("NOPERM"));
        assert_eq!(
            denied.message(),
            Some("this user has no permissions to run the 'evalsha_ro' command")
        );
        assert!(!denied.is_connection_failure() && !denied.is_timeout());
    }

    #[test]
    fn a_failure_shows_the_wrapped_text_once() {
        let inner = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        let failure = RedisFailure::new(inner.clone());
        assert_eq!(failure.to_string(), inner.to_string());
        assert_eq!(format!("{failure:?}"), format!("RedisFailure({inner:?})"));
        // The chain goes on with what the wrapped error wraps, not with
        // the wrapped error itself (the same text again).
        let next = failure.source().map(ToString::to_string);
        assert_eq!(next, inner.source().map(ToString::to_string));

        let error = RegistryError::Redis { source: failure };
        assert_eq!(error.to_string(), format!("redis error: {inner}"));
        assert!(error.clone().source().is_some());
    }
}
