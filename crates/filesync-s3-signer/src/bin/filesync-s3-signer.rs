//! `filesync-s3-signer`: the signer contract over an S3-compatible bucket. Stateless: run as
//! many as you like behind a load balancer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use filesync_core::server::cli::{bind, main_with, open_relay, shutdown_signal};
use filesync_core::server::s3::{S3Args, SettingError};
use filesync_core::server::{RouterConfig, TokenGrant, router_with_relay, serve};
use filesync_s3_signer::{Error, Result, S3Settings, S3Signer};

#[derive(Parser, Debug)]
#[command(
    name = "filesync-s3-signer",
    version,
    about = "Mints short-lived SigV4 URLs so filesync clients move bytes directly to S3-compatible storage"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FILESYNC_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Where the routes live.
    #[arg(long, env = "FILESYNC_BASE_PATH", default_value = "/api")]
    base_path: String,
    /// Accepted token, optionally limited to key prefixes: `TOKEN` or `TOKEN:store1/,store2/`.
    /// Repeat the flag, or separate with `;` in the variable.
    #[arg(
        long = "token",
        env = "FILESYNC_TOKENS",
        value_delimiter = ';',
        hide_env_values = true
    )]
    tokens: Vec<String>,
    /// Serve without any token (anyone who reaches the server can sign).
    #[arg(long, env = "FILESYNC_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Longest URL lifetime in seconds (clamped to 1..=3600).
    #[arg(long, env = "FILESYNC_MAX_EXPIRY_SECS", default_value_t = 900)]
    max_expiry_secs: u64,
    /// Also serve the event relay, with its log in this SQLite file.
    #[arg(long, env = "FILESYNC_RELAY_DB")]
    relay_db: Option<std::path::PathBuf>,
    /// Origins allowed credentialed CORS (comma-separated); none: `*`.
    #[arg(
        long = "allowed-origin",
        env = "FILESYNC_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    #[command(flatten)]
    s3: S3Args,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Only S3 here: the bucket's endpoint, name and credentials are required.
    let matches = S3Args::require(Args::command()).get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    main_with("filesync-s3-signer", run(args)).await
}

async fn run(args: Args) -> Result<()> {
    let signer = S3Signer::new(S3Settings::try_from(args.s3)?)?;
    let tokens = TokenGrant::parse_all(&args.tokens)
        .map_err(|e| SettingError::new("token", "FILESYNC_TOKENS", "invalid").with_source(e))?;
    if tokens.is_empty() && !args.allow_anonymous {
        return Err(SettingError::new(
            "token",
            "FILESYNC_TOKENS",
            "none given; pass --allow-anonymous to let anyone sign",
        )
        .into());
    }
    if !args.base_path.starts_with('/') {
        return Err(SettingError::new(
            "base-path",
            "FILESYNC_BASE_PATH",
            format!("{:?} must start with '/'", args.base_path),
        )
        .into());
    }
    let config = RouterConfig {
        base_path: args.base_path,
        tokens,
        max_expiry: Duration::from_secs(args.max_expiry_secs),
        allowed_origins: args
            .allowed_origins
            .into_iter()
            .filter(|o| !o.is_empty())
            .collect(),
        ..RouterConfig::default()
    };
    let relay = open_relay(args.relay_db.as_deref())
        .await
        .map_err(|e| Error::Start(e.into()))?;
    let listener = bind(args.listen)
        .await
        .map_err(|e| Error::Start(e.into()))?;
    let addr = listener.local_addr().map_err(|e| Error::Start(e.into()))?;
    tracing::info!(%addr, base_path = %config.base_path, relay = relay.is_some(), "filesync-s3-signer listening");
    println!("listening on {addr}");
    serve(
        listener,
        router_with_relay(Arc::new(signer), config, relay),
        shutdown_signal(),
    )
    .await
    .map_err(Error::Serve)
}
