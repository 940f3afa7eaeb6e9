//! `filesync-r2`: the byte proxy, the signer contract and the event relay in one process.
//! With only `--data-dir` it is a complete single-machine deployment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use filesync_core::server::cli::{
    ServerArgs, Started, check_base_path, main_with, shutdown_signal, start,
};
use filesync_core::server::s3::{S3Args, SettingError};
use filesync_core::server::{Secret, serve_with_config};
use filesync_r2::{
    Bucket, DEFAULT_FILES_BASE_PATH, Error, R2Config, R2Proxy, Result, S3Settings,
    router_with_static,
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
    /// The URL clients reach this server at (signed URLs start with it), e.g.
    /// https://files.example.com behind a TLS-terminating proxy. Default: http://<listen address>;
    /// required when listening on every interface (0.0.0.0, [::]).
    #[arg(long, env = "FILESYNC_PUBLIC_URL")]
    public_url: Option<url::Url>,
    /// Where the file routes live.
    #[arg(long, env = "FILESYNC_FILES_BASE_PATH", default_value = DEFAULT_FILES_BASE_PATH)]
    files_base_path: String,
    /// The HMAC key for file URLs. Default: `<data-dir>/signing-secret`, created on first start.
    #[arg(long, env = "FILESYNC_SIGNING_SECRET", hide_env_values = true)]
    signing_secret: Option<String>,
    /// Largest accepted object in bytes.
    #[arg(long, env = "FILESYNC_MAX_OBJECT_SIZE", default_value_t = filesync_r2::DEFAULT_MAX_OBJECT_SIZE)]
    max_object_size: u64,
    #[command(flatten)]
    server: ServerArgs,
    /// Do not serve the event relay.
    #[arg(long, env = "FILESYNC_NO_RELAY", conflicts_with = "relay_db")]
    no_relay: bool,
    /// Also serve the files in this directory (a web app) outside /api and the file routes.
    #[arg(long, env = "FILESYNC_STATIC_DIR")]
    static_dir: Option<PathBuf>,
    /// The bucket on S3 (instead of the local directory), when --s3-endpoint is given.
    #[command(flatten)]
    s3: S3Args,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    main_with("filesync-r2", args.server.log_format, run(args)).await
}

fn bucket(args: &Args) -> Result<Bucket> {
    if args.s3.is_set() {
        return Bucket::s3(&S3Settings::try_from(args.s3.clone())?);
    }
    let dir = args.data_dir.as_deref().ok_or_else(|| {
        SettingError::new(
            "data-dir",
            "FILESYNC_DATA_DIR",
            "required for a local bucket; or give --s3-endpoint and the other --s3-* settings",
        )
    })?;
    Bucket::local(dir)
}

/// The signing secret: given, or kept in `<data-dir>/signing-secret` (created once, mode 0600),
/// or (S3 without a data directory) random for this process.
fn signing_secret(args: &Args) -> Result<Secret> {
    if let Some(s) = &args.signing_secret {
        if s.chars().count() < 16 {
            return Err(SettingError::new(
                "signing-secret",
                "FILESYNC_SIGNING_SECRET",
                "must be at least 16 characters",
            )
            .into());
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
            return Err(SettingError::new(
                "signing-secret",
                "FILESYNC_SIGNING_SECRET",
                format!(
                    "not given, and {} is too short (at least 16 characters)",
                    path.display()
                ),
            )
            .into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                op: "read",
                path,
                source,
            });
        }
    }
    let secret = random_hex();
    write_private(&path, &secret).map_err(|source| Error::Io {
        op: "write",
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), "created a signing secret");
    Ok(Secret::new(secret))
}

/// 256 random bits as 64 hex characters, from the OS generator.
/// 256 random bits as 64 hex characters.
fn random_hex() -> String {
    filesync_core::rt::random_hex(32)
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

async fn run(args: Args) -> Result<()> {
    check_base_path(
        &args.files_base_path,
        "files-base-path",
        "FILESYNC_FILES_BASE_PATH",
    )?;
    let config = args.server.router_config()?;
    let serve_config = args.server.serve_config()?;
    let bucket = bucket(&args)?;
    let static_dir = args.static_dir.clone();
    if let Some(dir) = &static_dir
        && !dir.is_dir()
    {
        return Err(SettingError::new(
            "static-dir",
            "FILESYNC_STATIC_DIR",
            format!("{} is not a directory", dir.display()),
        )
        .into());
    }
    let secret = signing_secret(&args)?;
    let relay_path = match (&args.server.relay_db, &args.data_dir) {
        _ if args.no_relay => None,
        (Some(p), _) => Some(p.clone()),
        (None, Some(dir)) => Some(dir.join("relay.sqlite")),
        (None, None) => None,
    };
    let Started {
        relay,
        listener,
        addr,
    } = start(&args.server.listen, relay_path.as_deref())
        .await
        .map_err(|e| Error::Start(e.into()))?;
    let public_url = match args.public_url {
        Some(u) => u,
        // Signed file URLs start with the public URL: `http://0.0.0.0:8787/…` reaches no one.
        None if addr.ip().is_unspecified() => {
            return Err(SettingError::new(
                "public-url",
                "FILESYNC_PUBLIC_URL",
                format!(
                    "required when listening on every interface ({addr}): signed file URLs start with it, and http://{addr} reaches no client; give the address clients use, e.g. --public-url https://files.example.com"
                ),
            )
            .into());
        }
        None => format!("http://{addr}").parse().map_err(|e| {
            SettingError::new(
                "public-url",
                "FILESYNC_PUBLIC_URL",
                format!("not given, and http://{addr} is not a URL"),
            )
            .with_source(e)
        })?,
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
    serve_with_config(listener, app, shutdown_signal(), serve_config)
        .await
        .map_err(Error::Serve)
}
