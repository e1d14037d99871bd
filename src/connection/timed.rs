//! Bounding a Redis call in time: the helper the crate's timed Redis calls
//! go through, whatever error their caller reports. One exception: the
//! Sentinel lookup (`endpoint.rs`) calls `tokio::time::timeout` itself, as
//! going through here overflowed rustc's query depth building the CLI.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long a Redis call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallLimit {
    /// This long from the call's first poll.
    After(Duration),
    /// Until a deadline several calls share (a heartbeat round); `limit`,
    /// the whole span of that deadline, is what a timeout reports.
    Until { deadline: Instant, limit: Duration },
}

impl CallLimit {
    /// One deadline, `limit` from now, for the calls made until then.
    pub(crate) fn deadline_in(limit: Duration) -> Self {
        CallLimit::Until {
            deadline: crate::time::after(limit),
            limit,
        }
    }
}

impl From<Duration> for CallLimit {
    fn from(limit: Duration) -> Self {
        CallLimit::After(limit)
    }
}

/// Why a call run by [`timed`] failed. `label` is the caller's name for the
/// call (a service, a command), for its own error.
#[derive(Debug)]
pub(crate) enum CallError<L> {
    /// Redis answered with an error, or the connection failed.
    Redis { label: L, source: redis::RedisError },
    /// No answer within `limit`.
    TimedOut { label: L, limit: Duration },
}

/// `call`, failing with [`CallError::TimedOut`] once `limit` is up. Past a
/// deadline already, `call` is not polled, so it sends nothing: calls still
/// queued behind a hung Redis are not piled onto it.
pub(crate) async fn timed<T, L>(
    limit: impl Into<CallLimit>,
    label: L,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, CallError<L>> {
    // Resolved here, at the first poll, not when the future was made.
    let (deadline, limit) = match limit.into() {
        CallLimit::After(limit) => (crate::time::after(limit), limit),
        CallLimit::Until { deadline, limit } => (deadline, limit),
    };
    if Instant::now() >= deadline {
        return Err(CallError::TimedOut { label, limit });
    }
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(CallError::Redis { label, source }),
        Err(_) => Err(CallError::TimedOut { label, limit }),
    }
}

/// For the connection's own calls, whose errors are Redis errors: a timeout
/// becomes a timed-out I/O error reading "`label` after 4s".
impl<L: fmt::Display> From<CallError<L>> for redis::RedisError {
    fn from(error: CallError<L>) -> Self {
        match error {
            CallError::Redis { source, .. } => source,
            CallError::TimedOut { label, limit } => redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{label} after {limit:?}"),
            )),
        }
    }
}
