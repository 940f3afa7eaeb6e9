//! The `RemoteStorage` conformance suite on the in-memory reference remote. `SignerClient`
//! runs it against both servers, in `filesync-r2` and `filesync-s3-signer`.

mod memory {
    use filesync_core::remote::MemoryRemote;
    filesync_core::remote_conformance!(
        #[tokio::test]
        MemoryRemote::new()
    );
}
