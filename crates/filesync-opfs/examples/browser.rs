//! The browser quick start from the crate docs: files in OPFS, rows in IndexedDB, bytes through
//! a signer server, events through its relay, one syncing tab per store (Web Locks). Built for
//! wasm32 by `cargo xtask ci`; natively it is an empty program.

#[cfg(target_arch = "wasm32")]
mod app {
    use std::sync::Arc;

    use filesync_core::preprocess::FileInput;
    use filesync_core::remote::SignerClient;
    use filesync_core::sync::{HttpRelay, WebLock};
    use filesync_core::{FileSync, types::StoreId};
    use filesync_opfs::{IdbStore, OpfsFs};
    use futures::StreamExt;

    /// Start syncing and save `file` (from an `<input type=file>` or a drop).
    pub async fn start(file: web_sys::File) -> Result<FileSync, filesync_core::Error> {
        let (server, token) = ("https://files.example.com/api", "dev-token-change-me");
        let sync = FileSync::builder(
            StoreId::parse("my-app")?,
            Arc::new(OpfsFs::open("my-app").await?),
            Arc::new(IdbStore::open("my-app").await?),
        )
        .with_remote(Arc::new(
            SignerClient::builder(server)
                .with_auth_token(token)
                .build()?,
        ))
        .with_relay(Arc::new(HttpRelay::new(server, Some(token.into()))?))
        .with_leadership(Arc::new(WebLock::new("filesync:my-app")))
        .start()
        .await?;
        sync.save_file(FileInput::from_file(&file)).await?; // read in 1 MiB slices
        let mut changes = sync.changes().await?; // this tab, other tabs, other devices
        let watcher = sync.clone();
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(Ok(change)) = changes.next().await {
                let count = watcher.list_files().await.map_or(0, |f| f.len());
                tracing::info!("{change:?}: {count} files");
            }
        });
        Ok(sync)
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = app::start; // called from the page's file picker
    }
}
