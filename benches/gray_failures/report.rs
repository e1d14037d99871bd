//! What `benches/gray_failures.rs` counts and the tables it prints.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, up to an hour (far beyond any
/// bound of the bench; a longer one is clamped to it).
const LONGEST_US: u64 = 3_600_000_000;

/// What one or more runs saw.
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    /// Wall time of the runs (summed over merged runs).
    pub elapsed: Duration,
    /// The client thread's CPU time over the runs.
    pub cpu: Duration,
    /// Every request's latency, failed ones included.
    pub latency: Histogram<u64>,
    /// Requests each server read, in server order.
    pub served: Vec<u64>,
}

impl Tally {
    pub fn empty() -> Tally {
        Tally {
            requests: 0,
            ok: 0,
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, LONGEST_US, 3)
                .expect("constant bounds are valid"),
            served: Vec::new(),
        }
    }

    pub fn record(&mut self, latency: Duration, ok: bool) {
        self.requests += 1;
        self.ok += u64::from(ok);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.clamp(1, LONGEST_US));
    }

    pub fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        if self.served.len() < other.served.len() {
            self.served.resize(other.served.len(), 0);
        }
        for (sum, served) in self.served.iter_mut().zip(other.served) {
            *sum += served;
        }
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn cpu_per_request_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }

    fn quantile(&self, q: f64) -> String {
        micros(self.latency.value_at_quantile(q))
    }
}

/// Adds a run to the cell's total.
pub fn merge(total: &mut Option<Tally>, run: Tally) {
    match total {
        Some(total) => total.add(run),
        None => *total = Some(run),
    }
}

/// The calling thread's CPU time (user and system), or zero if the clock
/// cannot be read.
pub fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the whole call.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if read != 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// The table of scenarios × balancers.
pub fn scenario_table<'a>(cells: impl Iterator<Item = (&'a str, &'a str, &'a Tally)>) {
    println!(
        "| scenario | balancer | req/s | success | failed | p50 | p99 | p99.9 | max \
         | share s1 (faulty) / s2 / s3 | attempts/req |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (scenario, balancer, tally) in cells {
        let reads: u64 = tally.served.iter().sum();
        let shares: Vec<String> = tally
            .served
            .iter()
            .map(|&n| format!("{:.1}", percent(n, reads)))
            .collect();
        println!(
            "| {scenario} | {balancer} | {:.0} | {:.2} % | {} | {} | {} | {} | {} | {} % | {:.3} |",
            tally.per_second(),
            percent(tally.ok, tally.requests),
            tally.requests - tally.ok,
            tally.quantile(0.5),
            tally.quantile(0.99),
            tally.quantile(0.999),
            micros(tally.latency.max()),
            shares.join(" / "),
            reads as f64 / tally.requests.max(1) as f64,
        );
    }
}

/// The overhead section: one row per round (bare, layered), then the total.
pub fn overhead_table(rounds: &[(Tally, Tally)]) {
    println!("\nOverhead: the bare hyper-util client vs the same client behind DiscoveryLayer");
    println!("(default options), one healthy server, alternating. CPU: the client thread's");
    println!("CPU time (CLOCK_THREAD_CPUTIME_ID; the servers run on other threads).\n");
    println!(
        "| round | bare req/s | layer req/s | throughput ratio | bare CPU/req | layer CPU/req \
         | +CPU/req | bare p50 / p99 | layer p50 / p99 |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut bare_total = Tally::empty();
    let mut layer_total = Tally::empty();
    let row = |name: String, bare: &Tally, layer: &Tally| {
        let (bare_cpu, layer_cpu) = (bare.cpu_per_request_us(), layer.cpu_per_request_us());
        println!(
            "| {name} | {:.0} | {:.0} | {:.3}x | {bare_cpu:.2} µs | {layer_cpu:.2} µs \
             | {:+.2} µs | {} / {} | {} / {} |",
            bare.per_second(),
            layer.per_second(),
            layer.per_second() / bare.per_second().max(1e-9),
            layer_cpu - bare_cpu,
            bare.quantile(0.5),
            bare.quantile(0.99),
            layer.quantile(0.5),
            layer.quantile(0.99),
        );
    };
    for (round, (bare, layer)) in rounds.iter().enumerate() {
        row(round.to_string(), bare, layer);
    }
    for (bare, layer) in rounds {
        bare_total.add(clone(bare));
        layer_total.add(clone(layer));
    }
    row("all".into(), &bare_total, &layer_total);
    println!("\ntargets (#14): throughput ratio >= 0.97x, +CPU/req <= +0.5 µs");
}

fn clone(tally: &Tally) -> Tally {
    Tally {
        requests: tally.requests,
        ok: tally.ok,
        elapsed: tally.elapsed,
        cpu: tally.cpu,
        latency: tally.latency.clone(),
        served: tally.served.clone(),
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole.max(1) as f64
}

/// A latency in microseconds, in the unit that reads best.
fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}
