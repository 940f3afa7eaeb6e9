//! `filesync-s3-signer` will provide `S3Signer`, which mints short-lived SigV4 presigned URLs so
//! clients move bytes directly to S3-compatible storage, and the `filesync-s3-signer` server.
//!
//! **Status: not implemented yet.** This crate has no public API and no binary; it exists so the
//! workspace has its final shape. See the s3-signer issue and `ARCHITECTURE.md`.
