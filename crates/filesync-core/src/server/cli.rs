//! What the server binaries share and a library must not do (feature `cli`): install the
//! global tracing subscriber, turn errors into exit codes, bind the `--listen` address, open
//! the `--relay-db` log and wait for Ctrl-C / SIGTERM.

use std::sync::Arc;

use super::s3::SettingError;
use super::{EventLog, SqliteEventLog};

/// For the server binaries' `main`: log to stderr (filtered by `RUST_LOG`, default `info`),
/// run `app`, and turn its error into exit code 2 and `<name>: <error>` on stderr, followed by
/// a `caused by: <cause>` line for each error in its [`source`](std::error::Error::source)
/// chain.
pub async fn main_with<E: std::error::Error>(
    name: &str,
    app: impl std::future::Future<Output = std::result::Result<(), E>>,
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
            let mut cause = e.source();
            while let Some(c) = cause {
                eprintln!("  caused by: {c}");
                cause = c.source();
            }
            std::process::ExitCode::from(2)
        }
    }
}

/// The relay log at `path` (`--relay-db`), or none; the error names the setting and keeps
/// the store's error as its cause.
pub async fn open_relay(
    path: Option<&std::path::Path>,
) -> std::result::Result<Option<Arc<dyn EventLog>>, SettingError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let log = SqliteEventLog::open(path).await.map_err(|e| {
        SettingError::new(
            "relay-db",
            "FILESYNC_RELAY_DB",
            format!("cannot open {}", path.display()),
        )
        .with_source(e)
    })?;
    Ok(Some(Arc::new(log)))
}

/// Listen on `addr` (`--listen`); the error names the setting and keeps the I/O error as its
/// cause.
pub async fn bind(
    addr: std::net::SocketAddr,
) -> std::result::Result<tokio::net::TcpListener, SettingError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        SettingError::new("listen", "FILESYNC_LISTEN", format!("cannot bind {addr}")).with_source(e)
    })
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
