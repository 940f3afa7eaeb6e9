//! Shared by every browser test of this crate: the `OpfsFs` tests ([`fs`], expanded by
//! `browser.rs` and `worker.rs`), the `IdbStore` tests ([`idb`], expanded by `idb_browser.rs`
//! and `idb_worker.rs`), and small helpers over the browser's globals.
#![allow(dead_code)] // each test binary uses its own part

#[macro_use]
pub mod fs;
#[macro_use]
pub mod idb;

use wasm_bindgen::JsValue;

/// A name no other test run uses: `<prefix>-<random>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Math::random().to_bits())
}

/// `globalThis[name]` (a window or a worker).
pub fn global(name: &str) -> JsValue {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str(name))
        .unwrap_or_else(|e| panic!("globalThis.{name}: {e:?}"))
}
