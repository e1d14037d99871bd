//! A fixed number of requests through the layer (or not), for counting
//! instructions with callgrind: repeatable on a noisy machine, unlike time.
//! The setup is the one of `benches/layer.rs`.
//!
//! ```sh
//! bin=$(cargo bench --bench layer_instructions --no-run 2>&1 |
//!   grep -o 'target/release/deps/layer_instructions-[0-9a-f]*')
//! for mode in bare off on redis-off redis-on redis-clones; do
//!   valgrind --tool=callgrind --toggle-collect='layer_instructions::run*' \
//!     --callgrind-out-file=/tmp/cg.$mode \
//!     $bin $mode --bench 2>&1 | grep Collected
//! done   # divide by 200 000 for instructions per request
//! ```
//!
//! `bare`: the no-op inner service alone; `off`: through the layer over a
//! `StaticResolver` without retries; `on`: the same with the default
//! retries; `redis-off` and `redis-on`: the same over a `RedisResolver`
//! hit (a private redis-server on a free port, as the tests start it);
//! `redis-clones`: as `redis-off`, each request through a clone of the
//! service (`svc.clone().oneshot(req)`).
//! Only the requests are counted (`--toggle-collect`), not the setup.
//! With `--features metrics`, `BENCH_RECORDER=debugging` or `atomic`
//! installs a recorder first (see `common::install_recorder`).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "common/tool.rs"]
mod tool;

use common::{request, resolver, send, Noop};
use http::Request;
use redis_discovery::layer::DiscoveryLayer;
use redis_discovery::resolver::Resolve;
use tower::{Layer, Service};

const REQUESTS: usize = 200_000;

/// The measured part: [`REQUESTS`] flagged requests through `svc`.
#[inline(never)]
fn run<S>(svc: &mut S)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    (0..REQUESTS).for_each(|_| send(svc, request(true)));
}

/// Like [`run`], each request through a clone of `svc`, as
/// `svc.clone().oneshot(req)` does.
#[inline(never)]
fn run_clones<S>(svc: &S)
where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    (0..REQUESTS).for_each(|_| send(&mut svc.clone(), request(true)));
}

/// The layer over `resolver`, with retries (`on`) or without, one service
/// value for all requests or a clone per request.
fn through_layer<R: Resolve>(resolver: R, retries: bool, clones: bool) {
    let mut builder = DiscoveryLayer::builder(resolver);
    if !retries {
        builder = builder.retries(0);
    }
    let mut svc = builder.build().layer(Noop);
    if clones {
        run_clones(&svc);
    } else {
        run(&mut svc);
    }
}

fn main() {
    let Some(args) = tool::args() else {
        return;
    };
    let mode = args.first().map_or("on", String::as_str);
    common::install_recorder();
    match mode {
        "bare" => run(&mut Noop),
        "off" => through_layer(resolver(), false, false),
        "on" => through_layer(resolver(), true, false),
        "redis-off" | "redis-on" | "redis-clones" => {
            let server = support::RedisServer::start();
            // Current-thread: the resolver's background tasks do not run
            // (and are not counted) while the requests are sent.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (redis, _registrations) = rt.block_on(common::redis_resolver(server.url()));
            through_layer(redis, mode == "redis-on", mode == "redis-clones");
        }
        other => eprintln!(
            "unknown mode {other:?}: expected bare, off, on, redis-off, redis-on or redis-clones"
        ),
    }
}
