//! The `FileSystem` conformance suite on every native implementation.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod memory {
    use filesync_core::fs::MemoryFs;
    filesync_core::fs_conformance!(
        #[tokio::test]
        MemoryFs::new()
    );
}

mod native {
    use filesync_core::fs::NativeFs;
    filesync_core::fs_conformance!(
        #[tokio::test]
        NativeFs::scratch().unwrap()
    );
}
