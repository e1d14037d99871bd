//! What the crate records through the `metrics` facade (feature
//! `metrics`), read back from `metrics_util`'s debugging recorder,
//! installed once for the whole binary (tests/support/recorder.rs) before
//! any layer, resolver or registry prepares its handles. Against real
//! servers: a private redis-server, HTTP servers (healthy, refusing,
//! failing). Exact counts; every test uses service names of its own, and
//! only the outage tests make Redis fail, as `redis.errors` and
//! `subscription.reconnects` carry no service label.

#[path = "../support/mod.rs"]
mod support;

mod layer;
mod resolver;
mod scripted;
