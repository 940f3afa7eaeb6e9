//! [`SqliteStore`]: the embedded default [`Store`], one SQLite file (rusqlite, bundled SQLite).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::watch;

use super::backend::{Tables, commit_batch, confirm_batch, rebase_batch};
use super::{MAX_READ_BATCH, Store, StoredEvent};
use crate::schema::{
    CURSOR_DOCUMENT_ID, Event, EventSeq, FileRecord, FileSyncCursor, LocalFileState, Mutation,
};
use crate::types::{ContentHash, FileId, LocalPath, ObjectKey, Timestamp};
use crate::{Error, Result};

/// `PRAGMA application_id` of a filesync store ("FSYN"), so foreign databases are recognised.
const APPLICATION_ID: i64 = 0x4653_594E;
/// `PRAGMA user_version`: the schema version.
const SCHEMA_VERSION: i64 = 1;
/// How long a commit waits by default for another connection's transaction before failing.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE eventlog (
    seqGlobal INTEGER PRIMARY KEY,
    rebaseGeneration INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL,
    argsJson TEXT NOT NULL
);
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL DEFAULT '',
    remoteKey TEXT NOT NULL DEFAULT '',
    contentHash TEXT NOT NULL DEFAULT '',
    metadataJson TEXT,
    createdAt INTEGER NOT NULL,
    updatedAt INTEGER NOT NULL,
    deletedAt INTEGER
);
CREATE TABLE localFileState (
    fileId TEXT PRIMARY KEY,
    path TEXT NOT NULL DEFAULT '',
    localHash TEXT NOT NULL DEFAULT '',
    downloadStatus TEXT NOT NULL DEFAULT 'pending',
    uploadStatus TEXT NOT NULL DEFAULT 'pending',
    lastSyncError TEXT NOT NULL DEFAULT ''
);
CREATE TABLE fileSyncCursor (
    id TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE remoteDeleteQueue (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE
);
CREATE TABLE filesyncMeta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// A [`Store`] in one SQLite file: WAL journal, one transaction per commit, `synchronous=FULL`
/// (a commit that returned survives power loss). Tables use the original's names and columns.
///
/// Opening checks the file before changing anything: a file that is not SQLite, is corrupt, or
/// is another program's database is refused with [`Error::NotAStore`] and left untouched. Two
/// connections (two processes, or two `SqliteStore`s) may share a file: SQLite's locks serialise
/// their commits (a writer waits up to 10 s, or what [`SqliteStore::open_with`] says, then gets
/// [`Error::StoreLocked`]); several connections opening a new file at once are safe too (one
/// creates the schema, the others wait for it up to the same timeout).
/// [`Store::watch`] only sees this connection's commits.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    conn: Mutex<(Connection, (u64, u64))>,
    head: watch::Sender<EventSeq>,
    #[cfg(feature = "testing")]
    _scratch: Option<tempfile::TempDir>,
}

fn sql_err(op: &'static str, path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return Error::StoreLocked {
                    path: path.display().to_string(),
                };
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                let reason = msg.clone().unwrap_or_else(|| f.to_string());
                return Error::NotAStore {
                    path: path.display().to_string(),
                    reason,
                    source: Some(Box::new(e)),
                };
            }
            _ => {}
        }
    }
    let retryable = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _) if matches!(
            f.code,
            rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::DiskFull
        )
    );
    Error::Store {
        op,
        retryable,
        source: Box::new(e),
    }
}

fn bad_row(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn parse_opt<T: TryFrom<String, Error = crate::types::ParseError>>(
    s: String,
) -> rusqlite::Result<Option<T>> {
    if s.is_empty() {
        Ok(None)
    } else {
        T::try_from(s).map(Some).map_err(bad_row)
    }
}

fn ts(ms: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_millis(ms).map_err(bad_row)
}

fn file_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: FileId::parse(row.get::<_, String>(0)?).map_err(bad_row)?,
        path: LocalPath::parse(row.get::<_, String>(1)?).map_err(bad_row)?,
        remote_key: parse_opt::<ObjectKey>(row.get(2)?)?,
        content_hash: ContentHash::parse(&row.get::<_, String>(3)?).map_err(bad_row)?,
        metadata_json: row.get(4)?,
        created_at: ts(row.get(5)?)?,
        updated_at: ts(row.get(6)?)?,
        deleted_at: row.get::<_, Option<i64>>(7)?.map(ts).transpose()?,
    })
}

fn local_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LocalFileState> {
    Ok(LocalFileState {
        file_id: FileId::parse(row.get::<_, String>(0)?).map_err(bad_row)?,
        path: parse_opt::<LocalPath>(row.get(1)?)?,
        local_hash: parse_opt::<ContentHash>(row.get(2)?)?,
        download_status: row.get::<_, String>(3)?.parse().map_err(bad_row)?,
        upload_status: row.get::<_, String>(4)?.parse().map_err(bad_row)?,
        last_sync_error: row.get(5)?,
    })
}

const FILE_COLUMNS: &str =
    "id, path, remoteKey, contentHash, metadataJson, createdAt, updatedAt, deletedAt";
const LOCAL_COLUMNS: &str = "fileId, path, localHash, downloadStatus, uploadStatus, lastSyncError";

struct Tx<'a>(Transaction<'a>);

impl Tables for Tx<'_> {
    fn file(&mut self, id: &FileId) -> Result<Option<FileRecord>> {
        self.0
            .query_row(
                &format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1"),
                [id.as_str()],
                file_row,
            )
            .optional()
            .map_err(|e| Error::Store {
                op: "read",
                retryable: false,
                source: Box::new(e),
            })
    }

    fn head(&mut self) -> Result<EventSeq> {
        head_of(&self.0)
    }

    fn append(&mut self, seq: EventSeq, event: &Event) -> Result<()> {
        let json = serde_json::to_value(event).map_err(|e| Error::unencodable("event", e))?;
        let args = json
            .get("args")
            .map(ToString::to_string)
            .unwrap_or_default();
        self.0
            .execute(
                "INSERT INTO eventlog (seqGlobal, rebaseGeneration, name, argsJson) VALUES (?1, ?2, ?3, ?4)",
                params![seq.global as i64, seq.rebase as i64, event.name(), args],
            )
            .map(drop)
            .map_err(|e| Error::Store {
                op: "append",
                retryable: false,
                source: Box::new(e),
            })
    }

    fn apply(&mut self, mutation: Mutation) -> Result<()> {
        let r = match &mutation {
            Mutation::PutFile(f) => self.0.execute(
                &format!("INSERT OR REPLACE INTO files ({FILE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    f.id.as_str(),
                    f.path.as_str(),
                    f.remote_key.as_ref().map_or("", |k| k.as_str()),
                    f.content_hash.to_hex(),
                    f.metadata_json,
                    f.created_at.as_millis(),
                    f.updated_at.as_millis(),
                    f.deleted_at.map(|t| t.as_millis()),
                ],
            ),
            Mutation::PutLocalState(s) => self.0.execute(
                &format!("INSERT OR REPLACE INTO localFileState ({LOCAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    s.file_id.as_str(),
                    s.path.as_ref().map_or("", |p| p.as_str()),
                    s.local_hash.map(|h| h.to_hex()).unwrap_or_default(),
                    s.download_status.as_str(),
                    s.upload_status.as_str(),
                    s.last_sync_error,
                ],
            ),
            Mutation::RemoveLocalState(id) => self
                .0
                .execute("DELETE FROM localFileState WHERE fileId = ?1", [id.as_str()]),
            Mutation::ClearLocalState => self.0.execute("DELETE FROM localFileState", []),
            Mutation::PutCursor { id, value } => {
                let json = serde_json::to_string(value)
                    .map_err(|e| Error::unencodable("cursor", e))?;
                self.0.execute(
                    "INSERT OR REPLACE INTO fileSyncCursor (id, value) VALUES (?1, ?2)",
                    params![id, json],
                )
            }
            Mutation::Nothing => Ok(0),
        };
        r.map(drop).map_err(|e| Error::Store {
            op: "materialize",
            retryable: false,
            source: Box::new(e),
        })
    }

    fn log_after(&mut self, seq: EventSeq) -> Result<Vec<StoredEvent>> {
        log_after_of(&self.0, seq, i64::MAX)
    }

    fn truncate_after(&mut self, seq: EventSeq) -> Result<()> {
        self.0
            .execute(
                "DELETE FROM eventlog WHERE seqGlobal > ?1",
                [seq.global as i64],
            )
            .map(drop)
            .map_err(store_err("rebase"))
    }

    fn finalize_up_to(&mut self, global: u64) -> Result<()> {
        self.0
            .execute(
                "UPDATE eventlog SET rebaseGeneration = 0 \
                 WHERE seqGlobal <= ?1 AND rebaseGeneration <> 0",
                [global as i64],
            )
            .map(drop)
            .map_err(store_err("confirm"))
    }

    fn clear_files(&mut self) -> Result<()> {
        self.0
            .execute("DELETE FROM files", [])
            .map(drop)
            .map_err(store_err("rebase"))
    }

    fn confirmed(&mut self) -> Result<EventSeq> {
        confirmed_of(&self.0)
    }

    fn set_confirmed(&mut self, seq: EventSeq) -> Result<()> {
        self.0
            .execute(
                "UPDATE filesyncMeta SET value = ?1 WHERE key = 'confirmed'",
                [seq.global.to_string()],
            )
            .map(drop)
            .map_err(store_err("confirm"))
    }

    fn cursor(&mut self) -> Result<FileSyncCursor> {
        cursor_of(&self.0)
    }
}

fn store_err(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::Store {
        op,
        retryable: false,
        source: Box::new(e),
    }
}

fn meta(conn: &Connection, key: &str) -> Result<String> {
    conn.query_row(
        "SELECT value FROM filesyncMeta WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .map_err(store_err("read"))
}

fn confirmed_of(conn: &Connection) -> Result<EventSeq> {
    let v = meta(conn, "confirmed")?;
    v.parse::<u64>()
        .map(EventSeq::global)
        .map_err(|e| Error::invalid_because("stored confirmed position", v, e))
}

fn log_after_of(conn: &Connection, after: EventSeq, limit: i64) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seqGlobal, rebaseGeneration, name, argsJson FROM eventlog \
             WHERE seqGlobal > ?1 ORDER BY seqGlobal LIMIT ?2",
        )
        .map_err(store_err("read"))?;
    let rows = stmt
        .query_map(params![after.global as i64, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(store_err("read"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(store_err("read"))?;
    rows.into_iter()
        .map(|(g, r, name, args)| {
            let json = format!(
                "{{\"name\":{},\"args\":{args}}}",
                serde_json::Value::String(name)
            );
            let event = Event::from_json(&json).map_err(|e| Error::bad_json("stored event", e))?;
            Ok(StoredEvent {
                seq: EventSeq {
                    global: g.max(0) as u64,
                    client: 0,
                    rebase: r.max(0) as u64,
                },
                event,
            })
        })
        .collect()
}

fn cursor_of(conn: &Connection) -> Result<FileSyncCursor> {
    let json: Option<String> = conn
        .query_row(
            "SELECT value FROM fileSyncCursor WHERE id = ?1",
            [CURSOR_DOCUMENT_ID],
            |r| r.get(0),
        )
        .optional()
        .map_err(store_err("read"))?;
    match json {
        None => Ok(FileSyncCursor::default()),
        Some(j) => serde_json::from_str(&j).map_err(|e| Error::bad_json("stored cursor", e)),
    }
}

fn head_of(conn: &Connection) -> Result<EventSeq> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT seqGlobal, rebaseGeneration FROM eventlog ORDER BY seqGlobal DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| Error::Store {
            op: "read",
            retryable: false,
            source: Box::new(e),
        })?;
    let (global, rebase) = row.unwrap_or((0, 0));
    Ok(EventSeq {
        global: global.max(0) as u64,
        client: 0,
        rebase: rebase.max(0) as u64,
    })
}

/// Refuse files that are not SQLite before SQLite touches them.
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("open", path.display(), e)),
    };
    let mut header = [0u8; 16];
    let n = f
        .read(&mut header)
        .map_err(|e| Error::io("read", path.display(), e))?;
    if n == 0 {
        return Ok(()); // an empty file becomes a new database
    }
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(Error::NotAStore {
            path: path.display().to_string(),
            reason: "not an SQLite database".into(),
            source: None,
        });
    }
    Ok(())
}

/// [`open_blocking`], tried again while another connection holds a lock SQLite does not wait
/// for on its own (switching a new file to WAL), for up to `busy_timeout`.
fn open_retrying(path: &Path, busy_timeout: Duration) -> Result<(Connection, EventSeq)> {
    const PAUSE: Duration = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    loop {
        match open_blocking(path, busy_timeout) {
            Err(Error::StoreLocked { .. }) if waited < busy_timeout => {
                std::thread::sleep(PAUSE);
                waited += PAUSE;
            }
            other => return other,
        }
    }
}

fn open_blocking(path: &Path, busy_timeout: Duration) -> Result<(Connection, EventSeq)> {
    check_header(path)?;
    let err = |op| move |e| sql_err(op, path, e);
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err("open"))?;
    conn.busy_timeout(busy_timeout).map_err(err("open"))?;

    // Read-only checks first: a foreign or corrupt database must not be modified. One read
    // transaction, so the three answers come from one snapshot (not an application id read
    // before another connection created the schema and a table count read after).
    let snapshot = conn.unchecked_transaction().map_err(err("open"))?;
    let app_id: i64 = snapshot
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(err("open"))?;
    let tables: i64 = snapshot
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(err("open"))?;
    let version: i64 = snapshot
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err("open"))?;
    snapshot.commit().map_err(err("open"))?;
    let fresh = tables == 0 && app_id == 0;
    if !fresh && app_id != APPLICATION_ID {
        return Err(Error::NotAStore {
            path: path.display().to_string(),
            reason: "it is another program's SQLite database".into(),
            source: None,
        });
    }
    if !fresh && version > SCHEMA_VERSION {
        return Err(Error::NotAStore {
            path: path.display().to_string(),
            reason: format!(
                "schema version {version} is newer than this build understands ({SCHEMA_VERSION})"
            ),
            source: None,
        });
    }

    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err("open"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err("open"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err("open"))?;
    if fresh {
        // IMMEDIATE: take the write lock (waiting up to the busy timeout) before reading. A
        // deferred transaction that reads then writes fails at once with SQLITE_BUSY when
        // another connection created the schema in between (parallel first opens).
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("create schema"))?;
        // Another connection may have created it meanwhile; re-check inside the write lock.
        let app: i64 = tx
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(err("create schema"))?;
        if app == 0 {
            tx.execute_batch(SCHEMA).map_err(err("create schema"))?;
            tx.execute(
                "INSERT INTO filesyncMeta (key, value) VALUES ('clientId', ?1), ('confirmed', '0')",
                [FileId::random().as_str()],
            )
            .map_err(err("create schema"))?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(err("create schema"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(err("create schema"))?;
        }
        tx.commit().map_err(err("create schema"))?;
    }
    let head = head_of(&conn)?;
    Ok((conn, head))
}

impl SqliteStore {
    /// Open (or create) the store at `path`. Parent directories must exist.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, DEFAULT_BUSY_TIMEOUT).await
    }

    /// Like [`open`](Self::open), waiting at most `busy_timeout` for another connection's
    /// write before a commit fails with [`Error::StoreLocked`].
    pub async fn open_with(path: impl AsRef<Path>, busy_timeout: Duration) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let (conn, head) = crate::rt::spawn_blocking(move || open_retrying(&p, busy_timeout))
            .await
            .map_err(|e| Error::io("open", path.display(), e))??;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new((conn, (head.global, 0))),
                head: watch::channel(head).0,
                #[cfg(feature = "testing")]
                _scratch: None,
            }),
        })
    }

    /// A store in a new temporary directory, removed when the last clone is dropped.
    #[cfg(feature = "testing")]
    pub async fn scratch() -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "temporary directory", e))?;
        let store = Self::open(dir.path().join("store.sqlite")).await?;
        let inner = Arc::try_unwrap(store.inner).map_err(|_| Error::Unsupported {
            what: "shared scratch store",
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                _scratch: Some(dir),
                ..inner
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut (u64, u64), &Path) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        crate::rt::spawn_blocking(move || {
            let mut guard = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            let (conn, client_seq) = &mut *guard;
            f(conn, client_seq, &inner.path)
        })
        .await
        .map_err(|e| Error::io("query", self.inner.path.display(), e))?
    }

    fn read_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |e| sql_err("read", path, e)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, events: Vec<Event>) -> Result<Vec<EventSeq>> {
        let (seqs, head, grew) = self
            .with_conn(move |conn, client_seq, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| sql_err("commit", path, e))?;
                let mut tx = Tx(tx);
                let before = tx.head()?;
                let mut next_seq = *client_seq;
                // On error the transaction is dropped, which rolls it back.
                let seqs = commit_batch(&mut tx, &mut next_seq, &events)?;
                let head = tx.head()?;
                tx.0.commit().map_err(|e| sql_err("commit", path, e))?;
                *client_seq = next_seq;
                Ok((seqs, head, head != before))
            })
            .await?;
        if grew {
            self.inner.head.send_replace(head);
        }
        Ok(seqs)
    }

    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>> {
        let id = id.clone();
        self.with_conn(move |conn, _, path| {
            conn.query_row(
                &format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1"),
                [id.as_str()],
                file_row,
            )
            .optional()
            .map_err(Self::read_err(path))
        })
        .await
    }

    async fn files(&self) -> Result<Vec<FileRecord>> {
        self.with_conn(|conn, _, path| {
            let mut stmt = conn
                .prepare_cached(&format!("SELECT {FILE_COLUMNS} FROM files ORDER BY id"))
                .map_err(Self::read_err(path))?;
            let rows = stmt
                .query_map([], file_row)
                .map_err(Self::read_err(path))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(Self::read_err(path))?;
            Ok(rows)
        })
        .await
    }

    async fn local_state(&self, id: &FileId) -> Result<Option<LocalFileState>> {
        let id = id.clone();
        self.with_conn(move |conn, _, path| {
            conn.query_row(
                &format!("SELECT {LOCAL_COLUMNS} FROM localFileState WHERE fileId = ?1"),
                [id.as_str()],
                local_row,
            )
            .optional()
            .map_err(Self::read_err(path))
        })
        .await
    }

    async fn local_states(&self) -> Result<Vec<LocalFileState>> {
        self.with_conn(|conn, _, path| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {LOCAL_COLUMNS} FROM localFileState ORDER BY fileId"
                ))
                .map_err(Self::read_err(path))?;
            let rows = stmt
                .query_map([], local_row)
                .map_err(Self::read_err(path))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(Self::read_err(path))?;
            Ok(rows)
        })
        .await
    }

    async fn cursor(&self) -> Result<FileSyncCursor> {
        self.with_conn(|conn, _, _| cursor_of(conn)).await
    }

    async fn events_after(&self, after: EventSeq, limit: usize) -> Result<Vec<StoredEvent>> {
        let limit = limit.min(MAX_READ_BATCH) as i64;
        self.with_conn(move |conn, _, _| log_after_of(conn, after, limit))
            .await
    }

    async fn head(&self) -> Result<EventSeq> {
        self.with_conn(|conn, _, _| head_of(conn)).await
    }

    fn watch(&self) -> watch::Receiver<EventSeq> {
        self.inner.head.subscribe()
    }

    async fn client_id(&self) -> Result<String> {
        self.with_conn(|conn, _, _| meta(conn, "clientId")).await
    }

    async fn confirmed(&self) -> Result<EventSeq> {
        self.with_conn(|conn, _, _| confirmed_of(conn)).await
    }

    async fn confirm(&self, seq: EventSeq) -> Result<()> {
        let head = self
            .with_conn(move |conn, _, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| sql_err("confirm", path, e))?;
                let mut tx = Tx(tx);
                confirm_batch(&mut tx, seq)?;
                let head = tx.head()?;
                tx.0.commit().map_err(|e| sql_err("confirm", path, e))?;
                Ok(head)
            })
            .await?;
        self.inner.head.send_replace(head);
        Ok(())
    }

    async fn apply_remote(&self, events: Vec<Event>) -> Result<bool> {
        let (rebased, head) = self
            .with_conn(move |conn, _, path| {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| sql_err("apply remote events", path, e))?;
                let mut tx = Tx(tx);
                let rebased = rebase_batch(&mut tx, &events)?;
                let head = tx.head()?;
                tx.0.commit()
                    .map_err(|e| sql_err("apply remote events", path, e))?;
                Ok((rebased, head))
            })
            .await?;
        self.inner.head.send_replace(head);
        Ok(rebased)
    }

    async fn remote_deletes(&self) -> Result<Vec<ObjectKey>> {
        self.with_conn(|conn, _, _| {
            let mut stmt = conn
                .prepare_cached("SELECT key FROM remoteDeleteQueue ORDER BY position")
                .map_err(store_err("read"))?;
            let keys = stmt
                .query_map([], |r| {
                    ObjectKey::parse(r.get::<_, String>(0)?).map_err(bad_row)
                })
                .map_err(store_err("read"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(store_err("read"))?;
            Ok(keys)
        })
        .await
    }

    async fn set_remote_delete(&self, key: &ObjectKey, owed: bool) -> Result<()> {
        let key = key.clone();
        self.with_conn(move |conn, _, path| {
            let sql = if owed {
                "INSERT OR IGNORE INTO remoteDeleteQueue (key) VALUES (?1)"
            } else {
                "DELETE FROM remoteDeleteQueue WHERE key = ?1"
            };
            conn.execute(sql, [key.as_str()])
                .map(drop)
                .map_err(|e| sql_err("queue remote delete", path, e))
        })
        .await
    }
}
