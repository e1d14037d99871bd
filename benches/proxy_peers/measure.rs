//! What `benches/proxy_peers.rs` measures: a `wrk` run (its report
//! parsed) and CPU time from `/proc`.

use std::fs;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::BoxError;

/// `wrk`'s threads: one per core of the 2-core machine.
pub const WRK_THREADS: usize = 2;

/// What `wrk` reported about one run.
#[derive(Clone, Debug, Default)]
pub struct WrkReport {
    /// Responses received (any status).
    pub requests: u64,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Responses that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

/// Runs `wrk` against `addr` with `Host: SERVICE` and parses its report.
pub fn wrk(
    addr: SocketAddr,
    service: &str,
    connections: usize,
    run: Duration,
) -> Result<WrkReport, BoxError> {
    let output = Command::new("wrk")
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", run.as_secs().max(1)))
        .arg("--latency")
        .args(["-H", &format!("Host: {service}")])
        .arg(format!("http://{addr}/"))
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's report:\n{text}").into())
}

/// The figures of a `wrk --latency` report.
fn parse_wrk(text: &str) -> Option<WrkReport> {
    let mut report = WrkReport::default();
    let (mut p50, mut p99, mut rate, mut count) = (None, None, None, None);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50 = duration(value),
            ["99%", value] => p99 = duration(value),
            ["Requests/sec:", value] => rate = value.parse().ok(),
            [n, "requests", "in", ..] => count = n.parse().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => report.non_2xx = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                report.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    report.p50 = p50?;
    report.p99 = p99?;
    report.per_second = rate?;
    report.requests = count?;
    Some(report)
}

/// `wrk`'s `1.23ms`, `456.00us`, `1.02s`, `2.00m`.
fn duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// CPU time, user and system apart.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: Duration,
    pub system: Duration,
}

impl Cpu {
    pub fn total(self) -> Duration {
        self.user + self.system
    }

    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// CPU time `pid` has used, or zero if it is gone.
pub fn cpu(pid: u32) -> Cpu {
    let Some(fields) = stat_fields(pid) else {
        return Cpu::default();
    };
    // After the name: state (3) … utime (14), stime (15).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(Duration::ZERO, ticks_to_duration)
    };
    Cpu {
        user: ticks(11),
        system: ticks(12),
    }
}

/// CPU time of these processes together.
pub fn cpu_of(pids: &[u32]) -> Cpu {
    pids.iter()
        .map(|&pid| cpu(pid))
        .fold(Cpu::default(), |a, b| Cpu {
            user: a.user + b.user,
            system: a.system + b.system,
        })
}

/// CPU time of every core together, busy (not idle, not waiting for I/O),
/// since boot: the whole machine's load, other users' included.
pub fn machine_busy() -> Duration {
    let Ok(stat) = fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let Some(line) = stat.lines().next() else {
        return Duration::ZERO;
    };
    // cpu user nice system idle iowait irq softirq steal …
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|w| w.parse().ok())
        .collect();
    let busy = ticks
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 3 && i != 4)
        .map(|(_, t)| t)
        .sum();
    ticks_to_duration(busy)
}

/// The processes whose parent is `pid` (nginx's workers).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            stat_fields(child)
                .and_then(|fields| fields.get(1)?.parse::<u32>().ok())
                .is_some_and(|parent| parent == pid)
        })
        .collect()
}

/// The cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The fields of `/proc/PID/stat` after the command name (which may hold
/// spaces and parentheses): state first.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}
