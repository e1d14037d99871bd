//! Outlier detection: instances that fail are skipped for a while (Envoy's
//! outlier detection, with its panic threshold), and the per-instance state
//! the layer keeps for it and for load-aware balancers.
//!
//! - [`config`]: [`OutlierDetection`], the public configuration.
//! - [`service`]: the state of one service's instances, by address
//!   ([`ServiceOutliers`]): ejection, consecutive failures and measured load
//!   of each ([`InstanceState`]), and how many are ejected.
//! - [`registry`]: the router's [`Outliers`], one [`ServiceOutliers`] per
//!   service, found when a picker entry is built.
//!
//! The state of an instance is found once per snapshot change (a picker
//! entry holds an `Arc` of each member's), so recording an outcome,
//! checking an ejection or measuring load are atomics on the instance's own
//! state, with no lock and no map lookup. While none of a service's
//! instances is ejected, outlier detection costs a pick one atomic read
//! and no clock read (a load-aware balancer reads the clock for its own
//! sake).

mod config;
mod instance;
mod registry;
mod service;

pub use config::OutlierDetection;
pub(crate) use instance::InstanceState;
pub(crate) use registry::Outliers;
pub(crate) use service::ServiceOutliers;

#[cfg(test)]
mod tests;
