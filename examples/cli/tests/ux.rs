//! The CLI behaves like the tools people know (issue 16 item 3), checked on the real binary:
//! `--json` on every command, exit codes by class, completions, id prefixes, the store id and
//! server remembered in the directory, the `/api` hint, SIGTERM ending `watch`, parallel first
//! use of a directory and `--version`. Server tests run a real `filesync-r2` on loopback.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{filesync, stdout, succeeds};

mod common;

const TOKEN: &str = "ux-test-token-0123456789";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> PathBuf {
    let sibling = PathBuf::from(env!("CARGO_BIN_EXE_filesync")).with_file_name(name);
    assert!(
        sibling.is_file(),
        "{name} not found beside filesync: build it (`cargo build -p filesync-r2`)"
    );
    sibling
}

/// A `filesync-r2` on a free loopback port with a local-disk bucket; `base` has no `/api`.
struct R2 {
    _tmp: tempfile::TempDir,
    base: String,
    _child: Kill,
}

impl R2 {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = Command::new(tool("filesync-r2"))
            .arg("--data-dir")
            .arg(tmp.path())
            .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        R2 {
            _tmp: tmp,
            base: format!("http://{addr}"),
            _child: Kill(child),
        }
    }

    fn api(&self) -> String {
        format!("{}/api", self.base)
    }
}

/// `filesync --dir DIR --server SERVER --token TOKEN --store ux`.
fn online(dir: &Path, server: &str) -> Command {
    let mut c = filesync(dir);
    c.args(["--server", server, "--token", TOKEN, "--store", "ux"]);
    c
}

fn run(c: &mut Command, args: &[&str]) -> Output {
    c.args(args).output().unwrap()
}

/// Each line of stdout parsed as a JSON object.
fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"));
            assert!(v.is_object(), "{l:?} is not an object");
            v
        })
        .collect()
}

/// The one JSON line of stdout.
fn json_line(o: &Output) -> Value {
    let mut lines = json_lines(o);
    assert_eq!(lines.len(), 1, "{}", stdout(o));
    lines.remove(0)
}

/// Check the exit code and, for `--json` runs, the JSON error on stderr.
fn exits(o: &Output, code: i32, kind: &str, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let v: Value = serde_json::from_str(err.trim())
        .unwrap_or_else(|e| panic!("stderr {err:?} is not one JSON object: {e}"));
    assert_eq!(v["kind"], kind, "{v}");
    assert_eq!(v["code"], code, "{v}");
    let text = v["error"].as_str().unwrap();
    assert!(text.contains(needle), "{text:?} lacks {needle:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn every_command_prints_json_lines_with_documented_fields() {
    let r2 = R2::start();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, b"hello, json").unwrap();
    let server = r2.api();

    // save, with --json after the subcommand.
    let saved = json_line(&succeeds(
        &mut online(&a, &server),
        &["save", file.to_str().unwrap(), "--json"],
    ));
    let id = saved["fileId"].as_str().unwrap().to_owned();
    assert_eq!(saved["size"], 11);
    assert_eq!(saved["mimeType"], "text/plain");
    assert_eq!(saved["contentHash"].as_str().unwrap().len(), 64);
    assert!(saved.get("name").is_some() && saved.get("path").is_some());

    // ls before the upload: local-only (offline saves and the exchange wait for `sync`).
    let row = json_line(&succeeds(&mut online(&a, &server), &["--json", "ls"]));
    for field in [
        "fileId",
        "name",
        "path",
        "contentHash",
        "size",
        "mimeType",
        "state",
        "upload",
        "deleted",
        "error",
    ] {
        assert!(row.get(field).is_some(), "ls lacks {field}: {row}");
    }
    assert_eq!(row["fileId"], id.as_str());
    assert_eq!(row["state"], "local");
    assert_ne!(row["upload"], "uploaded", "{row}");

    // sync, then ls says uploaded.
    let synced = succeeds(&mut online(&a, &server), &["--json", "--events", "sync"]);
    assert_eq!(
        json_line(&synced),
        serde_json::json!({"inSync": true, "files": 1})
    );
    // With --events, stderr holds only JSON too (the upload's events).
    let err = String::from_utf8_lossy(&synced.stderr);
    assert!(err.contains("upload"), "no upload events: {err}");
    for line in err.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr {line:?}: {e}"));
        assert!(v.is_object(), "{line}");
    }
    let row = json_line(&succeeds(&mut online(&a, &server), &["--json", "ls"]));
    assert_eq!(row["upload"], "uploaded", "{row}");

    // status.
    let status = json_line(&succeeds(&mut online(&a, &server), &["status", "--json"]));
    assert_eq!(status["mode"], "online", "{status}");
    assert_eq!(status["server"], server.as_str());
    assert!(status["errors"].is_array() && status["queuedUploadFileIds"].is_array());

    // cat: base64 content, or the description of what --output got.
    let cat = json_line(&succeeds(&mut online(&a, &server), &["--json", "cat", &id]));
    assert_eq!(cat["contentBase64"], "aGVsbG8sIGpzb24=", "{cat}");
    assert_eq!(cat["size"], 11);
    let copy = tmp.path().join("copy.txt");
    let cat = json_line(&succeeds(
        &mut online(&a, &server),
        &["--json", "cat", &id, "--output", copy.to_str().unwrap()],
    ));
    assert_eq!(cat["output"], copy.to_str().unwrap());
    assert_eq!(std::fs::read(&copy).unwrap(), b"hello, json");

    // watch on B prints A's update and delete as JSON, and SIGTERM ends it with exit 0.
    let mut watch = Kill(
        online(&b, &server)
            .args(["watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let out = watch.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| -> Value {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("watch printed no line for {what}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    let created = next("the existing file");
    assert_eq!(
        (created["change"].as_str(), created["fileId"].as_str()),
        (Some("created"), Some(id.as_str()))
    );
    assert!(created.get("name").is_some() && created.get("contentHash").is_some());

    // update through a unique prefix.
    std::fs::write(&file, b"edited").unwrap();
    let prefix = &id[..8];
    let updated = json_line(&succeeds(
        &mut online(&a, &server),
        &["--json", "update", prefix, file.to_str().unwrap()],
    ));
    assert_eq!(updated["fileId"], id.as_str());
    assert_eq!(updated["size"], 6);
    succeeds(&mut online(&a, &server), &["sync"]);
    assert_eq!(next("the update")["change"], "updated");

    let removed = json_line(&succeeds(
        &mut online(&a, &server),
        &["--json", "rm", prefix],
    ));
    assert_eq!(
        removed,
        serde_json::json!({"fileId": id, "deleted": true, "contentKept": false})
    );
    succeeds(&mut online(&a, &server), &["sync"]);
    assert_eq!(next("the delete")["change"], "deleted");

    let pid = watch.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = watch.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "watch still runs 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "watch after SIGTERM: {status:?}");
}

#[test]
fn local_only_status_and_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let status = succeeds(&mut filesync(&dir), &["status"]);
    assert!(stdout(&status).contains("server: local-only"), "{status:?}");
    let status = json_line(&succeeds(&mut filesync(&dir), &["status", "--json"]));
    assert_eq!(status["mode"], "local-only");
    assert_eq!(status["server"], Value::Null);

    // not found: 3; usage (clap): 2, JSON on stderr even before the subcommand is known.
    exits(
        &run(&mut filesync(&dir), &["--json", "cat", "no-such-file"]),
        3,
        "not_found",
        "no file with id no-such-file",
    );
    exits(
        &run(&mut filesync(&dir), &["rm", "--json", "no-such-file"]),
        3,
        "not_found",
        "no file with id",
    );
    exits(
        &run(&mut filesync(&dir), &["--json", "ls", "--no-such-flag"]),
        2,
        "usage",
        "--no-such-flag",
    );
    exits(
        &run(&mut filesync(&dir), &["--json", "cat", ""]),
        2,
        "usage",
        "is not a file id",
    );
    // Without --json: the same codes, plain text.
    let plain = run(&mut filesync(&dir), &["cat", "no-such-file"]);
    assert_eq!(plain.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&plain.stderr).starts_with("filesync: no file"));
    let usage = run(&mut filesync(&dir), &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn ambiguous_prefixes_list_candidates_and_unique_ones_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut paths = Vec::new();
    // 20 random ids: at least two share their first hex digit.
    for n in 0..20 {
        let p = tmp.path().join(format!("f{n}.txt"));
        std::fs::write(&p, format!("file {n}")).unwrap();
        paths.push(p.to_str().unwrap().to_owned());
    }
    let mut args = vec!["--json", "save"];
    args.extend(paths.iter().map(String::as_str));
    let ids: Vec<String> = json_lines(&succeeds(&mut filesync(&dir), &args))
        .iter()
        .map(|v| v["fileId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 20);
    let shared = ids
        .iter()
        .find_map(|a| {
            let c = &a[..1];
            let n = ids.iter().filter(|b| b.starts_with(c)).count();
            (n > 1).then(|| c.to_owned())
        })
        .unwrap();
    let out = run(&mut filesync(&dir), &["--json", "cat", &shared]);
    exits(&out, 2, "usage", "ambiguous");
    let err = String::from_utf8_lossy(&out.stderr);
    for id in ids.iter().filter(|i| i.starts_with(&shared)) {
        assert!(err.contains(id.as_str()), "{err} does not list {id}");
    }

    // The shortest unique prefix of the first id reads, updates and deletes it.
    let id = &ids[0];
    let unique = (1..=id.len())
        .map(|n| &id[..n])
        .find(|p| ids.iter().filter(|i| i.starts_with(p)).count() == 1)
        .unwrap();
    assert_eq!(
        stdout(&succeeds(&mut filesync(&dir), &["cat", unique])),
        "file 0"
    );
    succeeds(&mut filesync(&dir), &["update", unique, &paths[1]]);
    assert_eq!(
        stdout(&succeeds(&mut filesync(&dir), &["cat", unique])),
        "file 1"
    );
    succeeds(&mut filesync(&dir), &["rm", unique]);
    exits(
        &run(&mut filesync(&dir), &["--json", "cat", unique]),
        3,
        "not_found",
        "was deleted",
    );
}

#[test]
fn unreachable_server_wrong_token_and_a_url_without_api() {
    let r2 = R2::start();
    let tmp = tempfile::tempdir().unwrap();

    // Network: nothing listens there.
    let nowhere = format!("http://127.0.0.1:{}/api", free_port());
    exits(
        &run(
            &mut online(&tmp.path().join("n"), &nowhere),
            &["--json", "sync"],
        ),
        5,
        "retryable",
        "cannot reach",
    );

    // Auth: a real server refuses the token.
    let mut wrong = filesync(&tmp.path().join("w"));
    wrong.args(["--server", &r2.api(), "--token", "wrong-token-000000000"]);
    exits(
        &run(&mut wrong, &["--json", "sync"]),
        4,
        "auth",
        "refused the token",
    );
    let plain = run(
        filesync(&tmp.path().join("w2")).args(["--server", &r2.api(), "--token", "x"]),
        &["ls"],
    );
    assert_eq!(plain.status.code(), Some(4), "{plain:?}");

    // The server's root instead of its API base URL: a hint naming the right one.
    let out = run(
        &mut online(&tmp.path().join("h"), &r2.base),
        &["--json", "sync"],
    );
    exits(&out, 2, "usage", &format!("try --server {}/api", r2.base));
    let out = run(&mut online(&tmp.path().join("h2"), &r2.base), &["ls"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the server's API base URL"),
        "{out:?}"
    );
}

#[test]
fn store_and_server_are_remembered_and_a_mismatch_is_refused() {
    let r2 = R2::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let file = tmp.path().join("x.txt");
    std::fs::write(&file, b"remember me").unwrap();
    succeeds(
        &mut online(&dir, &r2.api()),
        &["save", file.to_str().unwrap()],
    );
    let remembered: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("filesync.json")).unwrap()).unwrap();
    assert_eq!(remembered["store"], "ux");
    assert_eq!(remembered["server"], r2.api().as_str());
    assert!(remembered.get("token").is_none(), "{remembered}");

    // Later runs omit --store and --server (the token is still given).
    let mut later = filesync(&dir);
    later.args(["--token", TOKEN]);
    let st = json_line(&succeeds(&mut later, &["--json", "status"]));
    assert_eq!(st["server"], r2.api().as_str());
    let mut later = filesync(&dir);
    later.args(["--token", TOKEN]);
    succeeds(&mut later, &["sync"]);
    let row = json_line(&succeeds(
        filesync(&dir).args(["--token", TOKEN]),
        &["--json", "ls"],
    ));
    assert!(
        row["path"].as_str().unwrap().contains("/ux/"),
        "store ux was used: {row}"
    );
    assert_eq!(row["upload"], "uploaded");

    // A different store or server is refused before anything happens.
    exits(
        &run(
            filesync(&dir).args(["--store", "other", "--token", TOKEN]),
            &["--json", "sync"],
        ),
        2,
        "usage",
        "--reconfigure",
    );
    let elsewhere = format!("http://127.0.0.1:{}/api", free_port());
    exits(
        &run(
            filesync(&dir).args(["--server", &elsewhere, "--token", TOKEN]),
            &["--json", "ls"],
        ),
        2,
        "usage",
        "set up for server",
    );
    // A trailing slash is the same server.
    succeeds(
        filesync(&dir).args(["--server", &format!("{}/", r2.api()), "--token", TOKEN]),
        &["ls"],
    );
    // --reconfigure switches and remembers the new store.
    succeeds(
        filesync(&dir).args(["--store", "other", "--token", TOKEN, "--reconfigure"]),
        &["ls"],
    );
    let remembered: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("filesync.json")).unwrap()).unwrap();
    assert_eq!(remembered["store"], "other");
}

#[test]
fn parallel_first_saves_on_a_fresh_directory_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p.txt");
    std::fs::write(&file, b"parallel").unwrap();
    for round in 0..3 {
        let dir = tmp.path().join(format!("fresh-{round}"));
        let children: Vec<Child> = (0..4)
            .map(|_| {
                filesync(&dir)
                    .arg("save")
                    .arg(&file)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(
            stdout(&succeeds(&mut filesync(&dir), &["ls"]))
                .lines()
                .count(),
            4
        );
    }
}

#[test]
fn completions_help_and_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("unused");
    let bash = stdout(&succeeds(&mut filesync(&dir), &["completions", "bash"]));
    assert!(bash.contains("_filesync()"), "{bash}");
    assert!(bash.contains("complete -F _filesync"), "{bash}");
    assert!(bash.contains("--json") && bash.contains("completions"));
    assert!(!dir.exists(), "completions created the store directory");
    let zsh = stdout(&succeeds(&mut filesync(&dir), &["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef filesync"), "{zsh}");

    let help = stdout(&succeeds(&mut filesync(&dir), &["--help"]));
    for needle in [
        "Exit codes:",
        "3  not found",
        "4  auth",
        "5  retryable",
        "6  conflict",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }

    // --version names the workspace's version (the crate's), not 0.0.0.
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
            .unwrap();
    let workspace_version = manifest
        .split("[workspace.package]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("version = ")))
        .unwrap()
        .trim_matches('"');
    let version = stdout(&succeeds(&mut filesync(&dir), &["--version"]));
    assert_eq!(version, format!("filesync {workspace_version}\n"));
    assert_eq!(workspace_version, env!("CARGO_PKG_VERSION"));
}
