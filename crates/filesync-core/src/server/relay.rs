//! The event relay, server side: [`EventLog`] (append if the head matches, read after, wait)
//! and [`SqliteEventLog`], the embedded default. Served by the contract router when one is
//! given (see [`super::router_with_relay`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use crate::contract::{
    AppendDecision, MAX_SEQ_NUM, PushOutcome, RelayEvent, collect_page, decide_append,
};
use crate::schema::Event;
use crate::types::StoreId;
use crate::{Error, Result};

/// A totally ordered log of each store's synced events. Narrow on purpose: a PostgreSQL
/// implementation needs only a transaction per `append` and a notification for `wait`.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Apply [`decide_append`] and store the batch atomically when it says so. Durable when it
    /// returns `Accepted`.
    async fn append(&self, store: &StoreId, batch: Vec<RelayEvent>) -> Result<PushOutcome>;
    /// Events with `seqNum > after`, in order: at most `limit` of them and at most
    /// [`MAX_PAGE_BYTES`](crate::contract::MAX_PAGE_BYTES) of JSON, but at least one when
    /// there is one (build the answer with [`collect_page`]). Shorter pages than `limit` are
    /// normal: callers page by the last `seqNum`, not by count.
    async fn read(&self, store: &StoreId, after: u64, limit: usize) -> Result<Vec<RelayEvent>>;
    /// The last `seqNum` (0 when empty).
    async fn head(&self, store: &StoreId) -> Result<u64>;
    /// Return once the head is beyond `after`, or after `max`.
    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> Result<()>;
}

/// [`EventLog`] in one SQLite file: WAL, `synchronous=FULL`, one transaction per batch.
#[derive(Clone)]
pub struct SqliteEventLog {
    conn: Arc<Mutex<Connection>>,
    heads: Arc<Mutex<HashMap<StoreId, watch::Sender<u64>>>>,
}

impl std::fmt::Debug for SqliteEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEventLog").finish_non_exhaustive()
    }
}

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::Store {
        op,
        retryable: matches!(&e, rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)),
        source: Box::new(e),
    }
}

fn row_event(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, i64, String, String, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn to_event(r: (i64, i64, String, String, String, String)) -> Result<RelayEvent> {
    let (seq, parent, name, args, client_id, session_id) = r;
    let json = format!(
        "{{\"name\":{},\"args\":{args}}}",
        serde_json::Value::String(name)
    );
    Ok(RelayEvent {
        event: Event::from_json(&json).map_err(|e| Error::bad_json("stored relay event", e))?,
        seq_num: seq.max(0) as u64,
        parent_seq_num: parent.max(0) as u64,
        client_id,
        session_id,
    })
}

/// `seq` as SQLite stores it. `check_relay_event` keeps pushed numbers within `i64`; this
/// refuses rather than wraps should one ever get past it.
fn sql_seq(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| {
        Error::invalid(
            "relay event",
            format!("seqNum and parentSeqNum must be at most {MAX_SEQ_NUM}"),
        )
    })
}

fn read_blocking(
    conn: &Connection,
    store: &StoreId,
    after: u64,
    limit: usize,
) -> Result<Vec<RelayEvent>> {
    // Nothing is stored beyond `i64::MAX` (`check_relay_event`); a larger `after` must not
    // wrap around to a negative bound, which would read the log from its start.
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, parent, name, args, clientId, sessionId FROM relayEvents \
             WHERE store = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(db("read"))?;
    // Rows are decoded lazily: the page stops reading once it is full (`MAX_PAGE_BYTES`).
    let rows = stmt
        .query_map(params![store.as_str(), after, limit], row_event)
        .map_err(db("read"))?
        .map(|row| row.map_err(db("read")).and_then(to_event));
    collect_page(rows, usize::try_from(limit).unwrap_or(usize::MAX))
}

fn head_blocking(conn: &Connection, store: &StoreId) -> Result<u64> {
    let h: Option<i64> = conn
        .query_row(
            "SELECT MAX(seq) FROM relayEvents WHERE store = ?1",
            [store.as_str()],
            |r| r.get(0),
        )
        .map_err(db("read"))?;
    Ok(h.unwrap_or(0).max(0) as u64)
}

impl SqliteEventLog {
    /// Open (or create) the log at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let conn = crate::rt::spawn_blocking(move || -> Result<Connection> {
            let conn = Connection::open(&path).map_err(db("open"))?;
            conn.busy_timeout(Duration::from_secs(10))
                .map_err(db("open"))?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(db("open"))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(db("open"))?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS relayEvents (
                    store TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    parent INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    args TEXT NOT NULL,
                    clientId TEXT NOT NULL,
                    sessionId TEXT NOT NULL,
                    PRIMARY KEY (store, seq)
                ) WITHOUT ROWID;",
            )
            .map_err(db("open"))?;
            Ok(conn)
        })
        .await
        .map_err(|e| Error::io("open", "relay database", e))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            heads: Arc::default(),
        })
    }

    fn notify(&self, store: &StoreId, head: u64) {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads
            .entry(store.clone())
            .or_insert_with(|| watch::channel(head).0)
            .send_replace(head);
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.conn);
        crate::rt::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::io("query", "relay database", e))?
    }
}

#[async_trait]
impl EventLog for SqliteEventLog {
    async fn append(&self, store: &StoreId, batch: Vec<RelayEvent>) -> Result<PushOutcome> {
        let s = store.clone();
        let outcome = self
            .blocking(move |conn| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db("append"))?;
                let head = head_blocking(&tx, &s)?;
                let decision = decide_append(head, &batch, |seq| {
                    tx.query_row(
                        "SELECT seq, parent, name, args, clientId, sessionId FROM relayEvents WHERE store = ?1 AND seq = ?2",
                        params![s.as_str(), sql_seq(seq)?],
                        row_event,
                    )
                    .optional()
                    .map_err(db("append"))?
                    .map(to_event)
                    .transpose()
                    // A stored event that no longer parses is the server's fault, not the push's.
                    .map_err(|e| Error::Store {
                        op: "append",
                        retryable: false,
                        source: Box::new(e),
                    })
                })?;
                if let AppendDecision::Done(outcome) = decision {
                    return Ok(outcome);
                }
                for e in &batch {
                    let json = serde_json::to_value(&e.event).map_err(|err| Error::unencodable("event", err))?;
                    let args = json.get("args").map(ToString::to_string).unwrap_or_default();
                    let (seq, parent) = (sql_seq(e.seq_num)?, sql_seq(e.parent_seq_num)?);
                    tx.execute(
                        "INSERT INTO relayEvents (store, seq, parent, name, args, clientId, sessionId) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![s.as_str(), seq, parent, e.event.name(), args, e.client_id, e.session_id],
                    )
                    .map_err(db("append"))?;
                }
                let head = batch.last().map_or(head, |e| e.seq_num);
                tx.commit().map_err(db("append"))?;
                Ok(PushOutcome::Accepted { head })
            })
            .await?;
        if let PushOutcome::Accepted { head } = outcome {
            self.notify(store, head);
        }
        Ok(outcome)
    }

    async fn read(&self, store: &StoreId, after: u64, limit: usize) -> Result<Vec<RelayEvent>> {
        let s = store.clone();
        self.blocking(move |conn| read_blocking(conn, &s, after, limit))
            .await
    }

    async fn head(&self, store: &StoreId) -> Result<u64> {
        let s = store.clone();
        self.blocking(move |conn| head_blocking(conn, &s)).await
    }

    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> Result<()> {
        let mut rx = {
            let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
            heads
                .entry(store.clone())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe()
        };
        // Check the stored head after subscribing, so an append in between is not missed.
        if self.head(store).await? > after {
            return Ok(());
        }
        let _ = crate::rt::timeout(max, rx.wait_for(|h| *h > after)).await;
        Ok(())
    }
}
