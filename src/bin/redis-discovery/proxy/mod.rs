//! `proxy`: an HTTP proxy that routes `http://SERVICE/...` requests
//! through the `DiscoveryLayer`, for clients not written in Rust.

use std::net::SocketAddr;

use clap::Args;

use crate::{Error, Global};

/// The flags of `proxy`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  redis-discovery proxy --listen 127.0.0.1:15001\n  curl -H 'Host: orders' http://127.0.0.1:15001/v1/items\n  curl -x http://127.0.0.1:15001 http://orders/v1/items"
)]
pub(crate) struct ProxyArgs {
    /// The address to serve on.
    #[arg(long, default_value = "127.0.0.1:15001")]
    listen: SocketAddr,
}

/// `proxy`: serves until SIGINT/SIGTERM, then drains.
pub(crate) async fn run(_g: &Global, _args: ProxyArgs) -> Result<(), Error> {
    Err("proxy: not built yet".into())
}
