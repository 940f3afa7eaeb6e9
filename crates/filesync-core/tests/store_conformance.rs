//! The `Store` conformance suite on every native implementation.

mod memory {
    use filesync_core::store::MemoryStore;
    filesync_core::store_conformance!(#[tokio::test] MemoryStore::new());
}

mod sqlite {
    use filesync_core::store::SqliteStore;
    filesync_core::store_conformance!(#[tokio::test] SqliteStore::scratch().await.unwrap());
}
