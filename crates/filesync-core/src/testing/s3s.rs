//! A real S3-compatible server for tests: `s3s-fs` (installed by `cargo xtask setup`), which
//! verifies SigV4 signatures, started on 127.0.0.1 with a fresh root directory and stopped
//! when dropped. One bucket, [`S3s::BUCKET`], exists from the start.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A running `s3s-fs`.
#[derive(Debug)]
pub struct S3s {
    port: u16,
    root: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl S3s {
    /// The access key id it accepts.
    pub const ACCESS_KEY: &'static str = "filesync-test-ak";
    /// The secret key it accepts.
    pub const SECRET_KEY: &'static str = "filesync-test-secret-key";
    /// The bucket that exists from the start.
    pub const BUCKET: &'static str = "bkt";

    /// Start one; panics (the test's failure report) if `s3s-fs` is missing or does not start.
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(root.path().join(Self::BUCKET)).expect("the bucket directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = tokio::process::Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                Self::ACCESS_KEY,
                "--secret-key",
                Self::SECRET_KEY,
            ])
            .arg(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("s3s-fs starts");
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    port,
                    root,
                    _child: child,
                };
            }
            crate::rt::sleep(Duration::from_millis(25)).await;
        }
        panic!("s3s-fs did not start");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its root directory: bucket `b` is the directory `root/b`, key `k` the file `root/b/k`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// `s3s-fs` on `PATH`, else in `$CARGO_HOME/bin`.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
    {
        return p;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let p = home.join("bin").join("s3s-fs");
    assert!(
        p.is_file(),
        "s3s-fs is not installed: run `cargo xtask setup`"
    );
    p
}
