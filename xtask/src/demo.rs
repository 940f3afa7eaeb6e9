//! `cargo xtask demo`: two clients syncing through `filesync-r2` on the embedded default (a
//! local-disk bucket and a SQLite relay), every step printed and checked.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

use crate::{TempDir, step};

/// The demo's sample file and its SHA-256 (a fixed test vector: `sha256sum` agrees).
const SAMPLE: &str = "Hello from filesync! This file was saved locally first.";
const SAMPLE_SHA256: &str = "835c5e78a26100c3f2fd8b1cd8075d7465e3b85a24d27dbe3fe2dbdb1271236b";
const EDITED: &str = "Hello again: Bob edited this file.";
const TOKEN: &str = "demo-token-0123456789abcdef";
const STORE: &str = "demo";

/// The server's pid while it runs, for the Ctrl-C handler.
static SERVER_PID: AtomicU32 = AtomicU32::new(0);

/// Stop the server and remove the demo's directory on Ctrl-C (SIGINT/SIGTERM), then exit 130.
fn on_interrupt(tmp: PathBuf) -> Result<()> {
    ctrlc::set_handler(move || {
        let pid = SERVER_PID.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&tmp);
        eprintln!(
            "\ndemo: interrupted; stopped the server and removed {}",
            tmp.display()
        );
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

/// The server process; stopped (SIGTERM, then kill) when dropped, so a failing step or an
/// early return never leaves it running; on Ctrl-C the handler stops it.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Start `bin --data-dir data --listen listen --token … extra…` and read the address it
    /// prints.
    fn start(bin: &Path, data: &Path, listen: &str, extra: &[&std::ffi::OsStr]) -> Result<Self> {
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", listen, "--token", TOKEN])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        SERVER_PID.store(child.id(), Ordering::SeqCst);
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        let read = std::io::BufReader::new(stdout).read_line(&mut line);
        let mut server = Self {
            child,
            addr: String::new(),
        };
        read.context("reading the server's address")?;
        server.addr = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("the server printed {line:?} instead of its address"))?
            .to_owned();
        Ok(server)
    }

    fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait()? {
                SERVER_PID.store(0, Ordering::SeqCst);
                return Ok(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        SERVER_PID.store(0, Ordering::SeqCst);
        Ok(status)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.stop();
        }
    }
}

/// `cargo xtask demo --web`: build the web demo, serve it with `filesync-r2` on a temporary
/// data directory, print its URL (and open it where there is a desktop), and run until Ctrl-C.
pub fn web(sh: &Shell) -> Result<()> {
    let site = crate::build_web(sh)?;
    cmd!(sh, "cargo build --quiet -p filesync-r2").run()?;
    let tmp = TempDir::new("web-demo")?;
    on_interrupt(tmp.0.clone())?;
    let port = std::env::var("FILESYNC_DEMO_PORT").unwrap_or_else(|_| "8787".into());
    let mut server = Server::start(
        &crate::target_dir().join("debug").join("filesync-r2"),
        &tmp.0.join("server"),
        &format!("127.0.0.1:{port}"),
        &["--static-dir".as_ref(), site.as_os_str()],
    )?;
    let addr = server.addr.clone();
    step("web demo: open this in a browser (several tabs: one leads, the others follow)");
    let url = format!("http://{addr}/?store={STORE}&token={TOKEN}");
    println!("{url}");
    open_browser(&url);
    println!(
        "CLI client: filesync --dir DIR --server http://{addr}/api --token {TOKEN} --store {STORE} sync"
    );
    println!("Ctrl-C stops the server and removes {}", tmp.0.display());
    let status = server.child.wait()?;
    ensure!(status.success(), "filesync-r2 exited with {status}");
    Ok(())
}

/// Open `url` in the desktop's browser when there is a desktop (`xdg-open` on Linux with a
/// display, `open` on macOS); otherwise the printed URL is all there is.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        Some("open")
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some("xdg-open")
    } else {
        None
    };
    if let Some(opener) = opener {
        match Command::new(opener)
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(_) => println!("(opened with {opener})"),
            Err(_) => println!("({opener} is not available: open the URL yourself)"),
        }
    }
}

/// One CLI client: its own directory (files + SQLite store).
struct Client<'a> {
    name: &'static str,
    cli: &'a Path,
    dir: PathBuf,
    server: String,
}

impl Client<'_> {
    fn run(&self, sh: &Shell, args: &[&str]) -> Result<String> {
        let (cli, dir, server) = (self.cli, &self.dir, &self.server);
        let out = cmd!(
            sh,
            "{cli} --dir {dir} --server {server} --token {TOKEN} --store {STORE} {args...}"
        )
        .ignore_status()
        .output()?;
        ensure!(
            out.status.success(),
            "{}: `filesync {}` failed: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8(out.stdout)?.trim_end().to_owned())
    }

    /// `sync`, printing what it reports.
    fn sync(&self, sh: &Shell) -> Result<()> {
        let out = self.run(sh, &["sync"])?;
        println!("{} $ filesync sync\n{}", self.name, indent(&out));
        Ok(())
    }

    /// The live files as (id, hash) pairs, from `ls --json`.
    fn files(&self, sh: &Shell) -> Result<Vec<(String, String)>> {
        let out = self.run(sh, &["--json", "ls"])?;
        let mut files = Vec::new();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let field = |name: &str| -> Result<String> {
                let pat = format!("\"{name}\":\"");
                let start = line.find(&pat).context("ls --json: a field is missing")? + pat.len();
                let len = line[start..]
                    .find('"')
                    .context("ls --json: unterminated field")?;
                Ok(line[start..start + len].to_owned())
            };
            files.push((field("fileId")?, field("contentHash")?));
        }
        Ok(files)
    }

    fn cat(&self, sh: &Shell, id: &str) -> Result<String> {
        self.run(sh, &["cat", id])
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn demo(sh: &Shell) -> Result<()> {
    step("demo: building the `filesync` CLI and the `filesync-r2` server");
    cmd!(sh, "cargo build --quiet -p filesync-cli -p filesync-r2").run()?;
    let target = crate::target_dir();
    let cli = target.join("debug").join("filesync");
    let r2 = target.join("debug").join("filesync-r2");
    let tmp = TempDir::new("demo")?;
    let data = tmp.0.join("server");
    on_interrupt(tmp.0.clone())?;

    step("1. start filesync-r2 on the embedded default: a local-disk bucket and a SQLite relay");
    let mut server = Server::start(&r2, &data, "127.0.0.1:0", &[])?;
    let url = format!("http://{}/api", server.addr);
    println!("filesync-r2 --data-dir {} --token …", data.display());
    println!(
        "ok: listening on {} (signer contract and relay under /api)",
        server.addr
    );

    let client = |name, dir: &str| Client {
        name,
        cli: &cli,
        dir: tmp.0.join(dir),
        server: url.clone(),
    };
    let (alice, bob) = (client("alice", "alice"), client("bob", "bob"));
    println!(
        "Two clients, each with its own directory and SQLite store: {} and {}",
        alice.dir.display(),
        bob.dir.display()
    );

    step("2. alice saves hello.txt: written locally first, named by its SHA-256");
    let sample = tmp.0.join("hello.txt");
    std::fs::write(&sample, SAMPLE)?;
    let saved = alice.run(sh, &["save", &sample.to_string_lossy()])?;
    println!("alice $ filesync save hello.txt\n{}", indent(&saved));
    let (id, hash) = match saved.split('\t').collect::<Vec<_>>().as_slice() {
        [id, hash, ..] => (id.to_string(), hash.to_string()),
        _ => bail!("unexpected output from save: {saved:?}"),
    };
    ensure!(
        hash == SAMPLE_SHA256,
        "hash {hash} is not the SHA-256 of the sample"
    );
    println!("ok: its id is {id} and its SHA-256 is {hash}");

    step("3. alice syncs: the event goes to the relay, the bytes to the bucket");
    alice.sync(sh)?;
    let object = data.join("objects").join(STORE).join(&hash);
    ensure!(
        std::fs::read(&object).ok().as_deref() == Some(SAMPLE.as_bytes()),
        "{} is not in the bucket",
        object.display()
    );
    println!("ok: the bucket holds objects/{STORE}/{hash}");

    step("4. bob syncs: the file arrives with the same SHA-256");
    bob.sync(sh)?;
    let files = bob.files(sh)?;
    println!("bob $ filesync ls\n{}", indent(&bob.run(sh, &["ls"])?));
    ensure!(
        files == vec![(id.clone(), hash.clone())],
        "bob lists {files:?}, expected [({id}, {hash})]"
    );
    let content = bob.cat(sh, &id)?;
    ensure!(content == SAMPLE, "bob reads {content:?}");
    println!("ok: bob has {id} with SHA-256 {hash}, byte for byte");

    step("5. bob updates the file; alice syncs and sees the new version");
    let edited = tmp.0.join("edited.txt");
    std::fs::write(&edited, EDITED)?;
    let updated = bob.run(sh, &["update", &id, &edited.to_string_lossy()])?;
    println!(
        "bob $ filesync update {id} edited.txt\n{}",
        indent(&updated)
    );
    let new_hash = updated
        .split('\t')
        .nth(1)
        .context("update printed no hash")?
        .to_owned();
    ensure!(new_hash != hash, "the update kept the old hash");
    bob.sync(sh)?;
    alice.sync(sh)?;
    let files = alice.files(sh)?;
    ensure!(
        files == vec![(id.clone(), new_hash.clone())],
        "alice lists {files:?}, expected [({id}, {new_hash})]"
    );
    let content = alice.cat(sh, &id)?;
    ensure!(content == EDITED, "alice reads {content:?}");
    println!("ok: alice has the edit, SHA-256 {new_hash}");

    step("6. alice deletes the file; bob syncs and it is gone everywhere");
    println!(
        "alice $ filesync rm {id}\n{}",
        indent(&alice.run(sh, &["rm", &id])?)
    );
    alice.sync(sh)?;
    bob.sync(sh)?;
    let files = bob.files(sh)?;
    ensure!(files.is_empty(), "bob still lists {files:?}");
    let new_object = data.join("objects").join(STORE).join(&new_hash);
    ensure!(
        !new_object.exists() && !object.exists(),
        "the bucket still holds the file's content"
    );
    println!("ok: bob lists nothing; the bucket no longer holds either version");

    step("7. stop the server");
    let status = server.stop()?;
    ensure!(status.success(), "filesync-r2 exited with {status}");
    println!("ok: filesync-r2 shut down cleanly");
    println!("\ndemo: every step showed what it claimed");
    Ok(())
}
