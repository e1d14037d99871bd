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
    pub fn new(source: &'static str) -> Self {
        LuaScript {
            source,
            hash: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// Runs a script that writes.
    pub async fn run<T: FromRedisValue>(
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
    /// A server without it (Redis < 7, or renamed away) answers `ERR`, as
    /// a failing script also does. So on `ERR` the plain `EVALSHA` is
    /// tried: if that works, the connection's server is remembered as one
    /// without read-only scripts (only that server: another in the same
    /// process, e.g. a Redis 7 with a read-only user, keeps `EVALSHA_RO`);
    /// if not, the first error stands. The script only reads, so running
    /// it twice does no harm.
    pub async fn run_read_only<T: FromRedisValue>(
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
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) => {
                match self.invoke(keys, args, conn, false).await {
                    Ok(value) => {
                        server.refused();
                        tracing::debug!(error = %e, "the server refuses EVALSHA_RO: its read-only scripts use EVALSHA");
                        Ok(value)
                    }
                    Err(_) => Err(e),
                }
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

/// An object-safe script argument, so one call can mix strings and numbers.
pub(crate) trait ScriptArg: Sync {
    fn push_to(&self, cmd: &mut Cmd);
}

impl<T: ToRedisArgs + Sync> ScriptArg for T {
    fn push_to(&self, cmd: &mut Cmd) {
        cmd.arg(self);
    }
}
