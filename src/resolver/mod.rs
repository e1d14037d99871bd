//! The client side: service name to live instances.
