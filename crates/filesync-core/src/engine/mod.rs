//! The sync engine: reacts to the store's file events, keeps `localFileState`, and moves bytes
//! through [`RemoteStorage`](crate::remote::RemoteStorage) with the [`executor`].

pub mod executor;
