//! Measure the streaming paths on a real file (used by `cargo xtask bench hash`).
//!
//! - `hash_file hash <file>`: stream the file through `NativeFs::read` into the SHA-256 hasher
//!   and print the hex digest.
//! - `hash_file put <file> <dir>`: stream the file into a `ContentStore` on `NativeFs` at `<dir>`
//!   (hash while writing, fsync, rename) and print the digest.
//!
//! Both print `peak_rss_kib=<n>` (Linux `VmHWM`) on stderr, to show that memory stays bounded.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::sync::Arc;

use filesync_core::cas::ContentStore;
use filesync_core::fs::{FileSystem, NativeFs};
use filesync_core::hash::hash_stream;
use filesync_core::types::{LocalPath, StoreId};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn split(file: &Path) -> Result<(NativeFs, LocalPath), Box<dyn std::error::Error>> {
    let dir = file.parent().ok_or("the file has no parent directory")?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the file name is not UTF-8")?;
    Ok((NativeFs::new(dir), LocalPath::parse(name)?))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hash = match args.as_slice() {
        [cmd, file] if cmd == "hash" => {
            let (fs, path) = split(Path::new(file))?;
            hash_stream(fs.read(&path).await?).await?.0
        }
        [cmd, file, dir] if cmd == "put" => {
            let (fs, path) = split(Path::new(file))?;
            let cas = ContentStore::new(Arc::new(NativeFs::new(dir)), StoreId::parse("bench")?);
            cas.put(fs.read(&path).await?, None).await?.hash
        }
        _ => return Err("usage: hash_file hash <file> | hash_file put <file> <dir>".into()),
    };
    println!("{hash}");
    if let Some(kib) = peak_rss_kib() {
        eprintln!("peak_rss_kib={kib}");
    }
    Ok(())
}
