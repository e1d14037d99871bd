//! Redis faults for recovery tests, and how the private server looks
//! afterwards (native schema, prefix `sd`). The blocking parts run on
//! tokio's blocking pool, so the test's runtime keeps serving its load.

use std::time::{Duration, Instant};

use super::{connect, RedisServer, DEADLINE};

/// How often [`entries_back`] and [`subscribed`] look.
const POLL: Duration = Duration::from_millis(10);

/// Kills `server` (as a crash would), leaves it down for `down` (a timed
/// outage, not a wait for anything), restarts it empty on the same port
/// and returns it once it answers `PING`, with that moment: from then on
/// Redis accepts connections.
pub async fn crash_and_restart(server: RedisServer, down: Duration) -> (RedisServer, Instant) {
    let restarted = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop();
        std::thread::sleep(down);
        server.restart();
        let up = Instant::now();
        (server, up)
    })
    .await;
    match restarted {
        Ok(restarted) => restarted,
        Err(e) => panic!("restarting redis-server failed: {e}"),
    }
}

/// Waits until the native keys of `service` on the server at `url` hold
/// `n` entries, each with a lease, and returns how long after `since`
/// that was first seen (looking every 10 ms).
pub async fn entries_back(url: &str, service: &str, n: usize, since: Instant) -> Duration {
    let instances = format!("sd:{{{service}}}:instances");
    let leases = format!("sd:{{{service}}}:leases");
    let what = format!("{n} entries of {service} (entries, leases)");
    poll(url, what, since, move |conn| {
        let counts: (usize, usize) = redis::pipe()
            .cmd("HLEN")
            .arg(&instances)
            .cmd("ZCARD")
            .arg(&leases)
            .query(conn)?;
        Ok((counts.0 >= n && counts.1 >= n, format!("{counts:?}")))
    })
    .await
}

/// Waits until a client is subscribed to `channel` on the server at `url`
/// and returns how long after `since` that was first seen (looking every
/// 10 ms).
pub async fn subscribed(url: &str, channel: &str, since: Instant) -> Duration {
    let what = format!("a subscriber of {channel}");
    let channel = channel.to_owned();
    poll(url, what, since, move |conn| {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query(conn)?;
        Ok((n >= 1, format!("{n} subscribers")))
    })
    .await
}

/// Runs `check` every 10 ms over one connection until it says done;
/// returns how long after `since` that was. Panics after [`DEADLINE`]
/// with `what` and what `check` saw last.
async fn poll<F>(url: &str, what: String, since: Instant, mut check: F) -> Duration
where
    F: FnMut(&mut redis::Connection) -> redis::RedisResult<(bool, String)> + Send + 'static,
{
    let url = url.to_owned();
    let polled = tokio::task::spawn_blocking(move || {
        let mut conn = connect(&url);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let seen = since.elapsed();
            match check(&mut conn) {
                Ok((true, _)) => return seen,
                Ok((false, last)) if Instant::now() > deadline => {
                    panic!("no {what} after {seen:?}: saw {last}")
                }
                Ok(_) => {}
                Err(e) => panic!("looking for {what} failed: {e}"),
            }
            std::thread::sleep(POLL);
        }
    })
    .await;
    match polled {
        Ok(seen) => seen,
        Err(e) => panic!("{e}"),
    }
}
