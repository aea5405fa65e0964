//! Serves an app over TCP: each accepted socket goes straight to hyper's connection driver.
//!
//! poem's `Server` hands hyper every connection as a `BoxIo`, which splits the socket in two
//! halves behind a lock (`tokio::io::split`: taken on every read and every write) and does not
//! declare vectored writes, so hyper copies every response body into its buffer of headers
//! before writing it: a listing page's 40 KB each time. Here hyper gets the socket itself and
//! sends a response's head and body in one `writev`. The rest is what poem's server does:
//! HTTP/1.1 and HTTP/2 (by prior knowledge), upgrades, the peer's address on each request, and
//! a graceful shutdown that stops accepting, lets requests in flight finish and closes idle
//! connections.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Request, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `app` on `listener` until `shutdown` completes, then waits up to `grace` for the
/// requests in flight (connections still open after it are dropped).
///
/// # Errors
/// When the listener's address cannot be read.
pub async fn serve<E>(
    listener: TcpListener,
    app: E,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let app = Arc::new(app);
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let past_grace = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was taken: the
                    // listener itself stays usable, so wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses are written whole; no small write should wait for an acknowledgement.
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let (app, local, remote) = (Arc::clone(&app), local.clone(), RemoteAddr(Addr::SocketAddr(peer)));
        let service = service_fn(move |req: hyper::Request<Incoming>| {
            let app = Arc::clone(&app);
            let req = Request::from((req, local.clone(), remote.clone(), Scheme::HTTP));
            async move {
                let resp: hyper::Response<BoxBody<Bytes, io::Error>> = app.get_response(req).await.into();
                Ok::<_, Infallible>(resp)
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(socket), service)
            .into_owned();
        let (connection, past_grace) = (graceful.watch(connection), past_grace.clone());
        tokio::spawn(async move {
            tokio::select! {
                closed = connection => if let Err(e) = closed {
                    tracing::debug!(error = %e, "connection closed with an error");
                },
                () = past_grace.cancelled() => {}
            }
        });
    }
    drop(listener);
    tracing::info!(open = graceful.count(), "draining connections");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?grace, "connections still open after the grace period are dropped");
        past_grace.cancel();
    }
    Ok(())
}
