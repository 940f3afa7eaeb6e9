//! The `filesync-r2` binary as an operator runs and watches it: one log line per request
//! (method, route template, status, latency; no query string, token, key or colour code when
//! stderr is not a terminal), `--log-format json`, health 503 naming the failing part and
//! why with the version, listening on every interface refused without `--public-url`, a
//! clamped `--max-expiry-secs` warned about, `--listen` with a host name, and the systemd unit
//! in `docs/deploy/` checked by `systemd-analyze verify` when the machine has it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_filesync-r2");
const TOKEN: &str = "operator-test-token-0123456789";

/// The server, its stderr going to a file (not a terminal, as under systemd or docker).
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

/// Start the binary on `data_dir` with the test token and `args`, `RUST_LOG=info`, stderr to
/// a file; wait until it says where it listens.
async fn start(data_dir: &Path, args: &[&str]) -> Running {
    let stderr = data_dir.join("stderr.log");
    let mut child = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--token", TOKEN])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("FILESYNC_LOG_FORMAT")
        .env_remove("FILESYNC_PUBLIC_URL")
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

/// Run the binary with `args` to its end (at most 20 s: it is expected to refuse to start);
/// its exit code and stderr.
async fn run_to_end(data_dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--token", TOKEN])
        .args(args)
        .env_remove("FILESYNC_PUBLIC_URL")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap_or_else(|_| panic!("{args:?}: still running after 20 s"))
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

fn request_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("finished processing request"))
        .collect()
}

/// Each request is one INFO line with its method, route template, status and latency; no
/// line holds a query string, a signature, the token, an object key or an ANSI escape.
#[tokio::test]
async fn one_line_per_request_without_secrets_or_colour() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    let http = reqwest::Client::new();
    let health = http
        .get(server.url("/api/health?token=query-secret-value"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let signed: serde_json::Value = http
        .post(server.url("/api/v1/sign/upload"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": "store/secret-object-name"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = signed["url"].as_str().unwrap();
    assert!(url.contains("sig="), "{url}");
    let put = http.put(url).body("hello").send().await.unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let unknown = http
        .get(server.url("/api/no/such/route"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let log = server.stop().await;

    let lines = request_lines(&log);
    assert_eq!(lines.len(), 4, "one line per request:\n{log}");
    for (line, (method, route, status)) in lines.iter().zip([
        ("GET", "/api/health", 200),
        ("POST", "/api/v1/sign/upload", 200),
        (
            "PUT",
            "/livestore-filesync-files/{*key}",
            put.status().as_u16(),
        ),
        ("GET", "-", 404),
    ]) {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(&format!("method={method}")), "{line}");
        assert!(line.contains(&format!("route=\"{route}\"")), "{line}");
        assert!(line.contains(&format!("status={status}")), "{line}");
        assert!(line.contains("latency="), "{line}");
    }
    for secret in [
        "query-secret-value",
        "sig=",
        "exp=",
        "?",
        TOKEN,
        "secret-object-name",
        "/no/such/route",
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
}

/// `--log-format json`: every line is a JSON object; a request's has the route and method in
/// its span and the status in its fields.
#[tokio::test]
async fn json_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let health = reqwest::get(server.url("/api/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let log = server.stop().await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["fields"]["message"] == "finished processing request")
        .unwrap_or_else(|| panic!("no request line:\n{log}"));
    assert_eq!(request["level"], "INFO");
    assert_eq!(request["span"]["route"], "/api/health");
    assert_eq!(request["span"]["method"], "GET");
    assert_eq!(request["fields"]["status"], 200);
    // The variable works too.
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(BIN);
    command
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--token", TOKEN, "--listen", "127.0.0.1:0"])
        .env("FILESYNC_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), err.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_str::<serde_json::Value>(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
}

/// A bucket that fails its probe: 503 with the original's fields (`status`, `bucket`,
/// `timestamp`), the failing part and why, and the version; healthy again once it is back.
#[tokio::test]
async fn health_503_names_the_failing_part_and_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    let ok = reqwest::get(server.url("/api/health")).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["bucket"], true);
    assert!(body["timestamp"].is_string(), "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body.get("failing").is_none(), "{body}");

    let objects = dir.path().join("objects");
    std::fs::rename(&objects, dir.path().join("objects.away")).unwrap();
    let failed = reqwest::get(server.url("/api/health")).await.unwrap();
    assert_eq!(failed.status(), 503);
    let body: serde_json::Value = failed.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["bucket"], false);
    assert!(body["timestamp"].is_string(), "{body}");
    assert_eq!(body["failing"], "bucket");
    assert_eq!(body["reason"], "a bucket directory is missing");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    // The reason is public: it names no path.
    assert!(
        !body.to_string().contains(dir.path().to_str().unwrap()),
        "{body}"
    );

    std::fs::rename(dir.path().join("objects.away"), &objects).unwrap();
    let back = reqwest::get(server.url("/api/health")).await.unwrap();
    assert_eq!(back.status(), 200);
    let log = server.stop().await;
    assert!(log.contains("a bucket directory is missing"), "{log}");
}

/// Signed file URLs start with the public URL, so listening on every interface without
/// `--public-url` is refused, naming the flag; with it, the server starts.
#[tokio::test]
async fn every_interface_without_public_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (code, stderr) = run_to_end(dir.path(), &["--listen", listen]).await;
        assert_eq!(code, Some(2), "{listen}: {stderr}");
        assert!(stderr.contains("--public-url"), "{listen}: {stderr}");
        assert!(stderr.contains("FILESYNC_PUBLIC_URL"), "{listen}: {stderr}");
        assert!(stderr.contains("every interface"), "{listen}: {stderr}");
    }
    let server = start(
        dir.path(),
        &[
            "--listen",
            "0.0.0.0:0",
            "--public-url",
            "https://files.example.com",
        ],
    )
    .await;
    let port = server.addr.rsplit_once(':').unwrap().1.to_owned();
    let signed: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/sign/download"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": "store/k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        signed["url"]
            .as_str()
            .unwrap()
            .starts_with("https://files.example.com/livestore-filesync-files/store/k?"),
        "{signed}"
    );
    server.stop().await;
}

/// A `--max-expiry-secs` outside 1..=3600 is clamped, and the log says so; URLs live 3600 s.
#[tokio::test]
async fn clamped_max_expiry_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--max-expiry-secs", "86400"],
    )
    .await;
    let signed: serde_json::Value = reqwest::Client::new()
        .post(server.url("/api/v1/sign/download"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": "store/k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exp: u64 = signed["url"]
        .as_str()
        .unwrap()
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("exp="))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(exp <= now + 3600, "exp {exp} now {now}");
    let log = server.stop().await;
    let warning = log
        .lines()
        .find(|l| l.contains("--max-expiry-secs"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(warning.contains("requested=86400"), "{warning}");
    assert!(warning.contains("used=3600"), "{warning}");
}

/// `--listen localhost:0` is resolved (to a loopback address) and served.
#[tokio::test]
async fn listen_accepts_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--listen", "localhost:0"]).await;
    let ip: std::net::SocketAddr = server.addr.parse().unwrap();
    assert!(ip.ip().is_loopback(), "{ip}");
    let health = reqwest::get(server.url("/api/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
    let (code, stderr) = run_to_end(dir.path(), &["--listen", "localhost"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");
}

/// `docs/deploy/filesync-r2.service` passes `systemd-analyze verify` (with `ExecStart`
/// pointing at the binary under test); skipped where systemd is absent.
#[test]
fn systemd_unit_verifies() {
    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze not found: the unit is not checked here");
        return;
    };
    assert!(version.status.success());
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy/filesync-r2.service");
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/filesync-r2 "),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("filesync-r2.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/filesync-r2", BIN)
            .replace("/etc/filesync-r2/tokens", "/dev/null"),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // It also reports some problems (unknown settings, bad values) without failing.
    for problem in ["Unknown", "Failed to parse", "Invalid", "ignoring"] {
        assert!(
            !stderr.contains(problem),
            "systemd-analyze verify: {stderr}"
        );
    }
}
