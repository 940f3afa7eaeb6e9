//! What the server binaries share and a library must not do (feature `cli`): install the
//! global tracing subscriber, turn errors into exit codes, bind the `--listen` address, open
//! the `--relay-db` log and wait for Ctrl-C / SIGTERM.

use std::sync::Arc;

use super::s3::SettingError;
use super::{ConnectionLimits, EventLog, SqliteEventLog};

/// How the server binaries write their log (`--log-format`, `FILESYNC_LOG_FORMAT`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event; coloured only when stderr is a terminal (and
    /// `NO_COLOR` is unset).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`), for log
    /// collectors.
    Json,
}

/// Whether the text log may use ANSI colours: stderr (where it goes) is a terminal and
/// `NO_COLOR` is unset or empty.
fn log_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// For the server binaries' `main`: log to stderr in `format` (filtered by `RUST_LOG`,
/// default `info`; colours only on a terminal), run `app`, and turn its error into exit code 2
/// and `<name>: <error>` on stderr, followed by a `caused by: <cause>` line for each error in
/// its [`source`](std::error::Error::source) chain.
pub async fn main_with<E: std::error::Error>(
    name: &str,
    format: LogFormat,
    app: impl std::future::Future<Output = std::result::Result<(), E>>,
) -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(log_colour()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
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

/// Listen on `listen` (`--listen`): `host:port`, where the host is an IP address (`[…]` for
/// IPv6) or a name resolved through the system resolver (`localhost:8787`); the first
/// resolved address that can be bound is used. The error names the setting and keeps the
/// resolver's or the last bind's I/O error as its cause.
pub async fn bind(listen: &str) -> std::result::Result<tokio::net::TcpListener, SettingError> {
    let setting = |message: String| SettingError::new("listen", "FILESYNC_LISTEN", message);
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| {
            setting(format!(
                "cannot resolve {listen:?} (expected host:port, e.g. 127.0.0.1:8787 or localhost:8787)"
            ))
            .with_source(e)
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, e)) => setting(format!("cannot bind {addr} ({listen})")).with_source(e),
        None => setting(format!("{listen:?} resolves to no address")),
    })
}

/// What a server binary opens before serving: the relay log at `relay_db` (if any) and a
/// listener on `listen`, with the address it got.
pub struct Started {
    /// The relay log, when one was asked for.
    pub relay: Option<Arc<dyn EventLog>>,
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// The address it listens on (the real port when `listen` asked for port 0).
    pub addr: std::net::SocketAddr,
}

/// Open the relay log (`--relay-db`) and bind `--listen`; the error names the setting.
pub async fn start(
    listen: &str,
    relay_db: Option<&std::path::Path>,
) -> std::result::Result<Started, SettingError> {
    let relay = open_relay(relay_db).await?;
    let listener = bind(listen).await?;
    let addr = listener.local_addr().map_err(|e| {
        SettingError::new("listen", "FILESYNC_LISTEN", format!("cannot use {listen}"))
            .with_source(e)
    })?;
    Ok(Started {
        relay,
        listener,
        addr,
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

/// URL lifetime when `--max-expiry-secs` is not given, in seconds.
pub const DEFAULT_MAX_EXPIRY_SECS: u64 = 900;
/// The shortest and longest URL lifetimes `--max-expiry-secs` can set (others are clamped,
/// with a warning), as `RouterConfig::expiry`.
const MIN_EXPIRY_SECS: u64 = 1;
const MAX_EXPIRY_SECS: u64 = 3600;
/// `--max-expiry-secs`'s former variable (`filesync-r2`), still read when the new one is unset.
const TTL_SECS_ENV: &str = "FILESYNC_TTL_SECS";

/// The flags both server binaries take for the contract and relay routes: one name per
/// setting, flattened into each binary's arguments (`#[command(flatten)]`).
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on: `host:port`, the host an IP address (`[::1]` for IPv6) or a name
    /// (`localhost:8787`).
    #[arg(long, env = "FILESYNC_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: String,
    /// Where the contract and relay routes live.
    #[arg(long, env = "FILESYNC_BASE_PATH", default_value = "/api")]
    pub base_path: String,
    /// Accepted token, optionally limited to key prefixes: `TOKEN` or `TOKEN:store1/,store2/`.
    /// Repeat the flag, or separate with `;` in the variable.
    #[arg(
        long = "token",
        env = "FILESYNC_TOKENS",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub tokens: Vec<String>,
    /// A file with one token per line (same syntax as --token; `#` starts a comment).
    #[arg(long, env = "FILESYNC_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Serve without any token (anyone who reaches the server can sign).
    #[arg(long, env = "FILESYNC_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// Longest URL lifetime in seconds, clamped to 1..=3600; default 900. The former
    /// --ttl-secs and FILESYNC_TTL_SECS still work.
    #[arg(long, alias = "ttl-secs", env = "FILESYNC_MAX_EXPIRY_SECS")]
    pub max_expiry_secs: Option<u64>,
    /// Serve the event relay with its log in this SQLite file (`filesync-r2`: default
    /// `<data-dir>/relay.sqlite`).
    #[arg(long, env = "FILESYNC_RELAY_DB")]
    pub relay_db: Option<std::path::PathBuf>,
    /// Origins allowed credentialed CORS (comma-separated); none: `*`.
    #[arg(
        long = "allowed-origin",
        env = "FILESYNC_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Seconds a client may take to send a request's headers (from connecting, or from the
    /// first byte of a later request on a kept-alive connection); then it is disconnected.
    #[arg(long, env = "FILESYNC_HEADER_TIMEOUT_SECS", default_value_t = ConnectionLimits::DEFAULT.header_read_timeout.as_secs())]
    pub header_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait idle for its next request.
    #[arg(long, env = "FILESYNC_IDLE_TIMEOUT_SECS", default_value_t = ConnectionLimits::DEFAULT.idle_timeout.as_secs())]
    pub idle_timeout_secs: u64,
    /// Seconds a request body may go without sending a byte; then the request fails and
    /// nothing of it is stored.
    #[arg(long, env = "FILESYNC_BODY_TIMEOUT_SECS", default_value_t = ConnectionLimits::DEFAULT.body_read_timeout.as_secs())]
    pub body_timeout_secs: u64,
    /// Connections served at once; further clients wait to be accepted until one closes.
    #[arg(long, env = "FILESYNC_MAX_CONNECTIONS", default_value_t = ConnectionLimits::DEFAULT.max_connections)]
    pub max_connections: usize,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object per
    /// line).
    #[arg(long, env = "FILESYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServerArgs {
    /// The router settings these flags describe, each checked: the base path starts with `/`,
    /// tokens (flags and `--token-file`) parse, and there is at least one unless
    /// `--allow-anonymous`.
    pub fn router_config(&self) -> std::result::Result<super::RouterConfig, SettingError> {
        check_base_path(&self.base_path, "base-path", "FILESYNC_BASE_PATH")?;
        let tokens = self.tokens()?;
        if tokens.is_empty() && !self.allow_anonymous {
            return Err(SettingError::new(
                "token",
                "FILESYNC_TOKENS",
                "no --token or --token-file given; pass --allow-anonymous to let anyone sign",
            ));
        }
        Ok(super::RouterConfig {
            base_path: self.base_path.clone(),
            tokens,
            max_expiry: self.max_expiry()?,
            allowed_origins: self
                .allowed_origins
                .iter()
                .filter(|o| !o.is_empty())
                .cloned()
                .collect(),
            ..super::RouterConfig::default()
        })
    }

    /// How to serve: the connection timeouts and cap these flags describe (each at least 1)
    /// and the default grace period.
    pub fn serve_config(&self) -> std::result::Result<super::ServeConfig, SettingError> {
        let secs = |value: u64, long: &'static str, env: &'static str| {
            if value == 0 {
                Err(SettingError::new(long, env, "must be at least 1"))
            } else {
                Ok(std::time::Duration::from_secs(value))
            }
        };
        if self.max_connections == 0 {
            return Err(SettingError::new(
                "max-connections",
                "FILESYNC_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        Ok(super::ServeConfig {
            limits: ConnectionLimits {
                header_read_timeout: secs(
                    self.header_timeout_secs,
                    "header-timeout-secs",
                    "FILESYNC_HEADER_TIMEOUT_SECS",
                )?,
                idle_timeout: secs(
                    self.idle_timeout_secs,
                    "idle-timeout-secs",
                    "FILESYNC_IDLE_TIMEOUT_SECS",
                )?,
                body_read_timeout: secs(
                    self.body_timeout_secs,
                    "body-timeout-secs",
                    "FILESYNC_BODY_TIMEOUT_SECS",
                )?,
                max_connections: self.max_connections,
            },
            ..super::ServeConfig::default()
        })
    }

    /// `--token`s and the lines of `--token-file`.
    fn tokens(&self) -> std::result::Result<Vec<super::TokenGrant>, SettingError> {
        let mut specs = self.tokens.clone();
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SettingError::new(
                    "token-file",
                    "FILESYNC_TOKEN_FILE",
                    format!("cannot read {}", path.display()),
                )
                .with_source(e)
            })?;
            specs.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
                    .filter(|l| !l.is_empty()),
            );
        }
        super::TokenGrant::parse_all(&specs)
            .map_err(|e| SettingError::new("token", "FILESYNC_TOKENS", "invalid").with_source(e))
    }

    /// `--max-expiry-secs`, else the former `FILESYNC_TTL_SECS`, else the default.
    fn max_expiry(&self) -> std::result::Result<std::time::Duration, SettingError> {
        let secs = match (self.max_expiry_secs, std::env::var(TTL_SECS_ENV)) {
            (Some(secs), _) => secs,
            (None, Ok(v)) if !v.trim().is_empty() => v.trim().parse().map_err(|e| {
                SettingError::new(
                    "max-expiry-secs",
                    TTL_SECS_ENV,
                    format!("{v:?} is not a number of seconds"),
                )
                .with_source(e)
            })?,
            (None, _) => DEFAULT_MAX_EXPIRY_SECS,
        };
        let clamped = secs.clamp(MIN_EXPIRY_SECS, MAX_EXPIRY_SECS);
        if clamped != secs {
            tracing::warn!(
                requested = secs,
                used = clamped,
                "--max-expiry-secs is outside {MIN_EXPIRY_SECS}..={MAX_EXPIRY_SECS}: signed URLs live {clamped} s"
            );
        }
        Ok(std::time::Duration::from_secs(clamped))
    }
}

/// A base-path setting must start with `/`.
pub fn check_base_path(
    path: &str,
    long: &'static str,
    env: &'static str,
) -> std::result::Result<(), SettingError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(SettingError::new(
            long,
            env,
            format!("{path:?} must start with '/'"),
        ))
    }
}
