//! A fixed number of requests through the layer (or not), for counting
//! instructions with callgrind: repeatable on a noisy machine, unlike time.
//! The setup is the one of `benches/layer.rs`.
//!
//! ```sh
//! cargo build --release --example layer_instructions
//! for mode in bare off on; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode \
//!     target/release/examples/layer_instructions $mode 2>&1 | grep Collected
//! done   # divide by 200 000 for instructions per request
//! ```
//!
//! `bare`: the no-op inner service alone; `off`: through the layer without
//! retries; `on`: through the layer with the default retries.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{request, resolver, send, Noop};
use redis_discovery::layer::DiscoveryLayer;
use tower::Layer;

const REQUESTS: usize = 200_000;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "on".to_owned());
    match mode.as_str() {
        "bare" => {
            let mut svc = Noop;
            (0..REQUESTS).for_each(|_| send(&mut svc, request(true)));
        }
        "off" => {
            let mut svc = DiscoveryLayer::builder(resolver())
                .retries(0)
                .build()
                .layer(Noop);
            (0..REQUESTS).for_each(|_| send(&mut svc, request(true)));
        }
        "on" => {
            let mut svc = DiscoveryLayer::new(resolver()).layer(Noop);
            (0..REQUESTS).for_each(|_| send(&mut svc, request(true)));
        }
        other => eprintln!("unknown mode {other:?}: expected bare, off or on"),
    }
}
