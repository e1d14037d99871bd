//! Running Lua scripts: `EVALSHA` first, `EVAL` on `NOSCRIPT` (the script
//! cache is lost on restart and failover), and the read-only variants where
//! the server has them.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::connection::Connection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, ToRedisArgs};

/// Set once a server answered that it has no `EVALSHA_RO` (Redis < 7);
/// from then on read-only scripts run with plain `EVALSHA`.
static NO_READ_ONLY_EVAL: AtomicBool = AtomicBool::new(false);

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
    pub async fn run_read_only<T: FromRedisValue>(
        &self,
        keys: &[&str],
        args: &[&dyn ScriptArg],
        conn: &mut Connection,
    ) -> RedisResult<T> {
        if NO_READ_ONLY_EVAL.load(Ordering::Relaxed) {
            return self.invoke(keys, args, conn, false).await;
        }
        match self.invoke(keys, args, conn, true).await {
            Err(e) if is_unknown_read_only_command(&e) => {
                NO_READ_ONLY_EVAL.store(true, Ordering::Relaxed);
                tracing::debug!("server has no EVALSHA_RO; read-only scripts use EVALSHA");
                self.invoke(keys, args, conn, false).await
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

fn is_unknown_read_only_command(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("unknown command") && text.contains("_RO")
}
