//! `filesync-r2` will provide `R2Proxy`, a server that proxies file bytes to a bucket through
//! HMAC-signed, expiring URLs (local disk by default, Cloudflare R2 or any S3 in production),
//! plus the signer contract routes and the event relay.
//!
//! **Status: not implemented yet.** This crate has no public API and no binary; it exists so the
//! workspace has its final shape. See the r2 issue and `ARCHITECTURE.md`.
