//! End to end in headless Chromium (Debian's `chromium` + `chromium-driver`, driven over
//! WebDriver with fantoccini): the web demo served by `filesync-r2 --static-dir`, and a native
//! `filesync` CLI client on the same store.
//!
//! - a file added in the browser (through the file picker) arrives byte-identical in the CLI;
//! - a file saved by the CLI shows in the browser's gallery (the image decodes);
//! - two tabs of the origin elect one leader; a file added in the follower tab is uploaded
//!   by the leader; the follower takes over when the leader's tab closes;
//! - a screenshot of the gallery is saved as `target/e2e/gallery.png`.
//!
//! The test builds what it needs (`cargo xtask web`, the server and the CLI) first.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "e2e-token-0123456789abcdef";
const STORE: &str = "e2e";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn run(cmd: &mut std::process::Command) {
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?}: {status}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PNG of `w`×`h` pixels in one colour, with stored (uncompressed) deflate blocks: enough
/// for the browser to decode and show, no image crate needed.
fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            // A diagonal stripe so the picture is not one flat colour.
            let shade = if (x + y) % 16 < 8 { 0 } else { 40 };
            raw.extend(rgb.iter().map(|c| c.saturating_sub(shade)));
        }
    }
    let mut z = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65_535).enumerate() {
        let last = (i + 1) * 65_535 >= raw.len();
        z.push(u8::from(last));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A child process killed when dropped (`kill_on_drop`).
struct Killed(#[allow(dead_code)] tokio::process::Child);

async fn start_server(dir: &Path, site: &Path) -> (Killed, String) {
    let mut child = tokio::process::Command::new(target().join("debug/filesync-r2"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--static-dir")
        .arg(site)
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let addr = line.strip_prefix("listening on ").unwrap().to_owned();
    (Killed(child), format!("http://{addr}"))
}

async fn start_driver() -> (Killed, u16) {
    let port = free_port();
    let child = tokio::process::Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver (apt-get install chromium-driver; `cargo xtask setup` does)");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (Killed(child), port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(port: u16, profile: &Path) -> Client {
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--window-size=1100,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap()
}

/// Poll `f` every 100 ms for up to `secs` seconds until it returns `Some`.
async fn until<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's view of a file: its state, and whether its image has decoded.
async fn card(c: &Client, hash: &str) -> Option<(String, bool)> {
    let v = c
        .execute(
            "const el = document.querySelector(`[data-hash=\"${arguments[0]}\"]`);
             if (!el) return null;
             const img = el.querySelector('img');
             return [el.dataset.state, !!(img && img.complete && img.naturalWidth > 0)];",
            vec![serde_json::json!(hash)],
        )
        .await
        .unwrap();
    let arr = v.as_array()?;
    Some((arr[0].as_str()?.to_owned(), arr[1].as_bool()?))
}

async fn leader(c: &Client) -> Option<bool> {
    let v = c
        .execute(
            "const s = document.getElementById('status'); return s && s.dataset.leader;",
            vec![],
        )
        .await
        .unwrap();
    v.as_str().map(|s| s == "true")
}

fn cli(dir: &Path, server: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(target().join("debug/filesync"))
        .arg("--dir")
        .arg(dir)
        .args(["--server", &format!("{server}/api"), "--token", TOKEN])
        .args(["--store", STORE])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "filesync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256(data: &[u8]) -> String {
    filesync_core::hash::hash_bytes(data).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_and_cli_sync_and_tabs_elect_one_leader() {
    let root = root();
    run(std::process::Command::new("cargo")
        .args(["xtask", "web"])
        .current_dir(&root));
    run(std::process::Command::new("cargo")
        .args(["build", "-q", "-p", "filesync-r2", "-p", "filesync-cli"])
        .current_dir(&root));
    let tmp = tempfile::tempdir().unwrap();
    let (_server, base) = start_server(&tmp.path().join("server"), &target().join("web")).await;
    let (_driver, port) = start_driver().await;
    let c = browser(port, &tmp.path().join("profile")).await;
    let page = format!("{base}/?store={STORE}&token={TOKEN}");
    c.goto(&page).await.unwrap();
    until("the first tab leads", 30, || async {
        leader(&c).await.filter(|l| *l)
    })
    .await;

    // A file added in the browser arrives byte-identical in the CLI.
    let from_browser = png(96, 64, [60, 120, 230]);
    let upload = tmp.path().join("from-browser.png");
    std::fs::write(&upload, &from_browser).unwrap();
    let picker = c.find(Locator::Css("#picker")).await.unwrap();
    picker.send_keys(upload.to_str().unwrap()).await.unwrap();
    let hash = sha256(&from_browser);
    until("the browser's file is synced", 60, || async {
        card(&c, &hash).await.filter(|(s, _)| s == "synced")
    })
    .await;
    let cli_dir = tmp.path().join("cli");
    cli(&cli_dir, &base, &["sync"]);
    let listed = cli(&cli_dir, &base, &["--json", "ls"]);
    let entry: serde_json::Value = listed
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["contentHash"] == hash.as_str())
        .unwrap_or_else(|| panic!("the CLI does not list {hash}: {listed}"));
    let copy = tmp.path().join("copy.png");
    cli(
        &cli_dir,
        &base,
        &[
            "cat",
            entry["fileId"].as_str().unwrap(),
            "--output",
            copy.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read(&copy).unwrap() == from_browser,
        "bytes differ"
    );

    // A file saved by the CLI shows in the browser's gallery.
    let from_cli = png(96, 64, [240, 150, 40]);
    let saved = tmp.path().join("from-cli.png");
    std::fs::write(&saved, &from_cli).unwrap();
    cli(&cli_dir, &base, &["save", saved.to_str().unwrap()]);
    cli(&cli_dir, &base, &["sync"]);
    let cli_hash = sha256(&from_cli);
    until("the CLI's image shows in the gallery", 60, || async {
        card(&c, &cli_hash)
            .await
            .filter(|(s, shown)| s == "synced" && *shown)
    })
    .await;
    // Both images decoded in the gallery before the screenshot, so a person sees them.
    until("the browser's own image shows", 60, || async {
        card(&c, &hash)
            .await
            .filter(|(s, shown)| s == "synced" && *shown)
    })
    .await;
    let png_bytes = c.screenshot().await.unwrap();
    let shot = target().join("e2e").join("gallery.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, &png_bytes).unwrap();
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24: a whole window, not a blank stub.
    let dim = |at: usize| u32::from_be_bytes(png_bytes[at..at + 4].try_into().unwrap());
    assert!(
        dim(16) >= 400 && dim(20) >= 300,
        "screenshot is {}x{}",
        dim(16),
        dim(20)
    );
    println!("screenshot: {}", shot.display());

    // Two tabs: one leads; closing it hands leadership to the other.
    let first = c.window().await.unwrap();
    let second = c.new_window(true).await.unwrap().handle;
    c.switch_to_window(second.clone()).await.unwrap();
    c.goto(&page).await.unwrap();
    until("the second tab follows", 30, || async {
        leader(&c).await.filter(|l| !*l)
    })
    .await;
    // ENG-19: a follower tab may save; the leader tab uploads it.
    let from_follower = png(96, 64, [70, 180, 90]);
    let follower_file = tmp.path().join("from-follower.png");
    std::fs::write(&follower_file, &from_follower).unwrap();
    c.find(Locator::Css("#picker"))
        .await
        .unwrap()
        .send_keys(follower_file.to_str().unwrap())
        .await
        .unwrap();
    let follower_hash = sha256(&from_follower);
    until(
        "the follower's file is synced by the leader",
        60,
        || async {
            card(&c, &follower_hash)
                .await
                .filter(|(s, _)| s == "synced")
        },
    )
    .await;
    cli(&cli_dir, &base, &["sync"]);
    let listed = cli(&cli_dir, &base, &["--json", "ls"]);
    assert!(
        listed.contains(&follower_hash),
        "the CLI does not list the follower's file: {listed}"
    );
    c.switch_to_window(first).await.unwrap();
    assert_eq!(leader(&c).await, Some(true), "the first tab still leads");
    c.close_window().await.unwrap();
    c.switch_to_window(second).await.unwrap();
    let started = Instant::now();
    until("the second tab takes over", 15, || async {
        leader(&c).await.filter(|l| *l)
    })
    .await;
    println!("takeover after {:?}", started.elapsed());
    // The new leader sees everything, and does the transfers now: a file the CLI saves after
    // the takeover is downloaded and shown by this tab (the only one left).
    assert!(card(&c, &hash).await.is_some() && card(&c, &cli_hash).await.is_some());
    let after = png(96, 64, [200, 60, 160]);
    let after_file = tmp.path().join("after-takeover.png");
    std::fs::write(&after_file, &after).unwrap();
    cli(&cli_dir, &base, &["save", after_file.to_str().unwrap()]);
    cli(&cli_dir, &base, &["sync"]);
    let after_hash = sha256(&after);
    until(
        "the new leader downloads and shows the CLI's new image",
        60,
        || async {
            card(&c, &after_hash)
                .await
                .filter(|(s, shown)| s == "synced" && *shown)
        },
    )
    .await;
    c.close().await.unwrap();
}
