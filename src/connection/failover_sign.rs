//! Reading a failed command's result for signs of a Sentinel failover,
//! and whether the command may be sent again to the new master.

use redis::{Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

/// What a failed command says about a failover.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sign {
    /// Nothing.
    None,
    /// The node is unreachable or was demoted, and the command did not run.
    NotRun,
    /// The connection broke or timed out: the command may have run.
    MaybeRan,
}

/// Commands this crate sends that only read, and whose answer does not
/// depend on the node they went to before (unlike `SCAN`'s cursor): they
/// may be sent again after a switch even if the first try may have run.
const READS: [&[u8]; 6] = [
    b"EVALSHA_RO",
    b"EVAL_RO",
    b"SMEMBERS",
    b"EXISTS",
    b"HGETALL",
    b"PTTL",
];

pub(super) fn only_reads(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => READS.iter().any(|r| r.eq_ignore_ascii_case(name)),
        _ => false,
    }
}

/// Whether to send a failed command again after a switch of master.
pub(super) fn resend(sign: Sign, reads: bool) -> bool {
    sign == Sign::NotRun || (sign == Sign::MaybeRan && reads)
}

/// What an error says about a failover.
fn error_sign(error: &RedisError) -> Sign {
    let kind = match error.kind() {
        ErrorKind::Server(kind) => Some(kind),
        _ => None,
    };
    if error.is_connection_refusal() || refused_by_failover(kind, error.detail()) {
        Sign::NotRun
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
        Sign::MaybeRan
    } else {
        Sign::None
    }
}

/// What a command's result says about a failover.
pub(super) fn command_sign(result: &RedisResult<Value>) -> Sign {
    match result {
        Ok(value) => reply_sign(value),
        Err(e) => error_sign(e),
    }
}

/// What a pipeline's result says about a failover: any refused command.
pub(super) fn pipeline_sign(result: &RedisResult<Vec<Value>>) -> Sign {
    match result {
        Ok(values) if values.iter().any(|v| reply_sign(v) == Sign::NotRun) => Sign::NotRun,
        Ok(_) => Sign::None,
        Err(e) => error_sign(e),
    }
}

/// A server's error reply is a value until the caller converts it.
fn reply_sign(value: &Value) -> Sign {
    match value {
        Value::ServerError(e) if refused_by_failover(e.kind(), e.details()) => Sign::NotRun,
        _ => Sign::None,
    }
}

/// Whether a server error (its kind and detail) says the node was demoted
/// or lost its master, so the command did not run.
fn refused_by_failover(kind: Option<ServerErrorKind>, detail: Option<&str>) -> bool {
    let kind = match kind {
        // Redis 6 reports the error a script's `redis.call` got inside a
        // generic one: `ERR Error running script (...): @user_script:1:
        // -READONLY You can't write...`. Read the inner code with the redis
        // crate's own parser.
        Some(ServerErrorKind::ResponseError) => detail.and_then(wrapped_error_kind),
        kind => kind,
    };
    matches!(
        kind,
        Some(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
    )
}

/// The kind of the error reply a Redis 6 script error wraps, if any.
fn wrapped_error_kind(detail: &str) -> Option<ServerErrorKind> {
    let (_, inner) = detail.rsplit_once(": -")?;
    let reply = format!("-{}\r\n", inner.trim_end());
    match redis::parse_redis_value(reply.as_bytes()) {
        Ok(Value::ServerError(e)) => e.kind(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_commands_are_resent() {
        let mut read = redis::cmd("EVALSHA_RO");
        read.arg("sha").arg(1).arg("key");
        let mut write = redis::cmd("EVALSHA");
        write.arg("sha").arg(1).arg("key");
        let mut scan = redis::cmd("SCAN");
        scan.arg(17);
        assert!(only_reads(&read) && only_reads(&redis::cmd("smembers")));
        assert!(!only_reads(&write) && !only_reads(&scan));
        // Not run: always resent; maybe run: only if it only reads.
        assert!(resend(Sign::NotRun, false));
        assert!(resend(Sign::MaybeRan, true));
        assert!(!resend(Sign::MaybeRan, false));
        assert!(!resend(Sign::None, true));
    }

    #[test]
    fn failover_signs() {
        let readonly = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert!(error_sign(&readonly) == Sign::NotRun);
        // Redis 6 wraps it in a script error.
        let wrapped = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "Error running script",
            "@user_script:1: -READONLY You can't write against a read only replica.".to_owned(),
        ));
        assert!(error_sign(&wrapped) == Sign::NotRun);
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(error_sign(&dropped) == Sign::MaybeRan);
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(error_sign(&refused) == Sign::NotRun);
        let other = RedisError::from((ErrorKind::Server(ServerErrorKind::NoScript), "NOSCRIPT"));
        assert!(error_sign(&other) == Sign::None);
        // Any other script error is just that.
        let script = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "Error running script",
            "@user_script:1: Script attempted to access a READONLY global".to_owned(),
        ));
        assert!(error_sign(&script) == Sign::None);
        assert_eq!(
            wrapped_error_kind(
                "(call to f_1): @user_script:1: @user_script: 1: -MASTERDOWN Link down "
            ),
            Some(ServerErrorKind::MasterDown)
        );
        assert_eq!(wrapped_error_kind("-READONLY"), None, "no wrapper");
    }
}
