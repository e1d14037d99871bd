//! `--metrics-listen ADDR`: the crate's metrics for Prometheus, for the
//! long-running commands (`register`, the sidecar, and `watch`).

use std::net::SocketAddr;

use clap::Args;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::Error;

/// Seconds: OpenTelemetry's default buckets for HTTP request durations.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Where to serve metrics, if anywhere.
#[derive(Debug, Args)]
pub(crate) struct MetricsListen {
    /// Serve metrics in Prometheus' text format at this address (any path,
    /// e.g. http://127.0.0.1:9464/metrics); see the README for the metrics.
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
}

impl MetricsListen {
    /// Installs the Prometheus recorder and its endpoint. Called before the
    /// registry or resolver is made: they prepare their metric handles from
    /// the recorder installed when they start. Fails if the address cannot
    /// be bound.
    pub(crate) fn install(&self) -> Result<(), Error> {
        let Some(addr) = self.listen else {
            return Ok(());
        };
        let failed = |e| format!("--metrics-listen {addr}: {e}");
        PrometheusBuilder::new()
            .with_http_listener(addr)
            // `_total`, `_seconds`: Prometheus' naming.
            .with_recommended_naming(true)
            // Histograms, which add up across instances (summaries do
            // not): OpenTelemetry's default HTTP duration buckets.
            .set_buckets(&DURATION_BUCKETS)
            .map_err(failed)?
            .install()
            .map_err(failed)?;
        redis_discovery::metrics::describe();
        tracing::info!(%addr, "serving metrics for Prometheus");
        Ok(())
    }
}
