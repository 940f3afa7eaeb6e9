//! Shared by the CLI tests: the `filesync` binary run on a directory, and its output.
#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::process::{Command, Output};

/// `filesync --dir DIR`, without a server from the environment (`FILESYNC_SERVER`), ready
/// for more arguments.
pub fn filesync(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_filesync"));
    c.arg("--dir").arg(dir).env_remove("FILESYNC_SERVER");
    c
}

/// Run `command` with `args`, check that it succeeded (else fail with its stderr), and return
/// what it printed.
pub fn succeeds(command: &mut Command, args: &[&str]) -> Output {
    let out = command.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "filesync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A command's standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}
