//! `--metrics-listen ADDR`: the crate's metrics for Prometheus, for the
//! long-running commands (`register`, the sidecar, and `watch`).

use std::net::SocketAddr;

use clap::Args;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::Error;

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
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
        redis_discovery::metrics::describe();
        tracing::info!(%addr, "serving metrics for Prometheus");
        Ok(())
    }
}
