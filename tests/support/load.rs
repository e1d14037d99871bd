//! Bounded request load through the discovery layer over hyper-util's
//! client: a few tasks send `GET http://SERVICE/load` in a loop, and every
//! outcome is counted, so a fault test can say "zero failed requests, and
//! many succeeded meanwhile".

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_discovery::layer::{BoxError, DiscoverExt, DiscoveryLayer};
use redis_discovery::RedisResolver;
use tokio::task::JoinHandle;
use tower::{Layer, ServiceExt};

/// One request taking longer than this counts as failed (so a hang fails
/// the test instead of stalling it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two requests of one task. Bounds the load (a few hundred
/// requests per second per task at most), so the test's own requests do
/// not starve the registries and Redis on a busy 2-core machine.
const PACE: Duration = Duration::from_millis(4);
/// Errors kept for the failure message; the rest are only counted.
const KEPT_ERRORS: usize = 10;

/// Request tasks running until [`finish`](Self::finish).
pub struct Load {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadOutcome {
    pub ok: u64,
    pub failed: u64,
    /// The first few failures.
    pub errors: Vec<String>,
}

impl fmt::Display for LoadOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests succeeded, {} failed", self.ok, self.failed)?;
        for error in &self.errors {
            write!(f, "\n  failed: {error}")?;
        }
        Ok(())
    }
}

impl Load {
    /// Starts `tasks` tasks, each sending one request at a time for
    /// `http://SERVICE/load` through a [`DiscoveryLayer`] over `resolver`
    /// (default options: retries on). A response counts as a success if
    /// it is a 200 from a test server (`support::http_server`) that saw
    /// `service` as the request's host.
    pub fn start(resolver: &RedisResolver, service: &str, tasks: usize) -> Load {
        let layer = DiscoveryLayer::new(resolver.clone());
        let client = layer.layer(Client::builder(TokioExecutor::new()).build_http::<String>());
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let uri = format!("http://{service}/load");
        let service: Arc<str> = service.into();
        let tasks = (0..tasks)
            .map(|_| {
                let (client, counts, stop) = (client.clone(), counts.clone(), stop.clone());
                let (uri, service) = (uri.clone(), service.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let request = http::Request::get(&uri).discover().body(String::new());
                        let outcome = match request {
                            Ok(request) => {
                                let sent = send(client.clone(), request, &service);
                                tokio::time::timeout(REQUEST_TIMEOUT, sent)
                                    .await
                                    .unwrap_or_else(|_| {
                                        Err(format!("no answer within {REQUEST_TIMEOUT:?}").into())
                                    })
                            }
                            Err(e) => Err(e.into()),
                        };
                        counts.record(outcome);
                        tokio::time::sleep(PACE).await;
                    }
                })
            })
            .collect();
        Load {
            counts,
            stop,
            tasks,
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.counts.ok.load(Ordering::Relaxed)
    }

    /// Failed requests so far.
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// Stops the tasks, waits for them (each ends within one request
    /// timeout) and returns the counts.
    pub async fn finish(mut self) -> LoadOutcome {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await {
                panic!("a load task panicked: {e}");
            }
        }
        LoadOutcome {
            ok: self.ok(),
            failed: self.failed(),
            errors: self
                .counts
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // A test that panicked before `finish`: stop the tasks anyway.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Counts {
    fn record(&self, outcome: Result<(), BoxError>) {
        match outcome {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
                if errors.len() < KEPT_ERRORS {
                    errors.push(error.to_string());
                }
            }
        }
    }
}

/// Sends one request and checks a test server answered it for `service`.
async fn send<S>(client: S, request: http::Request<String>, service: &str) -> Result<(), BoxError>
where
    S: tower::Service<http::Request<String>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: Into<BoxError>,
{
    let response = client.oneshot(request).await.map_err(Into::into)?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body);
    // The test server answers `ADDR HOST URI`.
    let host = body.split(' ').nth(1).unwrap_or("");
    if status != http::StatusCode::OK || host != service {
        return Err(format!("unexpected answer {status}: {body}").into());
    }
    Ok(())
}
