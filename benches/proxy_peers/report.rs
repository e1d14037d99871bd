//! The tables `benches/proxy_peers.rs` prints: every run, then medians
//! over the rounds and ratios against nginx's runs of the same rounds.

use std::time::Duration;

use super::measure::{Cpu, WrkReport};

/// One `wrk` run against one contender.
#[derive(Clone, Debug)]
pub struct Run {
    pub wrk: WrkReport,
    /// The contender's CPU time over the run.
    pub cpu: Cpu,
    /// `wrk`'s CPU time.
    pub wrk_cpu: Duration,
    /// This process's CPU time: the upstream servers.
    pub upstreams_cpu: Duration,
    /// The whole machine's busy CPU time.
    pub machine_cpu: Duration,
    pub wall: Duration,
    /// Requests each upstream read, in upstream order.
    pub served: Vec<u64>,
}

impl Run {
    /// The contender's CPU time per response, in microseconds.
    pub fn cpu_per_request_us(&self) -> f64 {
        per_request_us(self.cpu.total(), self.wrk.requests)
    }

    /// The user-space part of it.
    pub fn user_per_request_us(&self) -> f64 {
        per_request_us(self.cpu.user, self.wrk.requests)
    }

    /// Each upstream's share of the requests, in percent.
    pub fn shares(&self) -> Vec<f64> {
        let total: u64 = self.served.iter().sum();
        self.served
            .iter()
            .map(|&n| 100.0 * n as f64 / total.max(1) as f64)
            .collect()
    }

    /// Cores busy with other work than this bench's processes (other
    /// users of the shared machine, the kernel's own).
    pub fn others_cores(&self) -> f64 {
        let ours = self.cpu.total() + self.wrk_cpu + self.upstreams_cpu;
        self.machine_cpu.saturating_sub(ours).as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    fn errors(&self) -> u64 {
        self.wrk.non_2xx + self.wrk.socket_errors
    }
}

/// One line per run, as they come.
pub fn run_line(round: usize, name: &str, run: &Run) {
    println!(
        "round {round:>2}  {name:<22} {:>9.0} req/s  p50 {:>8}  p99 {:>8}  {:>5.1} µs CPU/req \
         ({:>4.1} user)  \
         shares {}  errors {}  CPU: contender {:.2}, wrk {:.2}, upstreams {:.2}, others {:.2} cores",
        run.wrk.per_second,
        ms(run.wrk.p50),
        ms(run.wrk.p99),
        run.cpu_per_request_us(),
        run.user_per_request_us(),
        shares(&run.shares()),
        run.errors(),
        cores(run.cpu.total(), run.wall),
        cores(run.wrk_cpu, run.wall),
        cores(run.upstreams_cpu, run.wall),
        run.others_cores(),
    );
}

/// The summary, a Markdown table: medians over rounds; ratios are the
/// median of each round's ratio against that round's baseline run (nginx,
/// measured in the same conditions), so drift between rounds cancels.
/// `runs[contender][round]`.
pub fn summary(names: &[&str], runs: &[Vec<Run>], weights: &[u32], baseline: Option<usize>) {
    let total: u32 = weights.iter().sum();
    let expected: Vec<f64> = weights
        .iter()
        .map(|&w| 100.0 * f64::from(w) / f64::from(total.max(1)))
        .collect();
    println!(
        "\nMedians over {} rounds; × nginx: the median of the per-round ratios. \
         Expected shares {}.\n",
        runs.first().map_or(0, Vec::len),
        shares(&expected)
    );
    println!(
        "| contender | req/s | × nginx | p50 | p99 | p99 × nginx | CPU µs/req | × nginx | of it user | shares | errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    let base = baseline.and_then(|b| runs.get(b));
    for (name, runs) in names.iter().zip(runs) {
        let ratio = |f: fn(&Run) -> f64| match base {
            Some(base) => format!(
                "{:.2}×",
                median(runs.iter().zip(base).map(|(r, b)| f(r) / f(b)))
            ),
            None => "–".to_owned(),
        };
        let shares_median: Vec<f64> = (0..weights.len())
            .map(|i| {
                median(
                    runs.iter()
                        .map(|r| r.shares().get(i).copied().unwrap_or(0.0)),
                )
            })
            .collect();
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} | {:.1} | {} | {:.1} | {} | {} |",
            median(runs.iter().map(|r| r.wrk.per_second)),
            ratio(|r| r.wrk.per_second),
            ms(seconds(median(
                runs.iter().map(|r| r.wrk.p50.as_secs_f64())
            ))),
            ms(seconds(median(
                runs.iter().map(|r| r.wrk.p99.as_secs_f64())
            ))),
            ratio(|r| r.wrk.p99.as_secs_f64()),
            median(runs.iter().map(Run::cpu_per_request_us)),
            ratio(Run::cpu_per_request_us),
            median(runs.iter().map(Run::user_per_request_us)),
            shares(&shares_median),
            runs.iter().map(Run::errors).sum::<u64>(),
        );
    }
}

/// The median (the mean of the middle two for an even count); 0 if empty.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn per_request_us(cpu: Duration, requests: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn cores(cpu: Duration, wall: Duration) -> f64 {
    cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

fn shares(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect::<Vec<_>>()
        .join(" / ")
        + " %"
}
