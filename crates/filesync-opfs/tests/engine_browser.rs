//! The engine's browser seams in headless Chromium: object URLs of local content (reused per
//! content, revoked when the content is gone, on request and on shutdown: WEAK-16) and Web
//! Locks leadership (one leader per name, handed over when it lets go: WEAK-13).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::arc_with_non_send_sync)] // wasm32 is single-threaded

use std::sync::Arc;
use std::time::Duration;

use filesync_core::FileSync;
use filesync_core::api::FileUrl;
use filesync_core::preprocess::FileInput;
use filesync_core::store::MemoryStore;
use filesync_core::sync::{Leadership, WebLock};
use filesync_core::types::StoreId;
use filesync_opfs::OpfsFs;
use futures::FutureExt;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

use crate::common::unique;

mod common;

wasm_bindgen_test_configure!(run_in_browser);

/// `fetch(url)` through `globalThis`: the body, or `None` if the fetch fails.
async fn fetch(url: &str) -> Option<Vec<u8>> {
    let fetch: js_sys::Function = common::global("fetch").dyn_into().ok()?;
    let promise: js_sys::Promise = fetch
        .call1(&js_sys::global(), &JsValue::from_str(url))
        .ok()?
        .dyn_into()
        .ok()?;
    let response = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let array_buffer: js_sys::Function = js_sys::Reflect::get(&response, &"arrayBuffer".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let promise: js_sys::Promise = array_buffer.call0(&response).ok()?.dyn_into().ok()?;
    let buf = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    Some(js_sys::Uint8Array::new(&buf).to_vec())
}

async fn local_sync(leadership: Option<Arc<dyn Leadership>>) -> FileSync {
    let fs = OpfsFs::scratch().await.expect("OPFS");
    let mut b = FileSync::builder(
        StoreId::parse("browser").expect("store id"),
        Arc::new(fs),
        Arc::new(MemoryStore::new()),
    );
    if let Some(l) = leadership {
        b = b.with_leadership(l);
    }
    b.start().await.expect("start")
}

fn local_url(u: Option<FileUrl>) -> String {
    match u {
        Some(FileUrl::Local(url)) => url,
        other => panic!("expected a local URL, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn object_urls_are_reused_and_revoked() {
    let sync = local_sync(None).await;
    let a = sync
        .save_file(FileInput::from_bytes("a.bin", "image/png", vec![1u8; 5000]))
        .await
        .expect("save a");
    let b = sync
        .save_file(FileInput::from_bytes("b.txt", "text/plain", "second"))
        .await
        .expect("save b");
    let url_a = local_url(sync.resolve_file_url(&a.file_id).await.expect("resolve"));
    assert!(url_a.starts_with("blob:"), "{url_a}");
    assert_eq!(fetch(&url_a).await, Some(vec![1u8; 5000]));
    // Resolving again reuses the URL: nothing leaks.
    let again = local_url(sync.resolve_file_url(&a.file_id).await.expect("resolve"));
    assert_eq!(again, url_a);
    let url_b = local_url(sync.resolve_file_url(&b.file_id).await.expect("resolve"));
    assert_eq!(fetch(&url_b).await.as_deref(), Some(&b"second"[..]));
    assert_eq!(sync.live_object_urls(), 2);
    // Deleting a's file removes its content; the next resolve revokes its URL.
    sync.delete_file(&a.file_id).await.expect("delete");
    let _ = sync.resolve_file_url(&b.file_id).await.expect("resolve");
    assert_eq!(sync.live_object_urls(), 1);
    assert_eq!(fetch(&url_a).await, None, "a revoked URL no longer loads");
    // Explicit revocation, and shutdown revokes the rest.
    sync.revoke_file_url(&url_b);
    assert_eq!(sync.live_object_urls(), 0);
    assert_eq!(fetch(&url_b).await, None);
    let url_b2 = local_url(sync.resolve_file_url(&b.file_id).await.expect("resolve"));
    assert_ne!(url_b2, url_b, "a revoked URL is not handed out again");
    sync.shutdown().await;
    assert_eq!(sync.live_object_urls(), 0);
    assert_eq!(fetch(&url_b2).await, None);
}

#[wasm_bindgen_test]
async fn web_lock_has_one_holder_and_hands_over() {
    let name = unique("filesync-test-lock");
    let first = WebLock::new(&name);
    let second = WebLock::new(&name);
    let guard = first.acquire().await.expect("the first acquires");
    let mut waiting = Box::pin(second.acquire().fuse());
    let timeout = filesync_core::rt::sleep(Duration::from_millis(300)).fuse();
    futures::pin_mut!(timeout);
    futures::select! {
        _ = waiting.as_mut() => panic!("two holders of one web lock"),
        () = timeout => {}
    }
    drop(guard);
    let handed = filesync_core::rt::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("handed over within 2 s")
        .expect("acquired");
    drop(handed);
}

#[wasm_bindgen_test]
async fn one_engine_leads_and_the_other_takes_over() {
    let name = unique("filesync-test-leader");
    let a = local_sync(Some(Arc::new(WebLock::new(&name)))).await;
    let b = local_sync(Some(Arc::new(WebLock::new(&name)))).await;
    for _ in 0..50 {
        if a.is_leader() || b.is_leader() {
            break;
        }
        filesync_core::rt::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.is_leader() != b.is_leader(), "exactly one leads");
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    leader.shutdown().await;
    for _ in 0..100 {
        if follower.is_leader() {
            break;
        }
        filesync_core::rt::sleep(Duration::from_millis(20)).await;
    }
    assert!(follower.is_leader(), "the follower took over");
    follower.shutdown().await;
}
