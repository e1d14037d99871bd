//! Service registration, discovery and client-side load balancing for HTTP
//! services, with Redis as the registry.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod balance;
mod connection;
pub mod error;
mod instance;
pub mod layer;
pub mod registry;
pub mod resolver;
pub mod schema;

pub use connection::Timeouts;
pub use error::{RegistryError, ResolveError, ValidationError};
pub use instance::{EntryError, Instance, ServiceName, Tags};
pub use registry::{RedisRegistry, Registration};
pub use resolver::{RedisResolver, Resolve, Snapshot, StaticResolver};
pub use schema::KeySchema;
