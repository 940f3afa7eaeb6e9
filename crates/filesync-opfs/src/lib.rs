//! `OpfsFs`: the browser's [Origin Private File System] (OPFS) as a
//! [`filesync_core::fs::FileSystem`], and `IdbStore`: IndexedDB as a
//! [`filesync_core::store::Store`], for `wasm32-unknown-unknown`.
//!
//! # Quick start: syncing in the browser
//!
//! Files in OPFS, rows in IndexedDB, bytes through a signer server, events through its relay,
//! and one syncing tab per store (Web Locks); `examples/browser.rs` is this code, built for
//! wasm32 by CI:
//!
//! ```
//! # #[cfg(target_arch = "wasm32")]
//! # mod quickstart {
//! use std::sync::Arc;
//! use filesync_core::{FileSync, preprocess::FileInput, remote::SignerClient, types::StoreId};
//! use filesync_core::sync::{HttpRelay, WebLock};
//! use filesync_opfs::{IdbStore, OpfsFs};
//!
//! pub async fn start(file: web_sys::File) -> Result<FileSync, filesync_core::Error> {
//!     let (server, token) = ("https://files.example.com/api", "dev-token-change-me");
//!     let sync = FileSync::builder(
//!         StoreId::parse("my-app")?,
//!         Arc::new(OpfsFs::open("my-app").await?),
//!         Arc::new(IdbStore::open("my-app").await?),
//!     )
//!     .with_remote(Arc::new(SignerClient::builder(server).with_auth_token(token).build()?))
//!     .with_relay(Arc::new(HttpRelay::new(server, Some(token.into()))?))
//!     .with_leadership(Arc::new(WebLock::new("filesync:my-app")))
//!     .start()
//!     .await?;
//!     sync.save_file(FileInput::from_file(&file)).await?; // read in 1 MiB slices
//!     // `sync.changes().await?` streams changes from this tab, other tabs and other devices;
//!     // `sync.list_files().await?` lists files with names, sizes and display states.
//!     Ok(sync)
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! # The parts
//!
//! `OpfsFs` works on a page and in a dedicated worker, streams reads and writes in chunks of about
//! 1 MiB (memory stays bounded whatever the file size), and writes atomically: the body goes
//! into a hidden temporary entry next to the target, which is then moved over it
//! (`FileSystemFileHandle.move()`), so readers see the old file or the new one, never a part, and a
//! failed body stream leaves nothing behind. It passes filesync-core's `fs_conformance!` suite
//! in headless Chromium, on a page and in a worker.
//!
//! ```
//! # #[cfg(target_arch = "wasm32")]
//! # async fn example() -> filesync_core::Result<()> {
//! use bytes::Bytes;
//! use filesync_core::fs::{FileSystem, FileSystemExt};
//! use filesync_core::types::LocalPath;
//! use filesync_opfs::OpfsFs;
//!
//! // Everything lives below `<OPFS root>/filesync/`. The first open also asks, once and
//! // without waiting, that the origin's storage not be evicted (navigator.storage.persist()).
//! let fs = OpfsFs::open("filesync").await?;
//! // To know the answer (false where unsupported, e.g. in workers):
//! let _persistent: bool = OpfsFs::request_persistence().await;
//! let path = LocalPath::parse("notes/hello.txt")?;
//! fs.write_bytes(&path, Bytes::from_static(b"hello")).await?;
//! assert_eq!(fs.read_bytes(&path).await?, &b"hello"[..]);
//! # Ok(())
//! # }
//! # fn main() {}
//! ```
//!
//! # `IdbStore`
//!
//! `IdbStore` is the browser's [`filesync_core::store::Store`]: the event log and its
//! materialized tables in one IndexedDB database (object stores named after the SQLite store's
//! tables). It loads the database into memory on open and serves reads from there; every
//! write runs filesync-core's shared `commit_batch` / `rebase_batch` / `confirm_batch` and
//! persists exactly the rows it changed in one read-write transaction before memory (and
//! `watch`) change. It passes filesync-core's `store_conformance!` suite in headless
//! Chromium, on a page and in a worker. Every tab or worker of an origin may open and write
//! the same database: a write counter checked inside each write transaction keeps writers
//! from building on stale memory, and a `BroadcastChannel` tells the other connections to
//! reload, so a follower tab's saves reach the leader.
//!
//! ```
//! # #[cfg(target_arch = "wasm32")]
//! # async fn example() -> filesync_core::Result<()> {
//! use filesync_core::store::Store;
//! use filesync_opfs::IdbStore;
//!
//! let store = IdbStore::open("filesync").await?;
//! println!("client {} at {}", store.client_id().await?, store.head().await?);
//! # Ok(())
//! # }
//! # fn main() {}
//! ```
//!
//! On other targets this crate is empty, so a native `cargo build --workspace` (and
//! `cargo doc`) still works; build the API docs with `--target wasm32-unknown-unknown`.
//!
//! # Limits
//!
//! - The `opfs` crate (used for the cursor writes, directory listing and removal) casts
//!   positions to `u32` in `seek`/`truncate` and reports sizes as `usize`, i.e. 4 GiB on
//!   wasm32. `OpfsFs` uses none of those: it appends at the cursor and reads `File` slices with
//!   `f64` offsets, and counts bytes in `u64`, so it has no 4 GiB limit of its own (files that
//!   large are untested; the origin's quota applies).
//! - Every `write_at_cursor_pos` copies the chunk once more into a JS `File` (`opfs`'s
//!   workaround for a Safari bug).
//! - A read takes one `File` snapshot. If the file is replaced while it is being read,
//!   Chromium fails the rest of that read (a retryable `Error::Io`) instead of mixing versions.
//! - Temporary entries `.<name>.tmp-<16 hex>` left by a tab closed mid-write stay on disk
//!   (hidden from `list`) until their directory is removed.
//! - Without `FileSystemFileHandle.move()` the writes go through `createWritable()` on the
//!   target itself (its swap file keeps an existing file's change atomic, but a new file is
//!   visible, empty, while it is written) and `rename` copies then removes.
//!
//! [Origin Private File System]: https://developer.mozilla.org/en-US/docs/Web/API/File_System_API/Origin_private_file_system

#[cfg(target_arch = "wasm32")]
mod idb;
#[cfg(target_arch = "wasm32")]
mod idb_store;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod opfs_fs;

#[cfg(target_arch = "wasm32")]
pub use idb_store::{DEFAULT_DATABASE, IDB_SCHEMA_VERSION, IdbStore};
#[cfg(target_arch = "wasm32")]
pub use opfs_fs::{DEFAULT_BASE, OpfsFs, READ_CHUNK, WRITE_CHUNK};
