//! The full product path: two `filesync` CLI processes in separate directories against
//! `filesync-s3-signer --relay-db` and a real SigV4-checking S3 server (s3s-fs): save, update
//! and delete on one, `sync` on the other shows the same hashes.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::{stdout, succeeds};

mod common;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on {port}");
}

fn tool(name: &str) -> PathBuf {
    let here = PathBuf::from(env!("CARGO_BIN_EXE_filesync"));
    let sibling = here.with_file_name(name);
    if sibling.is_file() {
        return sibling;
    }
    let cargo_bin = PathBuf::from(std::env::var_os("HOME").unwrap())
        .join(".cargo/bin")
        .join(name);
    assert!(
        cargo_bin.is_file(),
        "{name} not found: build the workspace and run `cargo xtask setup`"
    );
    cargo_bin
}

/// `filesync --dir DIR --server SERVER --token TOKEN --store demo`, ready for a subcommand.
fn filesync(dir: &Path, server: &str, token: &str) -> Command {
    let mut c = common::filesync(dir);
    c.args(["--server", server, "--token", token, "--store", "demo"]);
    c
}

const TOKEN: &str = "product-test-token-123";

fn cli(dir: &Path, server: &str, args: &[&str]) -> Output {
    succeeds(
        filesync(dir, server, TOKEN).env("RUST_BACKTRACE", "0"),
        args,
    )
}

struct Servers {
    tmp: tempfile::TempDir,
    server: String,
    _s3: Kill,
    _signer: Kill,
}

fn start_servers() -> Servers {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("s3/bkt")).unwrap();
    let s3_port = free_port();
    let s3 = Kill(
        Command::new(tool("s3s-fs"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &s3_port.to_string(),
                "--access-key",
                "AK",
                "--secret-key",
                "product-secret",
            ])
            .arg(tmp.path().join("s3"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(s3_port);
    let port = free_port();
    let signer = Kill(
        Command::new(tool("filesync-s3-signer"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--s3-endpoint",
                &format!("http://127.0.0.1:{s3_port}"),
            ])
            .args([
                "--s3-region",
                "us-east-1",
                "--s3-bucket",
                "bkt",
                "--s3-access-key-id",
                "AK",
                "--s3-secret-access-key",
                "product-secret",
            ])
            .args([
                "--s3-force-path-style",
                "true",
                "--token",
                &format!("{TOKEN}:demo/"),
                "--relay-db",
            ])
            .arg(tmp.path().join("relay.sqlite"))
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    Servers {
        server: format!("http://127.0.0.1:{port}/api"),
        tmp,
        _s3: s3,
        _signer: signer,
    }
}

#[test]
fn two_cli_processes_sync_through_signer_relay_and_s3() {
    let servers = start_servers();
    let (tmp, server) = (&servers.tmp, servers.server.clone());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let file = tmp.path().join("photo.txt");
    std::fs::write(&file, b"bytes from client A").unwrap();

    let saved = stdout(&cli(&a, &server, &["save", file.to_str().unwrap()]));
    let (id, hash) = {
        let f: Vec<&str> = saved.split('\t').collect();
        (f[0].to_owned(), f[1].to_owned())
    };
    cli(&a, &server, &["sync"]);
    cli(&b, &server, &["sync"]);
    let listed = stdout(&cli(&b, &server, &["--json", "ls"]));
    let row: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(
        (row["fileId"].as_str(), row["contentHash"].as_str()),
        (Some(id.as_str()), Some(hash.as_str()))
    );
    assert_eq!(row["state"], "local");
    assert_eq!(row["upload"], "uploaded", "B's copy came from the bucket");
    assert_eq!(
        stdout(&cli(&b, &server, &["cat", &id])),
        "bytes from client A"
    );

    std::fs::write(&file, b"edited on B").unwrap();
    let updated = stdout(&cli(&b, &server, &["update", &id, file.to_str().unwrap()]));
    let new_hash = updated.trim().split('\t').nth(1).unwrap().to_owned();
    cli(&b, &server, &["sync"]);
    cli(&a, &server, &["sync"]);
    assert_eq!(stdout(&cli(&a, &server, &["cat", &id])), "edited on B");
    let listed = stdout(&cli(&a, &server, &["--json", "ls"]));
    let row: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(
        row["contentHash"].as_str(),
        Some(new_hash.as_str()),
        "A sees B's update with the same hash"
    );
    assert!(tmp.path().join(format!("s3/bkt/demo/{new_hash}")).is_file());

    cli(&a, &server, &["rm", &id]);
    cli(&a, &server, &["sync"]);
    cli(&b, &server, &["sync"]);
    assert_eq!(stdout(&cli(&b, &server, &["ls"])).trim(), "");
    assert!(
        !tmp.path().join(format!("s3/bkt/demo/{new_hash}")).exists(),
        "the object was not deleted"
    );

    let bad = filesync(&b, &server, "wrong-token-000000")
        .arg("sync")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("refused the token"));
}

/// How many events of store `demo` the relay holds (`None` while the database is busy).
fn relay_events(relay: &rusqlite::Connection) -> Option<i64> {
    relay
        .query_row(
            "SELECT COUNT(*) FROM relayEvents WHERE store = 'demo'",
            [],
            |r| r.get(0),
        )
        .ok()
}

/// How many synced events the client holds in its own log, pushed or not (`None` while the
/// database is busy).
fn local_events(store: &rusqlite::Connection) -> Option<i64> {
    store
        .query_row("SELECT COUNT(*) FROM eventlog", [], |r| r.get(0))
        .ok()
}

/// Connections (used only to read) to the relay's database and to the client's store in `dir`.
fn databases(tmp: &Path, dir: &Path) -> (rusqlite::Connection, rusqlite::Connection) {
    let open = |path: PathBuf| {
        let c = rusqlite::Connection::open(path).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c
    };
    (
        open(tmp.join("relay.sqlite")),
        open(dir.join("filesync.sqlite")),
    )
}

/// Start `filesync watch` on `dir` and SIGKILL it as soon as the relay has gained events in
/// this run while the client's log holds more than the relay (a push done, another owed).
/// Returns the relay's count before the run.
fn kill_while_pushing(tmp: &Path, dir: &Path, server: &str) -> i64 {
    let (relay, store) = databases(tmp, dir);
    let before = relay_events(&relay).unwrap();
    // `--reconfigure`: the directory remembers the offline URL its files were saved with.
    let mut child = filesync(dir, server, TOKEN)
        .args(["--reconfigure", "watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let (Some(r), Some(l)) = (relay_events(&relay), local_events(&store))
            && before < r
            && r < l
        {
            break;
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("watch never had a push owed after one landed (relay {before})");
        }
        std::thread::sleep(Duration::from_millis(1)); // polling, not a proof
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    before
}

/// A client process killed with SIGKILL while pushing and uploading restarts and finishes:
/// the relay ends with every event exactly once.
///
/// Each of the five kills must land mid-push: that run pushed something (the relay gained
/// events) and the client's log still held events the relay did not (the relay is behind the
/// only client writing to it), read from both databases after the kill. The test kills when it
/// sees that state; if the push caught up between seeing it and the kill, the kill point is
/// retried with a new `watch`, up to five times.
#[test]
fn sigkilled_client_neither_loses_nor_duplicates_events() {
    const FILES: usize = 40;
    const KILLS: usize = 5;
    const TRIES: usize = 5;
    let servers = start_servers();
    let (tmp, server) = (&servers.tmp, servers.server.clone());
    let a = tmp.path().join("a");
    let mut files = Vec::new();
    for n in 0..FILES {
        let f = tmp.path().join(format!("f{n}.txt"));
        std::fs::write(&f, format!("file number {n}")).unwrap();
        files.push(f.to_str().unwrap().to_owned());
    }
    let mut args = vec!["save"];
    args.extend(files.iter().map(String::as_str));
    // Saved offline (nothing listens there), so every push and upload is left to the kills.
    let offline = format!("http://127.0.0.1:{}/api", free_port());
    succeeds(&mut filesync(&a, &offline, TOKEN), &args);
    let mut landed = Vec::new();
    for kill in 1..=KILLS {
        let mut tries = 0;
        loop {
            tries += 1;
            let before = kill_while_pushing(tmp.path(), &a, &server);
            // The process is dead: what the two logs hold now is what they held at the kill.
            let (relay_db, store_db) = databases(tmp.path(), &a);
            let (relay, local) = (
                relay_events(&relay_db).unwrap(),
                local_events(&store_db).unwrap(),
            );
            assert!(
                relay <= local,
                "the relay holds {relay}, the client {local}"
            );
            if before < relay && relay < local {
                landed.push((kill, tries, before, relay, local));
                break;
            }
            assert!(
                tries < TRIES,
                "kill {kill} never landed mid-push in {TRIES} tries (last: relay {before} -> \
                 {relay}, client {local}); landed so far: {landed:?}"
            );
        }
    }
    eprintln!(
        "{} of {KILLS} kill points landed mid-push (kill, tries, relay before, relay after, \
         client log): {landed:?}",
        landed.len()
    );
    cli(&a, &server, &["sync"]);
    let b = tmp.path().join("b");
    cli(&b, &server, &["sync"]);
    let listed = stdout(&cli(&b, &server, &["--json", "ls"]));
    assert_eq!(listed.lines().count(), FILES);
    assert!(
        listed.lines().all(|l| l.contains(r#""state":"local""#)),
        "{listed}"
    );
    let relay = rusqlite::Connection::open(tmp.path().join("relay.sqlite")).unwrap();
    let (count, distinct, max): (i64, i64, i64) = relay
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT name || args), MAX(seq) FROM relayEvents WHERE store = 'demo'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(count, max, "sequence numbers have no gaps");
    assert_eq!(count, distinct, "no event is stored twice");
    assert_eq!(
        Some(count),
        local_events(&databases(tmp.path(), &a).1),
        "the relay holds the client's whole log"
    );
    let created: i64 = relay
        .query_row(
            "SELECT COUNT(*) FROM relayEvents WHERE name = 'v1.FileCreated'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(created, FILES as i64);
}

/// `watch` prints files created, updated and deleted on other devices as they arrive; a client
/// whose server is unreachable still saves (offline) and pushes on its next `sync`; `sync`
/// against an unreachable server fails with the reason.
#[test]
fn watch_prints_remote_changes_and_offline_saves_sync_later() {
    use std::io::BufRead;
    let servers = start_servers();
    let (tmp, server) = (&servers.tmp, servers.server.clone());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut watch = Kill(
        filesync(&b, &server, TOKEN)
            .arg("watch")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let out = watch.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("watch printed no line for {what}"))
    };

    // Offline: the server's port has nothing listening.
    let offline = format!("http://127.0.0.1:{}/api", free_port());
    let file = tmp.path().join("offline.txt");
    std::fs::write(&file, b"written while offline").unwrap();
    let saved = filesync(&a, &offline, TOKEN)
        .arg("save")
        .arg(&file)
        .output()
        .unwrap();
    assert!(saved.status.success(), "{saved:?}");
    assert!(String::from_utf8_lossy(&saved.stderr).contains("working offline"));
    let id = stdout(&saved).split('\t').next().unwrap().to_owned();
    let failed = filesync(&a, &offline, TOKEN).arg("sync").output().unwrap();
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("cannot reach"),
        "{failed:?}"
    );

    // Back online (`--reconfigure`: A remembers the offline URL): A's offline save reaches
    // B's watch.
    succeeds(filesync(&a, &server, TOKEN).arg("--reconfigure"), &["sync"]);
    let line = next("the offline save");
    assert!(
        line.starts_with(&format!("created\t{id}\t")),
        "watch printed {line:?}"
    );
    std::fs::write(&file, b"edited").unwrap();
    cli(&a, &server, &["update", &id, file.to_str().unwrap()]);
    cli(&a, &server, &["sync"]);
    assert!(next("the update").starts_with(&format!("updated\t{id}\t")));
    cli(&a, &server, &["rm", &id]);
    cli(&a, &server, &["sync"]);
    assert!(next("the delete").starts_with(&format!("deleted\t{id}\t")));
}
