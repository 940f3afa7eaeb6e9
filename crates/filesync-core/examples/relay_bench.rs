//! `cargo xtask bench relay`: the event relay over loopback against bare SQLite, same run.
//!
//! 1. push N small events through `HttpRelay` → router → `SqliteEventLog` (batches of 1000),
//!    beside a bare rusqlite loop inserting the same rows (one transaction per 1000);
//! 2. catch-up of a fresh client: pull all N events and apply them to a fresh `SqliteStore`,
//!    beside a bare rusqlite select of the same rows.

#![allow(clippy::print_stdout, clippy::disallowed_methods, clippy::unwrap_used)] // a benchmark on fixed inputs

use std::sync::Arc;
use std::time::{Duration, Instant};

use filesync_core::contract::RelayEvent;
use filesync_core::schema::{Event, FileCreated, MetadataJson};
use filesync_core::server::{EventLog, RouterConfig, SqliteEventLog, relay_router, serve};
use filesync_core::store::{SqliteStore, Store};
use filesync_core::sync::{EventExchange, HttpRelay};
use filesync_core::types::{ContentHash, FileId, LocalPath, StoreId, Timestamp};

fn event(n: u64) -> RelayEvent {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&n.to_le_bytes());
    let hash = ContentHash::from_bytes(h);
    RelayEvent {
        event: Event::FileCreated(FileCreated {
            id: FileId::parse(format!("file-{n}")).unwrap(),
            path: LocalPath::parse(format!("livestore-filesync-files/bench/{hash}")).unwrap(),
            content_hash: hash,
            metadata_json: MetadataJson::Null,
            created_at: Timestamp::from_millis(1_767_472_224_642).unwrap(),
            updated_at: Timestamp::from_millis(1_767_472_224_642).unwrap(),
        }),
        seq_num: n,
        parent_seq_num: n - 1,
        client_id: "bench-client".into(),
        session_id: "bench-session".into(),
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::var("FILESYNC_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let events: Vec<RelayEvent> = (1..=n).map(event).collect();
    let store = StoreId::parse("bench")?;

    // Baseline 1: bare SQLite inserts of the same rows (JSON args), 1000 per transaction.
    let baseline_insert = {
        let mut conn = rusqlite::Connection::open(dir.path().join("bare.sqlite"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("CREATE TABLE e (store TEXT, seq INTEGER, parent INTEGER, name TEXT, args TEXT, client TEXT, session TEXT, PRIMARY KEY (store, seq)) WITHOUT ROWID")?;
        let start = Instant::now();
        for chunk in events.chunks(1000) {
            let tx = conn.transaction()?;
            for e in chunk {
                let json = serde_json::to_value(&e.event)?;
                tx.execute(
                    "INSERT INTO e VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    rusqlite::params![
                        "bench",
                        e.seq_num as i64,
                        e.parent_seq_num as i64,
                        e.event.name(),
                        json["args"].to_string(),
                        e.client_id,
                        e.session_id
                    ],
                )?;
            }
            tx.commit()?;
        }
        let insert = start.elapsed();
        let start = Instant::now();
        let mut stmt =
            conn.prepare("SELECT seq, name, args FROM e WHERE store = 'bench' ORDER BY seq")?;
        let mut count = 0u64;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let args: String = row.get(2)?;
            let _: serde_json::Value = serde_json::from_str(&args)?;
            count += 1;
        }
        assert_eq!(count, n);
        (insert, start.elapsed())
    };

    // The relay over loopback.
    let log = Arc::new(SqliteEventLog::open(dir.path().join("relay.sqlite")).await?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = relay_router(log.clone() as Arc<dyn EventLog>, RouterConfig::default());
    tokio::spawn(async move {
        let _ = serve(listener, app, std::future::pending()).await;
    });
    let relay = HttpRelay::new(format!("http://{addr}/api"), None)?;
    let start = Instant::now();
    for chunk in events.chunks(1000) {
        relay.push(&store, chunk.to_vec()).await?;
    }
    let push = start.elapsed();

    // Pull alone: every event over HTTP in pages of 1000, parsed and validated (the like-for-like
    // figure beside the bare select + parse).
    let start = Instant::now();
    let mut after = 0;
    let mut pulled = 0u64;
    loop {
        let batch = relay.pull(&store, after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq_num;
        pulled += batch.len() as u64;
    }
    let pull = start.elapsed();
    assert_eq!(pulled, n);

    // Catch-up of a fresh client: pull everything and apply it to a fresh SqliteStore.
    let fresh = SqliteStore::open(dir.path().join("client.sqlite")).await?;
    let start = Instant::now();
    let mut after = 0;
    loop {
        let batch = relay.pull(&store, after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq_num;
        fresh
            .apply_remote(batch.into_iter().map(|e| e.event).collect())
            .await?;
    }
    let catch_up = start.elapsed();
    assert_eq!(fresh.head().await?.global, n);
    assert_eq!(fresh.files().await?.len() as u64, n);

    println!("events: {n}");
    println!(
        "push through the relay   {:>9.0} events/s ({push:.2?})",
        rate(n, push)
    );
    println!(
        "bare SQLite insert       {:>9.0} events/s ({:.2?})",
        rate(n, baseline_insert.0),
        baseline_insert.0
    );
    println!(
        "ratio relay push / bare insert = {:.2}",
        rate(n, push) / rate(n, baseline_insert.0)
    );
    println!(
        "pull through the relay   {:>9.0} events/s ({pull:.2?}) (HTTP pages of 1000, parsed)",
        rate(n, pull)
    );
    println!(
        "bare SQLite select+parse {:>9.0} events/s ({:.2?})",
        rate(n, baseline_insert.1),
        baseline_insert.1
    );
    println!(
        "ratio relay pull / bare select = {:.2}",
        rate(n, pull) / rate(n, baseline_insert.1)
    );
    println!(
        "fresh-client catch-up    {:>9.0} events/s ({catch_up:.2?}) (pull + apply + materialize)",
        rate(n, catch_up)
    );
    println!(
        "ratio catch-up / bare select = {:.2} (catch-up also writes the client's log and rows)",
        rate(n, catch_up) / rate(n, baseline_insert.1)
    );
    Ok(())
}
