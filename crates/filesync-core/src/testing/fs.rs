//! fs suite
