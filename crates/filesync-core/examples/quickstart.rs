//! The native quick start from the crate docs: files in a directory, rows in SQLite, bytes
//! through a signer server, events through its relay, one syncing process per directory.
//!
//! Start a server first (`cargo run -p filesync-r2 -- --data-dir /tmp/r2 --token dev-token-change-me`),
//! then `cargo run -p filesync-core --example quickstart -- <file to save>`.

use std::sync::Arc;

use filesync_core::fs::NativeFs;
use filesync_core::preprocess::FileInput;
use filesync_core::remote::SignerClient;
use filesync_core::store::SqliteStore;
use filesync_core::sync::{FileLock, HttpRelay};
use filesync_core::{FileSync, types::StoreId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (server, token) = ("http://localhost:8787/api", "dev-token-change-me");
    let dir = std::path::PathBuf::from("my-app-files"); // content, SQLite file and lock
    std::fs::create_dir_all(&dir)?;
    let sync = FileSync::builder(
        StoreId::parse("my-app")?,
        Arc::new(NativeFs::new(&dir)),
        Arc::new(SqliteStore::open(dir.join("filesync.sqlite")).await?),
    )
    .with_remote(Arc::new(
        SignerClient::builder(server)
            .with_auth_token(token)
            .build()?,
    ))
    .with_relay(Arc::new(HttpRelay::new(server, Some(token.into()))?))
    .with_leadership(Arc::new(FileLock::new(dir.join("filesync.lock"))))
    .start()
    .await?;
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Cargo.toml".into());
    let saved = sync.save_file(FileInput::from_path(path).await?).await?; // local, offline-safe
    sync.await_idle().await; // uploaded and pushed (or retrying in the background)
    for file in sync.list_files().await? {
        println!(
            "{} {:?} uploaded: {}",
            file.id, file.name, file.display.is_uploaded
        );
    }
    println!("saved {}", saved.file_id);
    sync.shutdown().await;
    Ok(())
}
