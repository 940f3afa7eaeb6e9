//! Serving a router on a listener until a shutdown future completes, with a bounded grace
//! period. The caller brings the listener and the signal (see `server::cli` for the binaries').

use std::time::Duration;

use axum::Router;

/// How long [`serve`] lets in-flight requests finish after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `shutdown` completes: no new connections are accepted, and
/// in-flight requests get [`SHUTDOWN_GRACE`] to finish. If connections are still open then
/// (an event stream never ends by itself; a long-poll may wait 30 s), `serve` returns anyway;
/// they are closed when the runtime shuts down (a binary's `main` returning).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_grace(listener, app, shutdown, SHUTDOWN_GRACE).await
}

/// [`serve`] with another grace period.
pub async fn serve_with_grace(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (started, shutting_down) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = started.send(());
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        Ok(()) = shutting_down => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "connections still open after the grace period (event streams, long polls): not waiting"
            );
            Ok(())
        }
    }
}
