//! What the server binaries share and a library must not do (feature `cli`): install the
//! global tracing subscriber, turn errors into exit codes, bind the `--listen` address, open
//! the `--relay-db` log and wait for Ctrl-C / SIGTERM.

use std::sync::Arc;

use super::{EventLog, SqliteEventLog};

/// For the server binaries' `main`: log to stderr (filtered by `RUST_LOG`, default `info`),
/// run `app`, and turn its error into `<name>: <error>` on stderr and exit code 2.
pub async fn main_with(
    name: &str,
    app: impl std::future::Future<Output = std::result::Result<(), String>>,
) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match app.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The relay log at `path` (`--relay-db`), or none; the error names the setting.
pub async fn open_relay(
    path: Option<&std::path::Path>,
) -> std::result::Result<Option<Arc<dyn EventLog>>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    let log = SqliteEventLog::open(path).await.map_err(|e| {
        format!(
            "--relay-db (FILESYNC_RELAY_DB): cannot open {}: {e}",
            path.display()
        )
    })?;
    Ok(Some(Arc::new(log)))
}

/// Listen on `addr` (`--listen`); the error names the setting.
pub async fn bind(
    addr: std::net::SocketAddr,
) -> std::result::Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--listen (FILESYNC_LISTEN): cannot bind {addr}: {e}"))
}

/// Completes on Ctrl-C or SIGTERM: the servers' graceful-shutdown trigger (pass it to
/// [`super::serve`]).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
