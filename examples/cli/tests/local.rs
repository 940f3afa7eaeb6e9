//! The CLI with `--dir` alone (local-only mode): save, list, read, update and delete files, and
//! clear errors for bad and unknown ids.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use crate::common::{filesync, stdout, succeeds};

mod common;

fn ok(dir: &Path, args: &[&str]) -> String {
    stdout(&succeeds(&mut filesync(dir), args))
}

fn fails(dir: &Path, args: &[&str], needle: &str) {
    let out = filesync(dir).args(args).output().unwrap();
    assert!(!out.status.success(), "filesync {args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "filesync {args:?}: {err:?} lacks {needle:?}"
    );
}

#[test]
fn local_only_save_ls_cat_update_rm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let note = tmp.path().join("note.txt");
    std::fs::write(&note, b"hello, local").unwrap();

    let saved = ok(&dir, &["save", note.to_str().unwrap()]);
    let fields: Vec<&str> = saved.trim().split('\t').collect();
    let (id, hash) = (fields[0].to_owned(), fields[1].to_owned());
    // SHA-256 of "hello, local".
    assert_eq!(hash.len(), 64);

    let listed = ok(&dir, &["ls"]);
    let cols: Vec<&str> = listed.trim().split('\t').collect();
    assert_eq!(cols[0], id);
    assert_eq!(cols[1], "note.txt", "the name kept in metadataJson");
    assert_eq!(cols[2], "12 bytes");
    assert_eq!(cols[3], "text/plain");
    assert_eq!(cols[4], "local");
    assert_eq!(cols[5], "local-only");
    assert_eq!(cols[6], hash);
    let json: serde_json::Value = serde_json::from_str(ok(&dir, &["--json", "ls"]).trim()).unwrap();
    assert_eq!(json["fileId"], id.as_str());
    assert_eq!(json["size"], 12);

    // A name in the file's metadata (what `FileInput` will keep there) is shown by `ls`.
    let db = rusqlite::Connection::open(dir.join("filesync.sqlite")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE files SET metadataJson = '{\"name\":\"note.txt\"}' WHERE id = ?1",
        [&id],
    )
    .unwrap();
    drop(db);
    let listed = ok(&dir, &["ls"]);
    assert_eq!(listed.split('\t').nth(1), Some("note.txt"), "{listed}");
    let json: serde_json::Value = serde_json::from_str(ok(&dir, &["--json", "ls"]).trim()).unwrap();
    assert_eq!(json["name"], "note.txt");

    assert_eq!(ok(&dir, &["cat", &id]), "hello, local");
    std::fs::write(&note, b"changed").unwrap();
    ok(&dir, &["update", &id, note.to_str().unwrap()]);
    assert_eq!(ok(&dir, &["cat", &id]), "changed");
    let status = ok(&dir, &["status"]);
    assert!(status.contains("errors: 0"), "{status}");

    ok(&dir, &["rm", &id]);
    assert_eq!(ok(&dir, &["ls"]).trim(), "");
    assert!(ok(&dir, &["ls", "--all"]).contains("deleted"));
    fails(&dir, &["cat", &id], "was deleted");
}

#[test]
fn bad_and_unknown_ids_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    fails(&dir, &["cat", ""], "is not a file id");
    fails(
        &dir,
        &["rm", "no-such-file"],
        "no file with id no-such-file",
    );
    fails(
        &dir,
        &["cat", "no-such-file"],
        "no file with id no-such-file",
    );
    fails(
        &dir,
        &["save", "/no/such/path.txt"],
        "open /no/such/path.txt: No such file",
    );
}
