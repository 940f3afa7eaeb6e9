//! The `Store` conformance suite on every native implementation.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod memory {
    use filesync_core::store::MemoryStore;
    filesync_core::store_conformance!(
        #[tokio::test]
        MemoryStore::new()
    );
}

mod sqlite {
    use filesync_core::store::SqliteStore;
    filesync_core::store_conformance!(
        #[tokio::test]
        SqliteStore::scratch().await.unwrap()
    );
}
