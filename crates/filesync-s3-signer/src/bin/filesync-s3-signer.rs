//! `filesync-s3-signer`: the signer contract over an S3-compatible bucket. Stateless: run as
//! many as you like behind a load balancer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use filesync_core::server::cli::{bind, main_with, open_relay, shutdown_signal};
use filesync_core::server::{RouterConfig, Secret, TokenGrant, router_with_relay, serve};
use filesync_s3_signer::{S3Config, S3Signer};

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
    /// S3 endpoint, e.g. https://<account>.r2.cloudflarestorage.com.
    #[arg(long, env = "S3_ENDPOINT")]
    s3_endpoint: String,
    /// S3 region (`auto` for R2).
    #[arg(long, env = "S3_REGION", default_value = "auto")]
    s3_region: String,
    /// Bucket name.
    #[arg(long, env = "S3_BUCKET")]
    s3_bucket: String,
    /// Access key id.
    #[arg(long, env = "S3_ACCESS_KEY_ID")]
    s3_access_key_id: String,
    /// Secret access key.
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: String,
    /// Session token for temporary credentials.
    #[arg(long, env = "S3_SESSION_TOKEN", hide_env_values = true)]
    s3_session_token: Option<String>,
    /// Path-style URLs (`<endpoint>/<bucket>/<key>`), e.g. for MinIO.
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    s3_force_path_style: bool,
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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    main_with("filesync-s3-signer", run(Args::parse())).await
}

async fn run(args: Args) -> Result<(), String> {
    let endpoint = args.s3_endpoint.parse().map_err(|e| {
        format!(
            "--s3-endpoint (S3_ENDPOINT): {:?} is not a URL: {e}",
            args.s3_endpoint
        )
    })?;
    let signer = S3Signer::new(S3Config {
        endpoint,
        region: args.s3_region,
        bucket: args.s3_bucket,
        access_key_id: args.s3_access_key_id,
        secret_access_key: Secret::new(args.s3_secret_access_key),
        session_token: args
            .s3_session_token
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        force_path_style: args.s3_force_path_style,
    })
    .map_err(|e| e.to_string())?;
    let tokens = TokenGrant::parse_all(&args.tokens)
        .map_err(|e| format!("--token (FILESYNC_TOKENS): {e}"))?;
    if tokens.is_empty() && !args.allow_anonymous {
        return Err(
            "no --token (FILESYNC_TOKENS) given; pass --allow-anonymous to let anyone sign".into(),
        );
    }
    if !args.base_path.starts_with('/') {
        return Err(format!(
            "--base-path (FILESYNC_BASE_PATH): {:?} must start with '/'",
            args.base_path
        ));
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
    let relay = open_relay(args.relay_db.as_deref()).await?;
    let listener = bind(args.listen).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, base_path = %config.base_path, relay = relay.is_some(), "filesync-s3-signer listening");
    println!("listening on {addr}");
    serve(
        listener,
        router_with_relay(Arc::new(signer), config, relay),
        shutdown_signal(),
    )
    .await
    .map_err(|e| e.to_string())
}
