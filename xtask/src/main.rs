//! `cargo xtask`: the project's one entry point for automation.
//!
//! - `cargo xtask demo`  — two CLI clients syncing through `filesync-r2` on the embedded default.
//! - `cargo xtask ci`    — everything CI checks; installs what the tests need first.
//! - `cargo xtask setup` — only the installation part of `ci` (idempotent).
//! - `cargo xtask bench [hash|relay|r2]` — benchmarks with a baseline measured in the same run.
//! - `cargo xtask tidy`  — repository layout checks (part of `ci`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

mod demo;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match args.as_slice() {
        ["setup"] => setup(&sh),
        ["ci"] => ci(&sh),
        ["tidy"] => tidy(&sh),
        ["bench"] => {
            bench_hash(&sh)?;
            bench_relay(&sh)?;
            bench_r2(&sh)
        }
        ["bench", "hash"] => bench_hash(&sh),
        ["bench", "relay"] => bench_relay(&sh),
        ["bench", "r2"] => bench_r2(&sh),
        ["demo"] => demo::demo(&sh),
        ["demo", "--web"] => demo::web(&sh),
        ["web"] => build_web(&sh).map(drop),
        ["sim", rest @ ..] => sim(&sh, rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo [--web] | web | ci | setup | bench [hash|relay|r2] | sim ... | tidy>\n\n\
                 demo   two CLI clients sync through filesync-r2 (local-disk bucket, SQLite relay);\n\
                        demo --web: serve the web demo on filesync-r2 and print its URL\n\
                 web    build the web demo into target/web\n\
                 ci     install what the tests need, then fmt, clippy, tests, wasm32 build, docs\n\
                 setup  only install what the tests need (idempotent)\n\
                 bench  hash: SHA-256 and content-store throughput vs openssl/sha256sum and dd;\n\
                        relay: 100k events pushed and caught up over loopback vs bare SQLite;\n\
                        r2: 1 GiB through filesync-r2 vs a bare HTTP server and a plain copy,\n\
                        signer requests/s, the server's peak RSS\n\
                 sim    the deterministic simulation (release build): --seeds N [--start S] runs\n\
                        seeds S..S+N; --seed S [--trace] replays one (the command a failure prints)\n\
                 tidy   repository layout checks"
            );
            std::process::exit(2)
        }
    }
}

/// `cargo xtask sim --seeds N [--start S] | --seed S [--trace]`: the simulation in a release
/// build (10,000 seeds take minutes, not an hour). CI runs 256 seeds as a test instead.
fn sim(sh: &Shell, args: &[&str]) -> Result<()> {
    ensure!(
        !args.is_empty(),
        "usage: cargo xtask sim --seeds N [--start S] | --seed S [--trace]"
    );
    cmd!(
        sh,
        "cargo run --quiet --release -p filesync-sim -- {args...}"
    )
    .run()?;
    Ok(())
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `<root>/target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

fn step(title: &str) {
    println!("\n==> {title}");
}

/// Install what the tests need on a fresh machine: the wasm32 target and `s3s-fs`. Idempotent.
fn setup(sh: &Shell) -> Result<()> {
    step("setup: wasm32-unknown-unknown target");
    let installed = cmd!(sh, "rustup target list --installed").read()?;
    if installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        println!("already installed");
    } else {
        cmd!(sh, "rustup target add wasm32-unknown-unknown").run()?;
    }
    step("setup: s3s-fs 0.14.1 (the SigV4-checking S3 server the signer tests start)");
    let installed = cmd!(sh, "cargo install --list").read()?;
    if installed.lines().any(|l| l.starts_with("s3s-fs v0.14.1")) {
        println!("already installed");
    } else if cmd!(
        sh,
        "cargo install s3s-fs --version 0.14.1 --features binary --locked"
    )
    .run()
    .is_err()
    {
        // The published lock file may not build on this toolchain; resolve afresh.
        cmd!(
            sh,
            "cargo install s3s-fs --version 0.14.1 --features binary"
        )
        .run()?;
    }
    step("setup: Chromium and ChromeDriver from Debian (the browser tests)");
    if Path::new("/usr/bin/chromium").is_file() && Path::new("/usr/bin/chromedriver").is_file() {
        println!("already installed");
    } else {
        // As root directly; otherwise through sudo.
        let root = cmd!(sh, "id -u").read()?.trim() == "0";
        let apt = |args: &[&str]| -> Result<()> {
            let (program, rest): (&str, Vec<&str>) = if root {
                ("apt-get", args.to_vec())
            } else {
                ("sudo", [&["apt-get"], args].concat())
            };
            cmd!(sh, "{program} {rest...}")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .run()?;
            Ok(())
        };
        apt(&["update"])?;
        apt(&["install", "-y", "chromium", "chromium-driver"])?;
    }
    let version = wasm_bindgen_version()?;
    step(&format!(
        "setup: wasm-bindgen-cli {version} (the version Cargo.lock pins wasm-bindgen to)"
    ));
    let have = cmd!(sh, "wasm-bindgen-test-runner --version")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    if have.split_whitespace().nth(1) == Some(version.as_str()) {
        println!("already installed");
    } else {
        // Not `--locked`: its lock file names a webpki-roots release the registry lacks here.
        cmd!(sh, "cargo install wasm-bindgen-cli --version {version}").run()?;
    }
    Ok(())
}

/// The `wasm-bindgen` version in Cargo.lock (the CLI must match it exactly).
pub(crate) fn wasm_bindgen_version() -> Result<String> {
    let lock = std::fs::read_to_string(project_root().join("Cargo.lock"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_owned());
        }
    }
    bail!("Cargo.lock has no wasm-bindgen package")
}

/// Run a crate's wasm32 tests in headless Chromium through `wasm-bindgen-test-runner`, with
/// the Chromium flags this machine needs (`xtask/webdriver.json`; the runner adds
/// `headless`, `no-sandbox` and `disable-dev-shm-usage` itself).
fn browser_tests(sh: &Shell, package: &str) -> Result<()> {
    let webdriver_json = project_root().join("xtask/webdriver.json");
    cmd!(
        sh,
        "cargo test -p {package} --target wasm32-unknown-unknown --tests"
    )
    .env("CHROMEDRIVER", "/usr/bin/chromedriver")
    .env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
        "wasm-bindgen-test-runner",
    )
    .env("WASM_BINDGEN_TEST_TIMEOUT", "120")
    .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", webdriver_json)
    .run()?;
    Ok(())
}

fn has_nextest(sh: &Shell) -> bool {
    cmd!(sh, "cargo nextest --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// The one test command: what CI runs.
fn ci(sh: &Shell) -> Result<()> {
    let started = Instant::now();
    setup(sh)?;
    tidy(sh)?;
    step("rustfmt");
    cmd!(sh, "cargo fmt --all --check").run()?;
    step("clippy (native, all targets)");
    cmd!(
        sh,
        "cargo clippy --workspace --all-targets --all-features -- -D warnings"
    )
    .run()?;
    step("clippy (wasm32: filesync-core, filesync-opfs, the web demo)");
    cmd!(
        sh,
        "cargo clippy -p filesync-core -p filesync-opfs -p filesync-web --target wasm32-unknown-unknown --all-features -- -D warnings"
    )
    .run()?;
    step("build the browser quick start (filesync-opfs/examples/browser.rs) for wasm32");
    cmd!(
        sh,
        "cargo build -p filesync-opfs --examples --target wasm32-unknown-unknown"
    )
    .run()?;
    step("build filesync-core for wasm32-unknown-unknown");
    cmd!(
        sh,
        "cargo build -p filesync-core --target wasm32-unknown-unknown"
    )
    .run()?;
    if has_nextest(sh) {
        step("tests (cargo nextest)");
        cmd!(
            sh,
            "cargo nextest run --workspace --all-features --no-fail-fast"
        )
        .run()?;
        step("doc tests");
        cmd!(sh, "cargo test --workspace --all-features --doc").run()?;
    } else {
        step("tests (cargo test; install cargo-nextest for faster runs)");
        cmd!(sh, "cargo test --workspace --all-features --no-fail-fast").run()?;
    }
    step("browser tests (OpfsFs and IdbStore in headless Chromium: page and dedicated worker)");
    browser_tests(sh, "filesync-opfs")?;
    step("docs (warnings are errors)");
    cmd!(sh, "cargo doc --workspace --no-deps --all-features")
        .env("RUSTDOCFLAGS", "-D warnings")
        .run()?;
    step("package (the published crates build from their .crate files alone)");
    forget_packaged_builds()?;
    // `cargo package` also packs `publish = false` members: leave those out. `--allow-dirty`
    // so a local run with uncommitted edits checks them too (CI's clone is clean anyway).
    cmd!(
        sh,
        "cargo package --workspace --allow-dirty --exclude filesync-cli --exclude filesync-web --exclude filesync-sim --exclude xtask"
    )
    .run()?;
    step("demo");
    demo::demo(sh)?;
    println!("\nci: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// `cargo package` verifies each crate against the others' `.crate` files through a local
/// registry. Cargo treats registry crates as immutable: it extracts `filesync-core-0.1.0` once
/// into `$CARGO_HOME/registry/src/<that registry>/` and never rebuilds a version it has built,
/// so a second run (same target directory, same machine) would verify against the first run's
/// code. Forget both, the extracted sources of our crates from local registries and the
/// fingerprints of every `filesync-*` unit, so each run verifies what it packs.
fn forget_packaged_builds() -> Result<()> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut stale = Vec::new();
    if let Some(home) = cargo_home {
        for kind in ["src", "cache"] {
            // crates.io's directories are named `index.crates.io-…`; local registries `-<hash>`.
            for registry in read_dir_paths(&home.join("registry").join(kind))? {
                let local = registry
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('-'));
                if local {
                    stale.extend(read_dir_paths(&registry)?);
                }
            }
        }
    }
    stale.extend(read_dir_paths(
        &target_dir().join("debug").join(".fingerprint"),
    )?);
    for path in stale {
        let ours = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("filesync-"));
        if !ours {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// The entries of `dir`, or none if it does not exist.
fn read_dir_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Repository checks: the top level holds exactly what ARCHITECTURE.md says.
fn tidy(sh: &Shell) -> Result<()> {
    step("tidy");
    const ALLOWED: &[&str] = &[
        ".cargo",
        ".ci",
        ".config",
        ".gitignore",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
        "Cargo.lock",
        "Cargo.toml",
        "LICENSE",
        "README.md",
        "clippy.toml",
        "crates",
        "docs",
        "examples",
        "rustfmt.toml",
        "xtask",
    ];
    let files = cmd!(sh, "git ls-files").read()?;
    let mut unexpected: Vec<&str> = files
        .lines()
        .filter_map(|f| f.split('/').next())
        .filter(|top| !ALLOWED.contains(top))
        .collect();
    unexpected.dedup();
    ensure!(
        unexpected.is_empty(),
        "unexpected top-level entries: {unexpected:?}"
    );
    for required in [
        "LICENSE",
        "README.md",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
        ".ci/run",
    ] {
        ensure!(
            sh.path_exists(required),
            "{required} is missing from the repository"
        );
    }
    let changelog = sh.read_file("CHANGELOG.md")?;
    ensure!(
        changelog.contains("## [Unreleased]"),
        "CHANGELOG.md needs an [Unreleased] section"
    );
    println!("layout ok");
    Ok(())
}

/// A temporary directory removed on drop (also when the demo fails half-way).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("filesync-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn time<F: FnMut() -> Result<String>>(runs: usize, mut f: F) -> Result<(Duration, String)> {
    let mut best = Duration::MAX;
    let mut out = String::new();
    for _ in 0..runs {
        let start = Instant::now();
        out = f()?;
        best = best.min(start.elapsed());
    }
    Ok((best, out))
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// SHA-256 and content-store throughput, each against a baseline measured in the same run.
fn bench_hash(sh: &Shell) -> Result<()> {
    let mib: u64 = std::env::var("FILESYNC_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = mib * 1024 * 1024;
    step("bench hash: building (release)");
    cmd!(
        sh,
        "cargo build --release --quiet -p filesync-core --example hash_file"
    )
    .run()?;
    let target = target_dir();
    let ours = target.join("release").join("examples").join("hash_file");
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join(format!("input-{mib}MiB.bin"));
    if std::fs::metadata(&input).map(|m| m.len()).ok() != Some(bytes) {
        println!(
            "writing {mib} MiB of pseudo-random data to {}",
            input.display()
        );
        write_pattern(&input, bytes)?;
    }
    // Warm the page cache so both sides read from memory.
    let _ = std::fs::read(&input).map(drop);

    let (baseline_name, baseline) = if cmd!(sh, "openssl version")
        .quiet()
        .ignore_stdout()
        .run()
        .is_ok()
    {
        ("openssl dgst -sha256", ("openssl", vec!["dgst", "-sha256"]))
    } else {
        ("sha256sum", ("sha256sum", vec![]))
    };
    let (program, program_args) = baseline;
    step(&format!(
        "SHA-256 of {mib} MiB: filesync (NativeFs stream + sha2) vs {baseline_name}, best of 3"
    ));
    let (t_ours, h_ours) = time(3, || {
        Ok(cmd!(sh, "{ours} hash {input}")
            .quiet()
            .ignore_stderr()
            .read()?)
    })?;
    let (t_base, h_base) = time(3, || {
        let args = program_args.clone();
        Ok(cmd!(sh, "{program} {args...} {input}").quiet().read()?)
    })?;
    ensure!(
        h_base.contains(h_ours.trim()),
        "hashes differ: ours {h_ours}, baseline {h_base}"
    );
    let (ours_mbs, base_mbs) = (mb_per_s(bytes, t_ours), mb_per_s(bytes, t_base));
    println!("filesync      {ours_mbs:8.0} MB/s ({t_ours:.2?})");
    println!("{baseline_name:<13} {base_mbs:8.0} MB/s ({t_base:.2?})");
    println!(
        "ratio filesync/baseline = {:.2} (goal >= 0.90)",
        ours_mbs / base_mbs
    );

    step(&format!(
        "content-store put of {mib} MiB (hash while writing + fsync + rename) vs dd conv=fsync, best of 3"
    ));
    let cas_dir = dir.join("cas");
    let copy = dir.join("dd-copy.bin");
    let mut rss = String::new();
    let (t_put, _) = time(3, || {
        let _ = std::fs::remove_dir_all(&cas_dir);
        let out = cmd!(sh, "{ours} put {input} {cas_dir}").quiet().output()?;
        ensure!(
            out.status.success(),
            "put failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        rss = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })?;
    let ifarg = format!("if={}", input.display());
    let ofarg = format!("of={}", copy.display());
    let (t_dd, _) = time(3, || {
        Ok(cmd!(sh, "dd {ifarg} {ofarg} bs=1M conv=fsync status=none")
            .quiet()
            .read()?)
    })?;
    let _ = std::fs::remove_dir_all(&cas_dir);
    let _ = std::fs::remove_file(&copy);
    let (put_mbs, dd_mbs) = (mb_per_s(bytes, t_put), mb_per_s(bytes, t_dd));
    println!("filesync put  {put_mbs:8.0} MB/s ({t_put:.2?}), {rss}");
    println!("dd fsync      {dd_mbs:8.0} MB/s ({t_dd:.2?})");
    println!("ratio put/dd = {:.2}", put_mbs / dd_mbs);
    Ok(())
}

/// The event relay against bare SQLite, in the same run (FILESYNC_BENCH_EVENTS, default 100k).
fn bench_relay(sh: &Shell) -> Result<()> {
    step("bench relay: push and fresh-client catch-up over loopback vs bare SQLite (release)");
    cmd!(
        sh,
        "cargo run --release --quiet -p filesync-core --features server --example relay_bench"
    )
    .run()?;
    Ok(())
}

/// Build the web demo: `filesync-web` for wasm32 (release), its JS glue with the
/// `wasm-bindgen` CLI (installed by `setup`), and the static page, into `target/web`.
fn build_web(sh: &Shell) -> Result<PathBuf> {
    step("web: building examples/web for wasm32 and its bindings");
    cmd!(
        sh,
        "cargo build --release -p filesync-web --target wasm32-unknown-unknown"
    )
    .run()?;
    let target = target_dir();
    let wasm = target.join("wasm32-unknown-unknown/release/filesync_web.wasm");
    let out = target.join("web");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    for entry in std::fs::read_dir(project_root().join("examples/web/static"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), out.join(entry.file_name()))?;
    }
    let pkg = out.join("pkg");
    cmd!(
        sh,
        "wasm-bindgen --target web --no-typescript --out-dir {pkg} {wasm}"
    )
    .run()
    .context("wasm-bindgen failed: `cargo xtask setup` installs the CLI")?;
    println!("web: the page is in {}", out.display());
    Ok(out)
}

fn bench_r2(sh: &Shell) -> Result<()> {
    step(
        "bench r2: 1 GiB through filesync-r2 vs a bare server and a plain copy; signer req/s (release)",
    );
    cmd!(
        sh,
        "cargo build --release --quiet -p filesync-r2 --bin filesync-r2 --example r2_bench"
    )
    .run()?;
    let target = target_dir().join("release");
    let (bench, server) = (target.join("examples/r2_bench"), target.join("filesync-r2"));
    let mib = std::env::var("FILESYNC_BENCH_MIB").unwrap_or_else(|_| "1024".into());
    cmd!(sh, "{bench} {server} {mib}").run()?;
    Ok(())
}

fn write_pattern(path: &Path, len: u64) -> Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}
