//! Running Lua scripts: `EVALSHA` first, `EVAL` on `NOSCRIPT` (the script
//! cache is lost on restart and failover), and the read-only variants where
//! the server has them (decided per server: see [`LuaScript::run_read_only`]).

use crate::connection::Connection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, ToRedisArgs};

/// A Lua script with its SHA1, computed once.
pub(crate) struct LuaScript {
    source: &'static str,
    hash: String,
}

impl LuaScript {
    pub(super) fn new(source: &'static str) -> Self {
        LuaScript {
            source,
            hash: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// Runs a script that writes.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        keys: &[&str],
        args: &[&dyn ScriptArg],
        conn: &mut Connection,
    ) -> RedisResult<T> {
        self.invoke(keys, args, conn, false).await
    }

    /// Runs a script that only reads with `EVALSHA_RO`, so it works with a
    /// read-only ACL user and on replicas.
    ///
    /// A server without it (Redis < 7, or renamed away) answers that the
    /// command is unknown ([`is_unknown_read_only_command`]): then, and only
    /// then, the plain `EVALSHA` is tried, and if that works the
    /// connection's server is remembered as one without read-only scripts
    /// (only that server: another in the same process, e.g. a Redis 7 with
    /// a read-only user, keeps `EVALSHA_RO`). Any other error, `ERR` from a
    /// failing script included, is returned as it is: the script runs once
    /// and the server keeps `EVALSHA_RO`. "Server" here is one connection's:
    /// on a Cluster one Redis 6 node switches the whole cluster connection
    /// to `EVALSHA`, and the choice lasts as long as the connection (a
    /// server upgraded under it keeps being read with `EVALSHA`). A proxy
    /// that answers an unknown command in other words is not recognised:
    /// its error is returned.
    pub(super) async fn run_read_only<T: FromRedisValue>(
        &self,
        keys: &[&str],
        args: &[&dyn ScriptArg],
        conn: &mut Connection,
    ) -> RedisResult<T> {
        let server = conn.read_only_scripts();
        if !server.available() {
            return self.invoke(keys, args, conn, false).await;
        }
        match self.invoke(keys, args, conn, true).await {
            Err(e) if is_unknown_read_only_command(&e) => {
                let value = self.invoke(keys, args, conn, false).await?;
                server.refused();
                tracing::debug!(error = %e, "the server has no EVALSHA_RO: its read-only scripts use EVALSHA");
                Ok(value)
            }
            other => other,
        }
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        keys: &[&str],
        args: &[&dyn ScriptArg],
        conn: &mut Connection,
        read_only: bool,
    ) -> RedisResult<T> {
        let build = |by_hash: bool| {
            let (name, body) = match (by_hash, read_only) {
                (true, true) => ("EVALSHA_RO", self.hash.as_str()),
                (true, false) => ("EVALSHA", self.hash.as_str()),
                (false, true) => ("EVAL_RO", self.source),
                (false, false) => ("EVAL", self.source),
            };
            let mut cmd = redis::cmd(name);
            cmd.arg(body).arg(keys.len()).arg(keys);
            for a in args {
                a.push_to(&mut cmd);
            }
            cmd
        };
        match build(true).query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                build(false).query_async(conn).await
            }
            other => other,
        }
    }
}

/// Whether `error` says the server does not know `EVALSHA_RO` or
/// `EVAL_RO`. redis-rs has no error kind for an unknown command: Redis
/// answers `ERR unknown command 'NAME', with args beginning with: …`
/// (backquotes before Redis 7), so this is an `ERR` whose detail starts
/// with `unknown command` and names a `_RO` command. Nothing else
/// (a failing script's `ERR` included) counts.
fn is_unknown_read_only_command(error: &redis::RedisError) -> bool {
    if error.kind() != ErrorKind::Server(ServerErrorKind::ResponseError) {
        return false;
    }
    let Some(detail) = error.detail() else {
        return false;
    };
    let Some(rest) = detail.strip_prefix("unknown command ") else {
        return false;
    };
    // The quoted name, up to the first comma.
    let name = rest.split(',').next().unwrap_or_default();
    let name = name.trim_matches(|c| c == '\'' || c == '`');
    name.eq_ignore_ascii_case("EVALSHA_RO") || name.eq_ignore_ascii_case("EVAL_RO")
}

/// A script's arguments: `head`, then the address and JSON of each of
/// `entries` (the upsert scripts of both schemas take them so).
pub(crate) fn with_entries<'a>(
    head: &[&'a dyn ScriptArg],
    entries: &'a [(&str, &str)],
) -> Vec<&'a dyn ScriptArg> {
    let mut args = Vec::with_capacity(head.len() + 2 * entries.len());
    args.extend_from_slice(head);
    for (addr, json) in entries {
        args.push(addr);
        args.push(json);
    }
    args
}

/// An object-safe script argument, so one call can mix strings and numbers.
pub(crate) trait ScriptArg: Sync {
    fn push_to(&self, cmd: &mut Cmd);
}

impl<T: ToRedisArgs + Sync> ScriptArg for T {
    fn push_to(&self, cmd: &mut Cmd) {
        cmd.arg(self);
    }
}

#[cfg(test)]
mod tests {
    use super::is_unknown_read_only_command;

    /// The error redis-rs makes of a server's error reply.
    fn reply(line: &str) -> redis::RedisError {
        let value = redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
        value.extract_error().unwrap_err()
    }

    #[test]
    fn only_an_unknown_read_only_command_means_no_read_only_scripts() {
        for unknown in [
            "ERR unknown command 'EVALSHA_RO', with args beginning with: 'abc' '2' ",
            "ERR unknown command `EVALSHA_RO`, with args beginning with: `abc`, `2`, ",
            "ERR unknown command 'evalsha_ro', with args beginning with: ",
            "ERR unknown command 'EVAL_RO', with args beginning with: ",
        ] {
            assert!(is_unknown_read_only_command(&reply(unknown)), "{unknown}");
        }
        for other in [
            // A failing script: once must not switch the server to EVALSHA.
            "ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: abc, on @user_script:1.",
            "ERR value is not an integer or out of range script: abc, on @user_script:1.",
            "ERR unknown command 'FOO', with args beginning with: ",
            "ERR Error running script, unknown command 'EVALSHA_RO'",
            "NOPERM User reader has no permissions to run the 'evalsha_ro' command",
            "NOSCRIPT No matching script. Please use EVAL.",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ] {
            assert!(!is_unknown_read_only_command(&reply(other)), "{other}");
        }
    }
}
