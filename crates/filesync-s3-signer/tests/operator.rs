//! The `filesync-s3-signer` binary as an operator runs it, against a real S3 server (`s3s-fs`):
//! health 503 naming the failing part and why (the bucket missing, S3 unreachable) with the
//! version; listening on every interface needs no `--public-url` (its URLs point at S3, not at
//! itself); one log line per request without the token or the signed URL.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use filesync_core::testing::s3s::S3s;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_filesync-s3-signer");
const TOKEN: &str = "operator-test-token-0123456789";

struct Running {
    child: tokio::process::Child,
    /// `host:port` it printed.
    addr: String,
    stderr: PathBuf,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stop it with SIGTERM and return what it logged.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status}");
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

/// The signer for `s3`'s bucket on `listen`, `RUST_LOG=info`, stderr to a file in `dir`.
async fn start(s3: &S3s, listen: &str, dir: &Path) -> Running {
    let stderr = dir.join("stderr.log");
    let mut child = tokio::process::Command::new(BIN)
        .args(["--listen", listen, "--token", TOKEN])
        .args(["--s3-endpoint", &s3.endpoint(), "--s3-region", "us-east-1"])
        .args(["--s3-bucket", S3s::BUCKET, "--s3-force-path-style", "true"])
        .args(["--s3-access-key-id", S3s::ACCESS_KEY])
        .args(["--s3-secret-access-key", S3s::SECRET_KEY])
        .env("RUST_LOG", "info")
        .env_remove("FILESYNC_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "exited before listening: {}",
                std::fs::read_to_string(&stderr).unwrap()
            )
        });
    let addr = line.strip_prefix("listening on ").unwrap().to_owned();
    Running {
        child,
        addr,
        stderr,
    }
}

async fn health(server: &Running) -> (u16, serde_json::Value) {
    let r = reqwest::get(server.url("/api/health")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// 200 with the version while the bucket answers; 503 naming the bucket and why when it is
/// gone (S3 answers 404) and when S3 is down (connection refused).
#[tokio::test]
async fn health_503_names_the_failing_part_and_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3s::start().await;
    let server = start(&s3, "127.0.0.1:0", dir.path()).await;
    let version = env!("CARGO_PKG_VERSION");

    let (status, body) = health(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "version": version})
    );

    let bucket = s3.root().join(S3s::BUCKET);
    std::fs::rename(&bucket, s3.root().join("elsewhere")).unwrap();
    let (status, body) = health(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        serde_json::json!({
            "status": "error",
            "failing": "bucket",
            "reason": "S3 answered 404",
            "version": version,
        })
    );

    drop(s3);
    let (status, body) = health(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failing"], "bucket");
    assert_eq!(body["reason"], "S3 could not be reached");
    assert_eq!(body["version"], version);
    let log = server.stop().await;
    assert!(
        log.contains("health: the bucket could not be reached"),
        "{log}"
    );
}

/// The signer's URLs point at S3, so listening on every interface is fine without a public
/// URL; each request is one INFO line with the route template and no token or signed URL.
#[tokio::test]
async fn every_interface_is_allowed_and_requests_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3s::start().await;
    let server = start(&s3, "0.0.0.0:0", dir.path()).await;
    let port = server.addr.rsplit_once(':').unwrap().1.to_owned();
    let signed: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/sign/download"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": "store/secret-object-name"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = signed["url"].as_str().unwrap();
    assert!(url.starts_with(&s3.endpoint()), "{url}");
    let log = server.stop().await;
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("finished processing request"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains(" INFO "), "{}", lines[0]);
    assert!(
        lines[0].contains("route=\"/api/v1/sign/download\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("status=200"), "{}", lines[0]);
    for secret in [TOKEN, "X-Amz-Signature", "secret-object-name", "?"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
}
