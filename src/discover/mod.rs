//! A service's instances as a stream of changes, and as a
//! `tower::discover::Discover` for `tower::balance` (feature
//! `tower-discover`), and as a [`GrpcChannel`] for tonic clients that
//! follows the registry (feature `tonic`).
//!
//! The [tower layer](crate::layer) picks an instance per request from the
//! resolver's snapshot. Clients that keep their own per-instance state (a
//! connection per instance, `tower::balance`'s load-aware picking, gRPC
//! channels) want to be told what changed instead:
//! [`RedisResolver::changes`](crate::RedisResolver::changes) makes an
//! [`InstanceChanges`] stream of [`InstanceChange`]s keyed by
//! [`InstanceAddr`]: first the current list as inserts, then every change
//! as removes and inserts, until the resolver shuts down.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! # use redis_discovery::RedisResolver;
//!
//! # async fn run() -> Result<(), redis_discovery::ResolveError> {
//! let resolver = RedisResolver::connect("redis://127.0.0.1:6379").await?;
//! let mut changes = resolver.changes("orders").await?;
//! while let Some(change) = changes.next().await {
//!     println!("{change:?}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! | file | what it holds |
//! | --- | --- |
//! | `change.rs` | `InstanceChange`, `InstanceAddr` (the key) |
//! | `diff.rs` | the merge of two sorted lists into changes |
//! | `changes.rs` | `InstanceChanges`, `RedisResolver::changes` |
//! | `tower_discover.rs` | `DiscoverInstances`, `InstanceChanges::into_discover` |
//! | `tonic_channel/` | `GrpcChannel`, `RedisResolver::tonic_channel` |

mod change;
mod changes;
mod diff;
#[cfg(test)]
mod tests;
#[cfg(feature = "tonic")]
mod tonic_channel;
#[cfg(feature = "tower-discover")]
mod tower_discover;

pub use self::change::{InstanceAddr, InstanceChange};
pub use self::changes::InstanceChanges;
#[cfg(feature = "tonic")]
pub use self::tonic_channel::{GrpcChannel, GrpcResponseFuture};
#[cfg(feature = "tower-discover")]
pub use self::tower_discover::DiscoverInstances;
