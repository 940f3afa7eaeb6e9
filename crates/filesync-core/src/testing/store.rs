//! store suite
