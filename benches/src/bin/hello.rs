//! `hello`: a bare poem server answering `GET /` with a short text — the ceiling the host's
//! figures are compared with. Same runtime as `commerce-server` (`#[tokio::main]`, the
//! multi-thread scheduler with one worker per core), served as a poem app is by default
//! (`poem::Server` on a `TcpListener`). The host serves its connections through
//! `commerce_http::serve` instead (hyper on the bare socket, see there), which is part of what
//! it is judged on.
//!
//! Usage: `hello [ADDR]` (default `127.0.0.1:18081`).

use poem::listener::TcpListener;
use poem::{Route, Server, get, handler};

#[handler]
fn hello() -> &'static str {
    "Hello, world!"
}

#[tokio::main]
async fn main() -> Result<(), std::io::Error> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    Server::new(TcpListener::bind(addr))
        .run(Route::new().at("/", get(hello)))
        .await
}
