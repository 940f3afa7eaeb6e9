//! The `filesync-r2` binary as an operator runs it: refusals of bad settings, a complete
//! deployment from `--data-dir` alone (proxy, contract routes, relay, a signing secret that
//! survives restarts), an S3 bucket configured by flags and environment against a real S3
//! server, graceful shutdown, 1 GiB streamed up and down with the server's peak memory
//! measured, and a SIGKILL mid-upload whose staging file the next start sweeps.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{TOKEN, json};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_filesync-r2");

struct Running {
    child: tokio::process::Child,
    base: String,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Peak resident memory of the server (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }
}

async fn start(data_dir: &Path, extra: &[&str]) -> Running {
    start_env(data_dir, extra, &[]).await
}

/// [`start`] with extra environment variables.
async fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
    launch(tokio::process::Command::new(BIN), data_dir, extra, env).await
}

/// Run `command` (the binary, or a shell that execs it) as the server on `data_dir` with the
/// test token on a free port, and wait until it says where it listens.
async fn launch(
    mut command: tokio::process::Command,
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Running {
    let mut child = command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
        .args(extra)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = line.strip_prefix("listening on ").unwrap().to_owned();
    Running {
        child,
        base: format!("http://{addr}"),
    }
}

async fn refused(args: &[&str]) -> String {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("FILESYNC_TOKENS")
        .env_remove("FILESYNC_DATA_DIR")
        .env_remove("S3_ENDPOINT")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn bad_settings_are_refused_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(refused(&["--token", TOKEN]).await.contains("--data-dir"));
    assert!(
        refused(&["--data-dir", d])
            .await
            .contains("--allow-anonymous")
    );
    assert!(
        refused(&["--data-dir", d, "--token", "short"])
            .await
            .contains("at least 16 characters")
    );
    assert!(
        refused(&[
            "--data-dir",
            d,
            "--token",
            TOKEN,
            "--signing-secret",
            "short"
        ])
        .await
        .contains("--signing-secret")
    );
    assert!(
        refused(&["--token", TOKEN, "--s3-endpoint", "http://127.0.0.1:1"])
            .await
            .contains("--s3-bucket")
    );
    assert!(
        refused(&[
            "--token",
            TOKEN,
            "--s3-endpoint",
            "nonsense",
            "--s3-bucket",
            "b",
            "--s3-access-key-id",
            "a",
            "--s3-secret-access-key",
            "s"
        ])
        .await
        .contains("not an http(s) URL")
    );
}

async fn sign(base: &str, route: &str, key: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/sign/{route}"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": key, "contentType": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// With only `--data-dir` (and a token): health, signing, file routes and the relay all work;
/// the signing secret is kept, so a URL signed before a restart still works after it; SIGTERM
/// stops the server cleanly.
#[tokio::test]
async fn data_dir_alone_is_a_complete_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/api/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let up = sign(&server.base, "upload", "store/a.txt").await;
    let r = http
        .put(up["url"].as_str().unwrap())
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let down = sign(&server.base, "download", "store/a.txt").await;
    let url = down["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/livestore-filesync-files/", server.base)));
    // The relay: push one event, pull it back.
    let event = serde_json::json!({
        "name": "v1.FileCreated",
        "args": {
            "id": "f1",
            "path": "livestore-filesync-files/store/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "contentHash": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "createdAt": "2026-01-03T20:30:24.642Z",
            "updatedAt": "2026-01-03T20:30:24.642Z"
        },
        "seqNum": 1, "parentSeqNum": 0, "clientId": "c", "sessionId": "s"
    });
    let push = http
        .post(format!("{}/api/v1/stores/store/push", server.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"batch": [event]}))
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), 200, "{}", push.text().await.unwrap());
    let stopped = server.stop().await;
    assert!(stopped.success(), "{stopped}");

    let server = start(dir.path(), &[]).await;
    // The old URL names the old port; the path and query are what the signature covers.
    let (_, path) = url.split_once("/livestore-filesync-files/").unwrap();
    let again = http
        .get(format!("{}/livestore-filesync-files/{path}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), "hello");
    let pulled = json(
        http.get(format!("{}/api/v1/stores/store/pull?after=0", server.base))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(pulled["head"], 1);
    assert_eq!(pulled["events"][0]["args"]["id"], "f1");
    assert!(server.stop().await.success());
    assert!(dir.path().join("relay.sqlite").is_file());
    assert!(dir.path().join("signing-secret").is_file());
}

/// Deterministic pseudo-random bytes, `n` chunks of 1 MiB, generated as they are sent.
fn generated(chunks: usize) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures::stream::iter(0..chunks).map(|i| {
        let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v = Vec::with_capacity(1 << 20);
        for _ in 0..(1 << 17) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        Ok(bytes::Bytes::from(v))
    })
}

/// WEAK-15: 1 GiB up and down through the proxy (the test's client streams too); the bytes
/// round-trip and the server's peak RSS stays bounded (printed; the goal is < 64 MiB, the
/// check is < 256 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_streams_through_with_bounded_memory() {
    const CHUNKS: usize = 1024;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let mut want = filesync_core::hash::Hasher::new();
    let mut gen_stream = Box::pin(generated(CHUNKS));
    while let Some(c) = gen_stream.next().await {
        want.update(&c.unwrap());
    }
    let want = want.finish();
    let up = sign(&server.base, "upload", "big/one-gib.bin").await;
    let http = reqwest::Client::new();
    let r = http
        .put(up["url"].as_str().unwrap())
        .header("content-length", (CHUNKS << 20).to_string())
        .header("x-amz-checksum-sha256", base64_of(want.as_bytes()))
        .body(reqwest::Body::wrap_stream(generated(CHUNKS)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let after_upload = server.peak_rss_kib();
    let down = sign(&server.base, "download", "big/one-gib.bin").await;
    let r = http
        .get(down["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = filesync_core::hash::Hasher::new();
    let mut len = 0u64;
    let mut body = r.bytes_stream();
    while let Some(c) = body.next().await {
        let c = c.unwrap();
        len += c.len() as u64;
        got.update(&c);
    }
    assert_eq!(len, (CHUNKS as u64) << 20);
    assert_eq!(got.finish(), want);
    let peak = server.peak_rss_kib();
    println!(
        "filesync-r2 peak RSS: {:.1} MiB after a 1 GiB upload, {:.1} MiB after the download (goal < 64 MiB)",
        after_upload as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
    assert!(server.stop().await.success());
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The S3 settings as an operator gives them (flags, and the credentials in the environment),
/// with `--token-file`, `--base-path` and `--public-url`, against s3s-fs (which checks SigV4):
/// bytes put through the proxy land in the S3 bucket.
#[tokio::test]
async fn s3_bucket_from_flags_and_env() {
    use filesync_core::testing::s3s::S3s;
    let s3 = S3s::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(
        &token_file,
        "# photo uploader\nphotos-token-0123456789abcdef:photos/\n",
    )
    .unwrap();
    let endpoint = s3.endpoint();
    let server = start_env(
        dir.path(),
        &[
            "--s3-endpoint",
            &endpoint,
            "--s3-region",
            "us-east-1",
            "--s3-bucket",
            S3s::BUCKET,
            "--s3-force-path-style",
            "true",
            "--base-path",
            "/v2",
            "--public-url",
            "https://files.example.test",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[
            ("S3_ACCESS_KEY_ID", S3s::ACCESS_KEY),
            ("S3_SECRET_ACCESS_KEY", S3s::SECRET_KEY),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/v2/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let sign = |key: &'static str| {
        http.post(format!("{}/v2/v1/sign/upload", server.base))
            .bearer_auth("photos-token-0123456789abcdef")
            .json(&serde_json::json!({"key": key, "contentType": "text/plain"}))
            .send()
    };
    assert_eq!(
        sign("notes/x.txt").await.unwrap().status(),
        403,
        "outside the file's prefix"
    );
    let signed: serde_json::Value = sign("photos/a.txt").await.unwrap().json().await.unwrap();
    let url = signed["url"].as_str().unwrap();
    let path = url
        .strip_prefix("https://files.example.test")
        .unwrap_or_else(|| panic!("{url} is not under --public-url"));
    let put = http
        .put(format!("{}{path}", server.base))
        .header("content-type", "text/plain")
        .body("stored in S3")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    assert_eq!(
        std::fs::read_to_string(s3.root().join(S3s::BUCKET).join("photos/a.txt")).unwrap(),
        "stored in S3"
    );
    assert!(
        !dir.path().join("objects").exists(),
        "nothing went to a local bucket"
    );
    assert!(server.stop().await.success());
}

/// The relay is durable when it answers 200: a `filesync-r2` process killed with SIGKILL while
/// a client pushes, restarted on the same data directory, holds every event it acknowledged.
#[tokio::test]
async fn sigkilled_relay_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]).await;
    let base = server.base.clone();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let pusher = {
        let acked = std::sync::Arc::clone(&acked);
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for seq in 1u64.. {
                let event = serde_json::json!({
                    "name": "v1.FileDeleted",
                    "args": {"id": format!("file-{seq}"), "deletedAt": "2026-01-04T08:00:00.000Z"},
                    "seqNum": seq, "parentSeqNum": seq - 1, "clientId": "c", "sessionId": "s"
                });
                let answer = http
                    .post(format!("{base}/api/v1/stores/store/push"))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({ "batch": [event] }))
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(seq),
                    _ => return, // the server is gone
                }
            }
        })
    };
    for _ in 0..500 {
        if acked.lock().unwrap().len() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.start_kill().unwrap(); // SIGKILL, mid-push
    let _ = server.child.wait().await;
    let _ = pusher.await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "only {} pushes were answered",
        acked.len()
    );

    let server = start(dir.path(), &[]).await;
    let pulled = json(
        reqwest::Client::new()
            .get(format!(
                "{}/api/v1/stores/store/pull?after=0&limit=100000",
                server.base
            ))
            .bearer_auth(TOKEN),
    )
    .await;
    let events = pulled["events"].as_array().unwrap();
    for seq in &acked {
        let e = events
            .get(*seq as usize - 1)
            .unwrap_or_else(|| panic!("acknowledged event {seq} is gone"));
        assert_eq!(e["seqNum"], *seq);
        assert_eq!(e["args"]["id"], format!("file-{seq}"));
    }
    assert!(server.stop().await.success());
}

/// Every staging file (`<name>#<digits>`) under `dir`.
fn staging_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                pending.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()))
            {
                out.push(p);
            }
        }
    }
    out
}

/// Issue 12 (1d): a server killed with SIGKILL mid-upload leaves its staging file behind; the
/// object is never served while it is there, and the next start-up sweeps it, keeping the
/// objects that were completed.
#[tokio::test]
async fn sigkill_mid_upload_leaves_nothing_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let kept = sign(&server.base, "upload", "store/kept.txt").await;
    let r = http
        .put(kept["url"].as_str().unwrap())
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Declare 64 MiB, send 4 MiB, and hold the connection open.
    let up = sign(&server.base, "upload", "store/cut.bin").await;
    let url = up["url"].as_str().unwrap();
    let path_and_query = url.strip_prefix(&server.base).unwrap();
    let addr = server.base.strip_prefix("http://").unwrap();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut c,
        format!(
            "PUT {path_and_query} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            64 * 1024 * 1024
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![3u8; 1024 * 1024];
    for _ in 0..4 {
        tokio::io::AsyncWriteExt::write_all(&mut c, &chunk)
            .await
            .unwrap();
    }
    // The upload is under way: its staging file exists (and has bytes in it).
    let objects = dir.path().join("objects");
    let mut staged = Vec::new();
    for _ in 0..400 {
        staged = staging_files(&objects);
        if staged
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(staged.len(), 1, "{staged:?}");
    // Not an object while it is being written.
    let down = sign(&server.base, "download", "store/cut.bin").await;
    let r = http
        .get(down["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let mut server = server;
    server.child.start_kill().unwrap(); // SIGKILL, mid-upload
    server.child.wait().await.unwrap();
    drop(c);
    assert_eq!(
        staging_files(&objects),
        staged,
        "the killed process left its staging file"
    );

    let server = start(dir.path(), &[]).await;
    assert!(
        staging_files(dir.path()).is_empty(),
        "{:?}",
        staging_files(dir.path())
    );
    let down = sign(&server.base, "download", "store/cut.bin").await;
    let r = http
        .get(down["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let kept = sign(&server.base, "download", "store/kept.txt").await;
    let r = http
        .get(kept["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "kept");
    assert!(server.stop().await.success());
}

/// Everything the server sends on `stream` until it closes it (end of stream or a reset).
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The connection flags reach the binary's server: with `--max-connections 1` a client that
/// sent half its headers holds the only slot, so `/api/health` is answered only after
/// `--header-timeout-secs 1` has cut that client (an order of events: when the answer arrives
/// the cut, which came first, is already readable; the default cap would answer at once); with
/// `--body-timeout-secs 1` an upload that stops halfway is refused and leaves no object. A cap
/// of 0 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flags_take_effect() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(
        refused(&["--data-dir", d, "--token", TOKEN, "--max-connections", "0"])
            .await
            .contains("--max-connections")
    );
    let server = start(
        dir.path(),
        &[
            "--max-connections",
            "1",
            "--header-timeout-secs",
            "1",
            "--body-timeout-secs",
            "1",
        ],
    )
    .await;
    let addr = server.base.strip_prefix("http://").unwrap().to_owned();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let mut health = TcpStream::connect(&addr).await.unwrap();
    health
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let cut = until_closed(&mut stalled);
    let answer = until_closed(&mut health);
    tokio::pin!(cut, answer);
    let mut cut_seen = false;
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::select! {
                biased;
                _ = &mut cut, if !cut_seen => cut_seen = true,
                answer = &mut answer => return answer,
            }
        }
    })
    .await
    .expect("health was never answered");
    assert!(cut_seen, "answered while the only slot was held: {answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let up = sign(&server.base, "upload", "store/stalled.txt").await;
    let url = url::Url::parse(up["url"].as_str().unwrap()).unwrap();
    let mut head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10\r\n",
        url.path(),
        url.query().unwrap_or_default()
    );
    for (name, value) in up["headers"].as_object().into_iter().flatten() {
        head.push_str(&format!("{name}: {}\r\n", value.as_str().unwrap()));
    }
    head.push_str("\r\nhello");
    let mut upload = TcpStream::connect(&addr).await.unwrap();
    upload.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), until_closed(&mut upload))
        .await
        .expect("the stalled upload was never cut");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let down = sign(&server.base, "download", "store/stalled.txt").await;
    let got = reqwest::get(down["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(got.status(), 404, "nothing was stored");
    assert!(server.stop().await.success());
}

/// The attack from the hardening issue, at a smaller scale: under a 64-descriptor limit, 80
/// clients that each send half a request no longer stop `/api/health`. The cap (16) keeps the
/// server within its descriptors, the header timeout (1 s) cuts the stalled clients, and the
/// health request, queued behind all 80 in the listen backlog, is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_beyond_the_descriptor_limit_do_not_stop_health() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let mut shell = tokio::process::Command::new("sh");
    shell.args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", BIN]);
    let mut server = launch(
        shell,
        dir.path(),
        &["--max-connections", "16", "--header-timeout-secs", "1"],
        &[("RUST_LOG", "error")],
    )
    .await;
    let addr = server.base.strip_prefix("http://").unwrap().to_owned();
    let mut stalled = Vec::new();
    for _ in 0..80 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: te")
            .await
            .unwrap();
        stalled.push(s);
    }
    let mut health = TcpStream::connect(&addr).await.unwrap();
    health
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(60), until_closed(&mut health))
        .await
        .expect("health was never answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stalled);
    let _ = server.child.kill().await;
}
