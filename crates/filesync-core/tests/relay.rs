//! The HTTP event relay: protocol conformance over loopback HTTP (each request to a server on
//! an ephemeral port), `SqliteEventLog` durability, and engines converging through `HttpRelay`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use filesync_core::FileSync;
use filesync_core::contract::{MAX_METADATA_JSON_BYTES, MAX_PAGE_BYTES, PullResponse, RelayEvent};
use filesync_core::fs::{FileSystem, collect_stream};
use filesync_core::remote::MemoryRemote;
use filesync_core::schema::{
    Event, EventSeq, FileDeleted, LocalFileStateClear, MetadataJson, TransferStatus,
};
use filesync_core::server::{EventLog, RouterConfig, SHUTDOWN_GRACE, SqliteEventLog, relay_router};
use filesync_core::store::Store;
use filesync_core::sync::{EventExchange, HttpRelay};
use filesync_core::testing::event_log::{created_with_metadata, metadata_of_len};
use filesync_core::types::{FileId, StoreId, Timestamp};
use filesync_core::{Error, Result};
use futures::StreamExt;

use common::engine::{Disk, retry_fast};
use common::http::{self, Served, dead_addr, grants, post, send, serve_on};
use common::relay::{open_log, scratch_log};
use common::{store_id, text, within};

mod common;

fn config() -> RouterConfig {
    grants(&[("store-a-token", &["store-a/"]), ("admin-token", &[])])
}

fn deleted(id: &str, seq: u64, client: &str) -> RelayEvent {
    RelayEvent {
        event: Event::FileDeleted(FileDeleted {
            id: FileId::parse(id).unwrap(),
            deleted_at: Timestamp::from_millis(1).unwrap(),
        }),
        seq_num: seq,
        parent_seq_num: seq - 1,
        client_id: client.into(),
        session_id: "s".into(),
    }
}

/// Serve the relay on `log` on a loopback port (`0`: a free one).
async fn serve_relay_on(log: &Arc<SqliteEventLog>, port: u16) -> Served {
    let app = relay_router(log.clone() as Arc<dyn EventLog>, config());
    serve_on(port, app, SHUTDOWN_GRACE).await
}

/// Serve the relay on `log` on a free loopback port.
async fn serve_relay(log: &Arc<SqliteEventLog>) -> Served {
    serve_relay_on(log, 0).await
}

/// Send `req` over real HTTP to a relay server on loopback: the status and the body.
async fn call(log: &Arc<SqliteEventLog>, req: Request<Body>) -> (StatusCode, String) {
    let server = serve_relay(log).await;
    send(&server.base(), req).await
}

fn push(store: &str, token: Option<&str>, body: String) -> Request<Body> {
    post(&format!("/api/v1/stores/{store}/push"), token, body)
}

/// Push `events` to `store` (through a fresh server on `log`) with `token`.
async fn push_events(
    log: &Arc<SqliteEventLog>,
    store: &str,
    token: Option<&str>,
    events: &[RelayEvent],
) -> (StatusCode, String) {
    call(log, push(store, token, batch(events))).await
}

fn batch(events: &[RelayEvent]) -> String {
    serde_json::json!({ "batch": events }).to_string()
}

/// Push: 200 `{head}`; a repeated batch is acknowledged, not duplicated; 409 ServerAhead when
/// the client is behind; 400 for bad batches with nothing stored; 401/403 for tokens.
#[tokio::test]
async fn push_protocol() {
    let (_dir, log) = scratch_log().await;
    let store = store_id("store-a");
    let first = [deleted("f1", 1, "c1"), deleted("f2", 2, "c1")];
    let (s, b) = push_events(&log, "store-a", Some("store-a-token"), &first).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"head":2}"#));
    let (s, b) = push_events(&log, "store-a", Some("store-a-token"), &first).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, r#"{"head":2}"#),
        "a repeated push is acknowledged"
    );
    assert_eq!(log.head(&store).await.unwrap(), 2);
    let (s, b) = push_events(
        &log,
        "store-a",
        Some("store-a-token"),
        &[deleted("other", 1, "c2")],
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::CONFLICT, r#"{"error":"ServerAhead","head":2}"#)
    );
    let client_only = RelayEvent {
        event: Event::LocalFileStateClear(LocalFileStateClear {}),
        ..deleted("x", 3, "c1")
    };
    let too_many: Vec<RelayEvent> = (3..=1003).map(|n| deleted("x", n, "c1")).collect();
    for (body, needle) in [
        ("not json".to_owned(), "invalid batch"),
        (r#"{"batch":[{"name":"v1.Nope","args":{},"seqNum":3,"parentSeqNum":2,"clientId":"c","sessionId":"s"}]}"#.to_owned(), "unknown event name"),
        (r#"{"batch":[{"name":"v1.FileDeleted","args":{"id":""},"seqNum":3,"parentSeqNum":2,"clientId":"c","sessionId":"s"}]}"#.to_owned(), "invalid batch"),
        (batch(&[deleted("x", 5, "c1")]), "beyond the relay's head"),
        (batch(&[deleted("x", 3, "c1"), deleted("y", 5, "c1")]), "not contiguous"),
        (batch(&[client_only]), "client-only"),
        (batch(&too_many), "more than 1000"),
        // Over the 4 MiB body limit: refused before parsing.
        (format!(r#"{{"batch":[],"pad":"{}"}}"#, "x".repeat(4 << 20)), "over 4194304 bytes"),
    ] {
        let (s, b) = call(&log, push("store-a", Some("admin-token"), body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert!(b.contains(needle), "{b} lacks {needle}");
    }
    assert_eq!(log.head(&store).await.unwrap(), 2, "nothing was stored");
    let (s, _) = push_events(
        &log,
        "store-b",
        Some("store-a-token"),
        &[deleted("f", 1, "c")],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = push_events(&log, "store-a", None, &[deleted("f", 3, "c")]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Pull returns events after N in order; a pull with `wait` long-polls until an event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_long_poll() {
    let (_dir, log) = scratch_log().await;
    let store = store_id("store-a");
    log.append(&store, vec![deleted("a", 1, "c"), deleted("b", 2, "c")])
        .await
        .unwrap();
    let get = |q: &str| {
        http::get(
            &format!("/api/v1/stores/store-a/pull?{q}"),
            Some("store-a-token"),
        )
    };
    let (s, b) = call(&log, get("after=1")).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["head"], 2);
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    assert_eq!(v["events"][0]["seqNum"], 2);
    assert_eq!(v["events"][0]["name"], "v1.FileDeleted");
    let (tx, waiter) = tokio::sync::oneshot::channel();
    {
        let log = log.clone();
        drop(filesync_core::rt::spawn(async move {
            let _ = tx.send(call(&log, get("after=2&wait=10")).await);
        }));
    }
    filesync_core::rt::sleep(Duration::from_millis(100)).await;
    log.append(&store, vec![deleted("c", 3, "c")])
        .await
        .unwrap();
    let (s, b) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(b.contains(r#""seqNum":3"#), "{b}");
    // `limit` bounds the page; a long-poll with nothing new answers empty when `wait` ends.
    let (s, b) = call(&log, get("after=0&limit=2")).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 2, "{b}");
    assert_eq!(v["head"], 3);
    let (s, b) = call(&log, get("after=3&wait=1")).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v["events"].as_array().unwrap().len(), &v["head"]),
        (0, &3.into())
    );
    // Bad parameters and store ids are 400; other stores' tokens 403; no token 401 (pull and
    // stream alike).
    for q in ["after=x", "after=1&limit=-1", "wait=forever"] {
        let (s, b) = call(&log, get(q)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {b}");
    }
    for (path, token, want) in [
        (
            "/api/v1/stores/store-b/pull",
            Some("store-a-token"),
            StatusCode::FORBIDDEN,
        ),
        (
            "/api/v1/stores/store-b/stream",
            Some("store-a-token"),
            StatusCode::FORBIDDEN,
        ),
        (
            "/api/v1/stores/store-a/pull",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/v1/stores/store-a/stream",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/v1/stores/bad%20id!/pull",
            Some("admin-token"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, b) = call(&log, http::get(path, token)).await;
        assert_eq!(s, want, "{path} {token:?}: {b}");
    }
}

/// The log is durable: what was acknowledged survives reopening (a relay restart).
#[tokio::test]
async fn sqlite_event_log_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_id("s");
    {
        let log = open_log(dir.path()).await;
        log.append(&store, vec![deleted("a", 1, "c"), deleted("b", 2, "c")])
            .await
            .unwrap();
    }
    let log = open_log(dir.path()).await;
    assert_eq!(log.head(&store).await.unwrap(), 2);
    assert_eq!(
        log.read(&store, 0, 10).await.unwrap(),
        vec![deleted("a", 1, "c"), deleted("b", 2, "c")]
    );
}

/// Whether all clients hold the same log and rows, and every live file is uploaded and local.
async fn converged(clients: &[(FileSync, Arc<dyn Store>)]) -> bool {
    let mut logs = Vec::new();
    let mut rows = Vec::new();
    for (_, s) in clients {
        logs.push(s.events_after(EventSeq::ROOT, 1000).await.unwrap());
        rows.push(s.files().await.unwrap());
    }
    if logs.windows(2).any(|w| w[0] != w[1]) || rows.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    for (_, store) in clients {
        for f in store.files().await.unwrap() {
            if f.is_deleted() {
                continue;
            }
            let ok = f.remote_key.is_some()
                && store.local_state(&f.id).await.unwrap().is_some_and(|s| {
                    s.local_hash == Some(f.content_hash)
                        && s.download_status == TransferStatus::Done
                });
            if !ok {
                return false;
            }
        }
    }
    true
}

async fn dump(clients: &[(FileSync, Arc<dyn Store>)], log: &Arc<SqliteEventLog>) {
    for (i, (_, s)) in clients.iter().enumerate() {
        eprintln!(
            "client {i}: head {} confirmed {} cursor {} files {:?}",
            s.head().await.unwrap(),
            s.confirmed().await.unwrap(),
            s.cursor().await.unwrap().last_event_sequence,
            s.files()
                .await
                .unwrap()
                .iter()
                .map(|f| (
                    f.id.to_string()[..4].to_owned(),
                    f.content_hash.to_string()[..4].to_owned(),
                    f.remote_key.is_some(),
                    f.is_deleted()
                ))
                .collect::<Vec<_>>()
        );
        for f in s.files().await.unwrap() {
            eprintln!(
                "   {} state {:?}",
                &f.id.to_string()[..4],
                s.local_state(&f.id).await.unwrap().map(|x| (
                    x.local_hash.map(|h| h.to_string()[..4].to_owned()),
                    x.upload_status,
                    x.download_status,
                    x.last_sync_error
                ))
            );
        }
    }
    eprintln!(
        "relay head {}",
        log.head(&store_id("store-a")).await.unwrap()
    );
}

async fn wait_converged(clients: &[(FileSync, Arc<dyn Store>)]) -> bool {
    within(1500, || converged(clients)).await
}

/// Three engines, each with its own directory and SQLite store, save concurrently through
/// `HttpRelay` on a real loopback server; then one goes offline and saves while the others
/// update and delete; back online it catches up, and all converge to one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engines_converge_over_http() {
    let (_dir, log) = scratch_log().await;
    let server = serve_relay(&log).await;
    let addr = server.addr;
    let remote = MemoryRemote::new();
    let relay_at = |addr: std::net::SocketAddr| {
        HttpRelay::new(format!("http://{addr}/api"), Some("store-a-token".into())).unwrap()
    };
    let start = |fs: Arc<dyn FileSystem>, store: Arc<dyn Store>, relay: HttpRelay| {
        let remote = remote.clone();
        async move {
            Disk { fs, store }
                .builder("store-a")
                .with_remote(Arc::new(remote))
                .with_relay(Arc::new(relay))
                .start()
                .await
                .unwrap()
        }
    };
    let mut clients = Vec::new();
    let mut disks = Vec::new();
    for _ in 0..3 {
        let Disk { fs, store } = Disk::scratch().await;
        let sync = start(Arc::clone(&fs), Arc::clone(&store), relay_at(addr)).await;
        clients.push((sync, store));
        disks.push(fs);
    }
    let saves = clients.iter().enumerate().map(|(n, (sync, _))| async move {
        let mut ids = Vec::new();
        for k in 0..4 {
            ids.push(
                sync.save_file(text("f", &format!("client {n} file {k}")))
                    .await
                    .unwrap()
                    .file_id,
            );
        }
        ids
    });
    let ids: Vec<FileId> = futures::future::join_all(saves)
        .await
        .into_iter()
        .flatten()
        .collect();
    if !wait_converged(&clients).await {
        dump(&clients, &log).await;
        panic!("the three clients did not converge after saving");
    }
    // Client 2 goes offline (its relay unreachable) and saves; meanwhile the others update
    // and delete. Back online, it catches up and its offline save is ordered after theirs.
    let (offline, store2) = clients.pop().unwrap();
    offline.shutdown().await;
    let dead = dead_addr().await;
    let offline = start(Arc::clone(&disks[2]), Arc::clone(&store2), relay_at(dead)).await;
    let offline_id = offline
        .save_file(text("f", "saved offline"))
        .await
        .unwrap()
        .file_id;
    clients[1]
        .0
        .update_file(&ids[0], text("f", "updated by 1"))
        .await
        .unwrap();
    clients[0].0.delete_file(&ids[5]).await.unwrap();
    if !wait_converged(&clients).await {
        dump(&clients, &log).await;
        panic!("the two online clients did not converge after update/delete");
    }
    offline.shutdown().await;
    let back = start(Arc::clone(&disks[2]), Arc::clone(&store2), relay_at(addr)).await;
    clients.push((back, store2));
    if !wait_converged(&clients).await {
        dump(&clients, &log).await;
        panic!("the client that was offline did not catch up");
    }
    let seen = clients[0].1.file(&offline_id).await.unwrap();
    assert!(seen.is_some(), "the offline save reached the others");
    let store = store_id("store-a");
    let relay_log = log.read(&store, 0, 1000).await.unwrap();
    let seqs: Vec<u64> = relay_log.iter().map(|e| e.seq_num).collect();
    assert_eq!(
        seqs,
        (1..=relay_log.len() as u64).collect::<Vec<_>>(),
        "no gaps or duplicates"
    );
    let content = clients[2].0.read_file(&ids[0]).await.unwrap();
    assert_eq!(collect_stream(content.body).await.unwrap(), "updated by 1");
    for (sync, _) in clients {
        sync.shutdown().await;
    }
}

/// A relay wrapper that stores a push but loses its answer, as when a client dies between the
/// relay's 200 and recording it.
#[derive(Debug)]
struct LosesAcks {
    inner: HttpRelay,
    lose: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl filesync_core::sync::EventExchange for LosesAcks {
    async fn push(
        &self,
        store: &StoreId,
        batch: Vec<RelayEvent>,
    ) -> Result<filesync_core::contract::PushOutcome> {
        let out = self.inner.push(store, batch).await?;
        if self
            .lose
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return Err(Error::Remote {
                what: "connection reset after the push (injected)".into(),
                status: None,
                retryable: true,
                source: None,
            });
        }
        Ok(out)
    }
    async fn pull(&self, store: &StoreId, after: u64, limit: usize) -> Result<Vec<RelayEvent>> {
        self.inner.pull(store, after, limit).await
    }
    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> Result<()> {
        self.inner.wait(store, after, max).await
    }
}

/// A push whose answer is lost (the client died before recording it) is neither lost nor
/// duplicated: after a restart on the same store, the client recognises its own events in the
/// relay and confirms them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_push_ack_then_restart_neither_loses_nor_duplicates() {
    let (_dir, log) = scratch_log().await;
    let server = serve_relay(&log).await;
    let base = server.api();
    let remote = MemoryRemote::new();
    let Disk { fs, store } = Disk::scratch().await;
    let relay = LosesAcks {
        inner: HttpRelay::new(&base, Some("store-a-token".into())).unwrap(),
        lose: std::sync::atomic::AtomicUsize::new(1000),
    };
    let disk = Disk { fs, store };
    let sync = disk
        .builder("store-a")
        .with_remote(Arc::new(remote.clone()))
        .with_relay(Arc::new(relay))
        .start()
        .await
        .unwrap();
    let saved = sync.save_file(text("x", "acked or not")).await.unwrap();
    let relay_store = store_id("store-a");
    within(500, || async { log.head(&relay_store).await.unwrap() >= 1 }).await;
    // The relay has the event, the client never recorded the acknowledgement: "crash".
    sync.shutdown().await;
    assert!(log.head(&relay_store).await.unwrap() >= 1);
    // Restart with a healthy connection on the same directory and store.
    let store = Arc::clone(&disk.store);
    let sync = disk
        .builder("store-a")
        .with_remote(Arc::new(remote))
        .with_relay(Arc::new(
            HttpRelay::new(&base, Some("store-a-token".into())).unwrap(),
        ))
        .start()
        .await
        .unwrap();
    within(500, || async {
        let rec = store.file(&saved.file_id).await.unwrap().unwrap();
        rec.remote_key.is_some() && store.confirmed().await.unwrap() == store.head().await.unwrap()
    })
    .await;
    assert_eq!(
        store.confirmed().await.unwrap(),
        store.head().await.unwrap()
    );
    let relay_log = log.read(&relay_store, 0, 100).await.unwrap();
    let local = store.events_after(EventSeq::ROOT, 100).await.unwrap();
    assert_eq!(relay_log.len(), local.len(), "no event lost or duplicated");
    for (r, l) in relay_log.iter().zip(&local) {
        assert_eq!((r.seq_num, &r.event), (l.seq.global, &l.event));
    }
    let created = relay_log
        .iter()
        .filter(|e| e.event.name() == "v1.FileCreated")
        .count();
    assert_eq!(created, 1);
    sync.shutdown().await;
}

/// The relay restarts (same database, same port) while clients keep working: nothing that was
/// acknowledged is lost and everyone converges afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_relay(&Arc::new(open_log(dir.path()).await)).await;
    let port = server.addr.port();
    let remote = MemoryRemote::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let disk = Disk::scratch().await;
        let relay = HttpRelay::new(server.api(), Some("store-a-token".into())).unwrap();
        let sync = disk
            .builder("store-a")
            .with_remote(Arc::new(remote.clone()))
            .with_relay(Arc::new(relay))
            .with_options(retry_fast())
            .start()
            .await
            .unwrap();
        clients.push((sync, disk.store));
    }
    clients[0].0.save_file(text("a", "before")).await.unwrap();
    assert!(wait_converged(&clients).await, "before the restart");
    server.shutdown();
    filesync_core::rt::sleep(Duration::from_millis(100)).await;
    clients[0].0.save_file(text("b", "during A")).await.unwrap();
    clients[1].0.save_file(text("c", "during B")).await.unwrap();
    filesync_core::rt::sleep(Duration::from_millis(200)).await;
    let log = Arc::new(open_log(dir.path()).await);
    let _restarted = serve_relay_on(&log, port).await;
    if !wait_converged(&clients).await {
        dump(&clients, &log).await;
        panic!("after the restart");
    }
    let store = store_id("store-a");
    let seqs: Vec<u64> = log
        .read(&store, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq_num)
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(clients[0].1.files().await.unwrap().len(), 3);
    for (sync, _) in clients {
        sync.shutdown().await;
    }
}

/// The server-sent-events stream: resumes after `Last-Event-ID` and delivers new events live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_stream_resumes_and_follows() {
    let (_dir, log) = scratch_log().await;
    let store = store_id("store-a");
    log.append(&store, vec![deleted("a", 1, "c"), deleted("b", 2, "c")])
        .await
        .unwrap();
    let server = serve_relay(&log).await;
    let base = server.base();
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/stores/store-a/stream"))
        .header("authorization", "Bearer store-a-token")
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut next_frame = async || {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        String::from_utf8(chunk.to_vec()).unwrap()
    };
    text.push_str(&next_frame().await);
    assert!(
        text.contains("id: 2") && text.contains(r#""seqNum":2"#),
        "{text}"
    );
    assert!(
        !text.contains("id: 1\n"),
        "resumed after Last-Event-ID: {text}"
    );
    log.append(&store, vec![deleted("c", 3, "c")])
        .await
        .unwrap();
    let live = next_frame().await;
    assert!(
        live.contains("id: 3") && live.contains(r#""name":"v1.FileDeleted""#),
        "{live}"
    );
}

/// Shutdown does not wait forever for an open event stream: after the grace period `serve`
/// returns (a SIGTERM to a binary with live clients ends it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_streams_after_the_grace_period() {
    let (_dir, log) = scratch_log().await;
    let app = relay_router(log.clone() as Arc<dyn EventLog>, config());
    let mut server = serve_on(0, app, Duration::from_millis(300)).await;
    let base = server.base();
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/stores/store-a/stream"))
        .header("authorization", "Bearer store-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.bytes_stream();
    server.shutdown();
    // `serve` returns after the grace period although the stream is still open (a binary's
    // main then returns, and the runtime's shutdown closes the connection).
    tokio::time::timeout(Duration::from_secs(10), server.join())
        .await
        .expect("serve returned after the grace period");
    drop(body);
}

/// A relay that refuses the exchange (here a token scoped to another store: 403) is reported
/// as `sync:error` with context `relay:refused`; a transient failure as `relay`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_failed_exchanges_are_reported() {
    let (_dir, log) = scratch_log().await;
    let server = serve_relay(&log).await;
    let base = server.base();
    let dead = dead_addr().await;
    for (url, want) in [
        (format!("{base}/api"), "relay:refused"),
        (format!("http://{dead}/api"), "relay"),
    ] {
        let relay = HttpRelay::new(url, Some("store-a-token".into())).unwrap();
        let builder = Disk::scratch()
            .await
            .builder("store-b")
            .with_remote(Arc::new(MemoryRemote::new()))
            .with_relay(Arc::new(relay));
        let mut events = Box::pin(builder.events());
        let sync = builder.start().await.unwrap();
        let context = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(e) = events.next().await {
                if let filesync_core::events::SyncEvent::SyncError {
                    context: Some(c), ..
                } = e
                    && c.starts_with("relay")
                {
                    return c;
                }
            }
            String::new()
        })
        .await
        .expect("a relay error was reported");
        assert_eq!(context, want);
        sync.shutdown().await;
    }
}

/// Positions beyond `i64::MAX` (pull `after`, stream `?after` and `Last-Event-ID`) are 400
/// with the limit in the message, never wrapped to the start of the log; `i64::MAX` itself is
/// a valid (empty) position. A `Last-Event-ID` that is not a number is still ignored.
#[tokio::test]
async fn positions_beyond_i64_max_are_refused() {
    let (_dir, log) = scratch_log().await;
    let store = store_id("store-a");
    log.append(&store, vec![deleted("a", 1, "c"), deleted("b", 2, "c")])
        .await
        .unwrap();
    let server = serve_relay(&log).await;
    let base = server.base();
    let max = i64::MAX as u64;
    let limit = format!("must be at most {max}");
    for after in [
        (max + 1).to_string(),
        u64::MAX.to_string(),
        "99999999999999999999999".to_owned(),
    ] {
        let pull = format!("/api/v1/stores/store-a/pull?after={after}");
        let (s, b) = send(&base, http::get(&pull, Some("store-a-token"))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "pull after {after}: {b}");
        assert!(b.contains("invalid pull parameters"), "{b}");
    }
    let (s, b) = send(
        &base,
        http::get(
            &format!("/api/v1/stores/store-a/pull?after={}", max + 1),
            Some("store-a-token"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.contains(&limit), "{b}");
    let (s, b) = send(
        &base,
        http::get(
            &format!("/api/v1/stores/store-a/pull?after={max}"),
            Some("store-a-token"),
        ),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, r#"{"events":[],"head":2}"#)
    );
    let stream = |last_event_id: Option<String>, query: &str| {
        let mut r = reqwest::Client::new()
            .get(format!("{base}/api/v1/stores/store-a/stream{query}"))
            .header("authorization", "Bearer store-a-token");
        if let Some(id) = last_event_id {
            r = r.header("last-event-id", id);
        }
        r.send()
    };
    for (id, query) in [
        (Some((max + 1).to_string()), ""),
        (Some(u64::MAX.to_string()), ""),
        (Some("99999999999999999999999".to_owned()), ""),
        (None, &*format!("?after={}", max + 1)),
    ] {
        let resp = stream(id.clone(), query).await.unwrap();
        // Checked before reading: an accepted stream's body never ends.
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{id:?} {query}");
        let b = resp.text().await.unwrap();
        assert!(b.contains(&limit), "{b}");
    }
    // A non-number is ignored (as documented): the stream starts from `?after`.
    let resp = stream(Some("not-a-number".into()), "?after=1")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(
        first.contains("id: 2") && !first.contains("id: 1\n"),
        "{first}"
    );
    let resp = stream(Some(max.to_string()), "").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A `v1.FileCreated` at `seq` from `client` whose `metadataJson` is `len` bytes of valid JSON.
fn created(seq: u64, client: &str, len: usize) -> RelayEvent {
    created_with_metadata(seq, client, metadata_of_len(len))
}

/// Pull pages are capped in bytes (`MAX_PAGE_BYTES`) as well as in count: with `limit=1000`
/// a page of large events holds fewer, and `HttpRelay`, paging by the last `seqNum`, still
/// reads every event once and in order; an engine catches up through such pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_pages_are_capped_in_bytes() {
    let (_dir, log) = scratch_log().await;
    let server = serve_relay(&log).await;
    let n = 40u64;
    let events: Vec<RelayEvent> = (1..=n)
        .map(|seq| created(seq, "writer", MAX_METADATA_JSON_BYTES))
        .collect();
    let (s, b) = push_events(&log, "store-a", Some("store-a-token"), &events).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, r#"{"head":40}"#));
    let (s, b) = send(
        &server.base(),
        http::get(
            "/api/v1/stores/store-a/pull?after=0&limit=1000",
            Some("store-a-token"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let page: PullResponse = serde_json::from_str(&b).unwrap();
    assert!(
        !page.events.is_empty() && page.events.len() < n as usize,
        "{} events in one page",
        page.events.len()
    );
    assert_eq!(page.head, n);
    let array = serde_json::to_vec(&page.events).unwrap().len();
    assert!(
        array <= MAX_PAGE_BYTES,
        "the page's events are {array} bytes"
    );
    let relay = HttpRelay::new(server.api(), Some("store-a-token".into())).unwrap();
    let store = store_id("store-a");
    let (mut after, mut pulled, mut pages) = (0, Vec::new(), 0);
    loop {
        let page = relay.pull(&store, after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq_num;
        pulled.extend(page);
        pages += 1;
    }
    assert!(pages >= 3, "{pages} pages");
    assert_eq!(pulled, events);
    // An engine pulling through `HttpRelay` catches up through the short pages.
    let disk = Disk::scratch().await;
    let local = Arc::clone(&disk.store);
    let sync = disk
        .builder("store-a")
        .with_remote(Arc::new(MemoryRemote::new()))
        .with_relay(Arc::new(relay))
        .start()
        .await
        .unwrap();
    assert!(
        within(1000, || async {
            local.confirmed().await.unwrap() == EventSeq::global(n)
        })
        .await,
        "the engine confirmed {} of {n}",
        local.confirmed().await.unwrap()
    );
    assert_eq!(local.files().await.unwrap().len(), n as usize);
    sync.shutdown().await;
}

/// Pushes with an event out of bounds (metadataJson over 64 KiB or not JSON, a bad clientId or
/// sessionId, a seqNum beyond `i64::MAX`) are 400 with the reason, and store nothing: a pull
/// afterwards returns only what was there before.
#[tokio::test]
async fn out_of_bounds_events_are_refused_over_http() {
    let (_dir, log) = scratch_log().await;
    let server = serve_relay(&log).await;
    let base = server.base();
    let (s, _) = push_events(
        &log,
        "store-a",
        Some("store-a-token"),
        &[created(1, "c", 64)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let with = |f: &dyn Fn(&mut RelayEvent)| {
        let mut b = vec![created(2, "c", 64), created(3, "c", 64)];
        f(&mut b[1]);
        batch(&b)
    };
    let beyond = {
        let mut e = created(2, "c", 64);
        (e.seq_num, e.parent_seq_num) = (i64::MAX as u64 + 1, i64::MAX as u64);
        batch(&[e])
    };
    for (body, needle) in [
        (
            with(&|e| *e = created(3, "c", MAX_METADATA_JSON_BYTES + 1)),
            "metadataJson is over 65536 bytes",
        ),
        (
            with(&|e| *e = created_with_metadata(3, "c", MetadataJson::Value("{oops".into()))),
            "metadataJson is not valid JSON",
        ),
        (
            with(&|e| e.client_id = "x".repeat(129)),
            "clientId must be 1 to 128",
        ),
        (
            with(&|e| e.client_id = String::new()),
            "clientId must be 1 to 128",
        ),
        (
            with(&|e| e.client_id = "a b".into()),
            "clientId may hold only",
        ),
        (
            with(&|e| e.session_id = "<script>".into()),
            "sessionId may hold only",
        ),
        (beyond, "must be at most 9223372036854775807"),
    ] {
        let (s, b) = send(&base, push("store-a", Some("store-a-token"), body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{needle}: {b}");
        assert!(
            b.contains("invalid relay event") && b.contains(needle),
            "{b} lacks {needle}"
        );
    }
    let (s, b) = send(
        &base,
        http::get("/api/v1/stores/store-a/pull?after=0", Some("store-a-token")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let page: PullResponse = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (page.events, page.head),
        (vec![created(1, "c", 64)], 1),
        "nothing was stored"
    );
}
