//! `filesync-r2`: the byte proxy, the signer contract and the event relay in one process.
//! With only `--data-dir` it is a complete single-machine deployment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use filesync_core::server::{
    RouterConfig, Secret, TokenGrant, bind, main_with, open_relay, serve, shutdown_signal,
};
use filesync_r2::{
    Bucket, DEFAULT_FILES_BASE_PATH, R2Config, R2Proxy, S3Bucket, router_with_static,
};

#[derive(Parser, Debug)]
#[command(
    name = "filesync-r2",
    version,
    about = "Proxies filesync file bytes to a bucket (local disk, Cloudflare R2 or S3) through signed URLs, and relays file events"
)]
struct Args {
    /// Local bucket and relay log live here (objects/, meta/, relay.sqlite, signing-secret).
    /// Required unless an S3 bucket is configured.
    #[arg(long, env = "FILESYNC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "FILESYNC_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// The URL clients reach this server at (signed URLs start with it), e.g.
    /// https://files.example.com behind a TLS-terminating proxy. Default: http://<listen address>.
    #[arg(long, env = "FILESYNC_PUBLIC_URL")]
    public_url: Option<url::Url>,
    /// Where the contract and relay routes live.
    #[arg(long, env = "FILESYNC_BASE_PATH", default_value = "/api")]
    base_path: String,
    /// Where the file routes live.
    #[arg(long, env = "FILESYNC_FILES_BASE_PATH", default_value = DEFAULT_FILES_BASE_PATH)]
    files_base_path: String,
    /// Accepted token, optionally limited to key prefixes: `TOKEN` or `TOKEN:store1/,store2/`.
    /// Repeat the flag, or separate with `;` in the variable.
    #[arg(
        long = "token",
        env = "FILESYNC_TOKENS",
        value_delimiter = ';',
        hide_env_values = true
    )]
    tokens: Vec<String>,
    /// A file with one token per line (same syntax as --token; `#` starts a comment).
    #[arg(long, env = "FILESYNC_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve without any token (anyone who reaches the server can sign).
    #[arg(long, env = "FILESYNC_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// The HMAC key for file URLs. Default: `<data-dir>/signing-secret`, created on first start.
    #[arg(long, env = "FILESYNC_SIGNING_SECRET", hide_env_values = true)]
    signing_secret: Option<String>,
    /// URL lifetime in seconds (clamped to 1..=3600).
    #[arg(long, env = "FILESYNC_TTL_SECS", default_value_t = 900)]
    ttl_secs: u64,
    /// Largest accepted object in bytes.
    #[arg(long, env = "FILESYNC_MAX_OBJECT_SIZE", default_value_t = filesync_r2::DEFAULT_MAX_OBJECT_SIZE)]
    max_object_size: u64,
    /// The event relay's SQLite log. Default with --data-dir: `<data-dir>/relay.sqlite`.
    #[arg(long, env = "FILESYNC_RELAY_DB")]
    relay_db: Option<PathBuf>,
    /// Do not serve the event relay.
    #[arg(long, env = "FILESYNC_NO_RELAY", conflicts_with = "relay_db")]
    no_relay: bool,
    /// Also serve the files in this directory (a web app) outside /api and the file routes.
    #[arg(long, env = "FILESYNC_STATIC_DIR")]
    static_dir: Option<PathBuf>,
    /// Origins allowed credentialed CORS (comma-separated); none: `*`.
    #[arg(
        long = "allowed-origin",
        env = "FILESYNC_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// S3 endpoint of the bucket (instead of the local directory), e.g.
    /// https://<account>.r2.cloudflarestorage.com.
    #[arg(long, env = "S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region (`auto` for R2).
    #[arg(long, env = "S3_REGION", default_value = "auto")]
    s3_region: String,
    /// Bucket name.
    #[arg(long, env = "S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Access key id.
    #[arg(long, env = "S3_ACCESS_KEY_ID")]
    s3_access_key_id: Option<String>,
    /// Secret access key.
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
    /// Session token for temporary credentials.
    #[arg(long, env = "S3_SESSION_TOKEN", hide_env_values = true)]
    s3_session_token: Option<String>,
    /// Path-style URLs (`<endpoint>/<bucket>/<key>`), e.g. for MinIO.
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    s3_force_path_style: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    main_with("filesync-r2", run(Args::parse())).await
}

fn bucket(args: &Args) -> Result<Bucket, String> {
    let Some(endpoint) = &args.s3_endpoint else {
        let dir = args.data_dir.as_deref().ok_or(
            "give --data-dir (FILESYNC_DATA_DIR) for a local bucket, or --s3-endpoint and the other --s3-* settings",
        )?;
        return Bucket::local(dir).map_err(|e| format!("--data-dir: {e}"));
    };
    let need = |v: &Option<String>, flag: &str, env: &str| {
        v.clone()
            .filter(|v| !v.trim().is_empty())
            .ok_or(format!("{flag} ({env}) is required with --s3-endpoint"))
    };
    Bucket::s3(&S3Bucket {
        endpoint: endpoint.clone(),
        region: args.s3_region.clone(),
        bucket: need(&args.s3_bucket, "--s3-bucket", "S3_BUCKET")?,
        access_key_id: need(
            &args.s3_access_key_id,
            "--s3-access-key-id",
            "S3_ACCESS_KEY_ID",
        )?,
        secret_access_key: Secret::new(need(
            &args.s3_secret_access_key,
            "--s3-secret-access-key",
            "S3_SECRET_ACCESS_KEY",
        )?),
        session_token: args
            .s3_session_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        force_path_style: args.s3_force_path_style,
    })
    .map_err(|e| format!("--s3-*: {e}"))
}

/// The signing secret: given, or kept in `<data-dir>/signing-secret` (created once, mode 0600),
/// or (S3 without a data directory) random for this process.
fn signing_secret(args: &Args) -> Result<Secret, String> {
    if let Some(s) = &args.signing_secret {
        if s.chars().count() < 16 {
            return Err(
                "--signing-secret (FILESYNC_SIGNING_SECRET) must be at least 16 characters".into(),
            );
        }
        return Ok(Secret::new(s.clone()));
    }
    let Some(dir) = &args.data_dir else {
        tracing::warn!(
            "no --signing-secret: using a random one; signed URLs stop working on restart and differ between instances"
        );
        return Ok(Secret::new(random_hex()));
    };
    let path = dir.join("signing-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 16 => return Ok(Secret::new(s.trim())),
        Ok(_) => {
            return Err(format!(
                "{} is too short (at least 16 characters)",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let secret = random_hex();
    write_private(&path, &secret).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "created a signing secret");
    Ok(Secret::new(secret))
}

/// 256 random bits as 64 hex characters, from the OS generator.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    filesync_core::rt::fill_random(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

fn tokens(args: &Args) -> Result<Vec<TokenGrant>, String> {
    let mut specs = args.tokens.clone();
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--token-file: cannot read {}: {e}", path.display()))?;
        specs.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
                .filter(|l| !l.is_empty()),
        );
    }
    TokenGrant::parse_all(&specs).map_err(|e| format!("--token: {e}"))
}

async fn run(args: Args) -> Result<(), String> {
    if !args.base_path.starts_with('/') || !args.files_base_path.starts_with('/') {
        return Err("--base-path and --files-base-path must start with '/'".into());
    }
    let tokens = tokens(&args)?;
    if tokens.is_empty() && !args.allow_anonymous {
        return Err(
            "no --token (FILESYNC_TOKENS) or --token-file given; pass --allow-anonymous to let anyone sign".into(),
        );
    }
    let bucket = bucket(&args)?;
    let static_dir = args.static_dir.clone();
    if let Some(dir) = &static_dir
        && !dir.is_dir()
    {
        return Err(format!(
            "--static-dir: {} is not a directory",
            dir.display()
        ));
    }
    let secret = signing_secret(&args)?;
    let relay_path = match (&args.relay_db, &args.data_dir) {
        _ if args.no_relay => None,
        (Some(p), _) => Some(p.clone()),
        (None, Some(dir)) => Some(dir.join("relay.sqlite")),
        (None, None) => None,
    };
    let relay = open_relay(relay_path.as_deref()).await?;
    let listener = bind(args.listen).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let public_url = match args.public_url {
        Some(u) => u,
        None => format!("http://{addr}")
            .parse()
            .map_err(|e| format!("cannot make a public URL from {addr}: {e}"))?,
    };
    let config = RouterConfig {
        base_path: args.base_path,
        tokens,
        max_expiry: Duration::from_secs(args.ttl_secs),
        allowed_origins: args
            .allowed_origins
            .into_iter()
            .filter(|o| !o.is_empty())
            .collect(),
        ..RouterConfig::default()
    };
    let mut r2 = R2Config::new(public_url.clone(), secret);
    r2.files_base_path = args.files_base_path;
    r2.max_object_size = args.max_object_size;
    tracing::info!(
        %addr,
        %public_url,
        bucket = bucket.description(),
        relay = ?relay_path,
        "filesync-r2 listening"
    );
    let proxy = Arc::new(R2Proxy::new(bucket, r2));
    println!("listening on {addr}");
    let app = router_with_static(proxy, config, relay, static_dir.as_deref());
    serve(listener, app, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
