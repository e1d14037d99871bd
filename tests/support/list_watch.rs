//! Watches what a resolver lists for one service, every 10 ms for a whole
//! test, from a thread of its own (`cached` is synchronous, and a thread
//! keeps sampling however busy the test's runtime is): the fewest
//! instances listed in each phase of the test, and every tracked address
//! that left the list after it had been listed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use redis_discovery::{RedisResolver, Resolve};

/// How often the list is looked at.
const EVERY: Duration = Duration::from_millis(10);

/// A running watch; [`finish`](Self::finish) stops it and reports.
pub struct ListWatch {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

struct State {
    phases: Vec<Phase>,
    tracked: HashMap<String, Tracked>,
    gaps: Vec<Gap>,
    samples: u64,
    last_sample: Option<Instant>,
    /// The longest time between two samples: how closely it really looked.
    longest_pause: Duration,
}

#[derive(Default)]
struct Tracked {
    listed: bool,
    /// When it left the list, and in which phase (index), if it is out.
    missing_since: Option<(Instant, usize)>,
}

/// The fewest instances listed during one phase of a test.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    /// What times in this phase are counted from: its start, or the
    /// moment Redis answered again ([`ListWatch::redis_up`]).
    origin: Instant,
    origin_name: &'static str,
    /// The fewest listed, and when (in ms since the origin; negative:
    /// before it).
    pub min: Option<(usize, i128)>,
    pub samples: u64,
}

/// A tracked address missing from the list after it had been listed.
#[derive(Debug, Clone)]
pub struct Gap {
    pub addr: String,
    pub phase: String,
    /// When it left, in ms since its phase's origin.
    pub left_at: i128,
    /// How long it was missing; `None`: still missing at the end.
    pub lasted: Option<Duration>,
}

/// What a [`ListWatch`] saw.
#[derive(Debug, Clone)]
pub struct ListReport {
    pub phases: Vec<Phase>,
    pub gaps: Vec<Gap>,
    pub samples: u64,
    pub longest_pause: Duration,
}

impl ListWatch {
    /// Starts watching `resolver.cached(service)`, in a first phase named
    /// `phase`. A service not cached counts as listing nothing.
    pub fn start(resolver: &RedisResolver, service: &str, phase: &str) -> ListWatch {
        let state = Arc::new(Mutex::new(State {
            phases: vec![Phase::new(phase)],
            tracked: HashMap::new(),
            gaps: Vec::new(),
            samples: 0,
            last_sample: None,
            longest_pause: Duration::ZERO,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (resolver, service) = (resolver.clone(), service.to_owned());
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            thread::spawn(move || {
                loop {
                    // Read before sampling: the last sample, taken after
                    // `finish` asked to stop, shows the list at the end.
                    let stopping = stop.load(Ordering::Relaxed);
                    let listed: Vec<String> = resolver
                        .cached(&service)
                        .map(|s| s.instances().iter().map(|i| i.addr().to_owned()).collect())
                        .unwrap_or_default();
                    lock(&state).sample(&listed, Instant::now());
                    if stopping {
                        return;
                    }
                    thread::sleep(EVERY);
                }
            })
        };
        ListWatch {
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// From now on, `addr` must stay listed once it is listed.
    pub fn track(&self, addr: impl ToString) {
        lock(&self.state)
            .tracked
            .insert(addr.to_string(), Tracked::default());
    }

    /// `addr` may leave from now on (it is being deregistered).
    pub fn untrack(&self, addr: impl ToString) {
        lock(&self.state).tracked.remove(&addr.to_string());
    }

    /// Starts a new phase now (a new fault). A phase left before its
    /// first sample is forgotten: it saw nothing.
    pub fn phase(&self, name: &str) {
        let mut state = lock(&self.state);
        if state.phases.last().is_some_and(|p| p.samples == 0) {
            state.phases.pop();
        }
        state.phases.push(Phase::new(name));
    }

    /// Counts the current phase's times from `up`, when Redis answered
    /// again, instead of from the phase's start.
    pub fn redis_up(&self, up: Instant) {
        let mut state = lock(&self.state);
        if let Some(phase) = state.phases.last_mut() {
            phase.origin = up;
            phase.origin_name = "after Redis answered again";
        }
    }

    /// The report so far.
    pub fn report(&self) -> ListReport {
        lock(&self.state).report()
    }

    /// Stops watching and reports.
    pub fn finish(mut self) -> ListReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                panic!("the list watch thread panicked");
            }
        }
        self.report()
    }
}

impl Drop for ListWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Phase {
    fn new(name: &str) -> Phase {
        Phase {
            name: name.to_owned(),
            origin: Instant::now(),
            origin_name: "into the phase",
            min: None,
            samples: 0,
        }
    }

    /// `at` in ms since the origin (negative: before it).
    fn ms(&self, at: Instant) -> i128 {
        match at.checked_duration_since(self.origin) {
            Some(after) => after.as_millis() as i128,
            None => -((self.origin - at).as_millis() as i128),
        }
    }
}

impl State {
    fn sample(&mut self, listed: &[String], now: Instant) {
        self.samples += 1;
        if let Some(last) = self.last_sample.replace(now) {
            self.longest_pause = self.longest_pause.max(now - last);
        }
        let current = self.phases.len() - 1;
        let phase = &mut self.phases[current];
        phase.samples += 1;
        if phase.min.is_none_or(|(min, _)| listed.len() < min) {
            phase.min = Some((listed.len(), phase.ms(now)));
        }
        for (addr, tracked) in &mut self.tracked {
            let is_listed = listed.contains(addr);
            match (is_listed, tracked.missing_since) {
                (true, Some((since, phase))) => {
                    let phase = &self.phases[phase];
                    self.gaps.push(Gap {
                        addr: addr.clone(),
                        phase: phase.name.clone(),
                        left_at: phase.ms(since),
                        lasted: Some(now - since),
                    });
                    tracked.missing_since = None;
                }
                (false, None) if tracked.listed => {
                    tracked.missing_since = Some((now, current));
                }
                _ => {}
            }
            tracked.listed |= is_listed;
        }
    }

    fn report(&self) -> ListReport {
        let mut gaps = self.gaps.clone();
        for (addr, tracked) in &self.tracked {
            if let Some((since, phase)) = tracked.missing_since {
                let phase = &self.phases[phase];
                gaps.push(Gap {
                    addr: addr.clone(),
                    phase: phase.name.clone(),
                    left_at: phase.ms(since),
                    lasted: None,
                });
            }
        }
        ListReport {
            phases: self.phases.clone(),
            gaps,
            samples: self.samples,
            longest_pause: self.longest_pause,
        }
    }
}

impl ListReport {
    /// The fewest instances listed during the phase named `name`.
    pub fn min_in(&self, name: &str) -> Option<usize> {
        self.phases
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.min.map(|(n, _)| n))
    }
}

impl fmt::Display for ListReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resolver list: {} samples, longest pause between two {:?}",
            self.samples, self.longest_pause
        )?;
        for phase in &self.phases {
            if let Some((n, at)) = phase.min {
                write!(
                    f,
                    "\n  {}: fewest listed {n}, first at {at:+}ms {}",
                    phase.name, phase.origin_name
                )?;
            }
        }
        for gap in &self.gaps {
            let lasted = gap
                .lasted
                .map_or("still missing at the end".to_owned(), |d| {
                    format!("for {}ms", d.as_millis())
                });
            let origin = self
                .phases
                .iter()
                .find(|p| p.name == gap.phase)
                .map_or("", |p| p.origin_name);
            write!(
                f,
                "\n  {} missing in {} from {:+}ms {origin}, {lasted}",
                gap.addr, gap.phase, gap.left_at
            )?;
        }
        Ok(())
    }
}
