//! `filesync`: a command-line client for filesync.
//!
//! `--dir D` alone works local-only (NativeFs + SqliteStore under `D`). With `--server URL`
//! (a `filesync-s3-signer` or `filesync-r2` with the relay enabled) and `--token T`, bytes go
//! through the signer and events through the relay; `sync` exchanges and transfers until idle,
//! `watch` keeps syncing and prints events. `--json`, the exit codes and the settings remembered
//! in `--dir` are described in `--help` and in this example's README.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};
use filesync_core::api::SaveResult;
use filesync_core::events::SyncEvent;
use filesync_core::fs::{FileSystem, NativeFs};
use filesync_core::preprocess::FileInput;
use filesync_core::remote::SignerClient;
use filesync_core::schema::{FileRecord, LocalFileState};
use filesync_core::store::{SqliteStore, Store};
use filesync_core::sync::{EventExchange, FileLock, HttpRelay};
use filesync_core::types::{FileId, StoreId};
use filesync_core::{FileSync, FileSyncBuilder};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// What `--help` shows after the options: the exit codes and the JSON output.
const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  any other error
  2  usage: bad arguments (clap), a malformed or ambiguous file id, a --store/--server that
     differs from the one remembered in --dir (without --reconfigure), a --server URL that is
     not the API base URL
  3  not found: no file with that id or prefix, a deleted file, a missing input file
  4  auth: the server refused the token (401) or its scope (403)
  5  retryable: the server is unreachable, answered 5xx/429 or timed out, the store stayed busy
  6  conflict: the event log or the server refused a change as conflicting (409)

JSON (--json, before or after the subcommand): one JSON object per line on stdout.
  save, update  {fileId, name, contentHash, path, size, mimeType}
  ls            {fileId, name, path, contentHash, size, mimeType, state, upload, deleted, error}
                state: local | downloading | remote | waiting | deleted
                upload: local-only | uploading | uploaded | downloading | error
  cat           with --output: {fileId, name, contentHash, size, mimeType, output};
                without: the same plus contentBase64 (the bytes, base64)
  rm            {fileId, deleted: true, contentKept}
  sync          {inSync: true, files}
  watch         {change: created|updated|deleted, fileId, name, path, contentHash}
  status        {server, mode: local-only|online|offline, online, uploadingFileIds,
                 downloadingFileIds, queuedUploadFileIds, queuedDownloadFileIds,
                 pendingUploadFileIds, pendingDownloadFileIds, errors: [{fileId, error}]}
  errors        on stderr: {error, kind: usage|not_found|auth|retryable|conflict|error, code}
  warnings      on stderr: {warning}
  events        (--events, watch) on stderr: the engine's event objects
`completions` always writes the shell script.

--store and --server are remembered in <dir>/filesync.json on first use; later runs may omit
them. A different value is refused (exit 2) unless --reconfigure is given.";

#[derive(Parser)]
#[command(
    name = "filesync",
    version,
    about = "Local-first, content-addressed file sync",
    long_about = "Local-first, content-addressed file sync.\n\n\
        `--dir D` alone works local-only; with `--server URL --token T --store S` files sync \
        through a filesync server (`filesync-r2`, or `filesync-s3-signer --relay-db`). \
        File ids may be shortened to any unique prefix.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Where the store (`filesync.sqlite`) and the file contents live.
    #[arg(
        long,
        global = true,
        visible_alias = "data-dir",
        env = "FILESYNC_DIR",
        default_value = ".filesync"
    )]
    dir: PathBuf,
    /// The store id used in local paths, remote keys and the relay. Default: the one remembered
    /// in `--dir`, else `default`.
    #[arg(
        long,
        global = true,
        visible_alias = "store-id",
        env = "FILESYNC_STORE"
    )]
    store: Option<String>,
    /// The server's API base URL, e.g. `http://127.0.0.1:8787/api`. Default: the one
    /// remembered in `--dir`; without either: local-only.
    #[arg(long, global = true, env = "FILESYNC_SERVER")]
    server: Option<String>,
    /// Bearer token for the server (never remembered).
    #[arg(long, global = true, env = "FILESYNC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Accept a `--store`/`--server` different from the one remembered in `--dir`, and
    /// remember the new one.
    #[arg(long, global = true)]
    reconfigure: bool,
    /// Print results as JSON lines (fields: see below); errors become JSON on stderr.
    #[arg(long, global = true)]
    json: bool,
    /// Print the engine's events (sync, transfers and their progress, errors, recovery,
    /// online/offline) as JSON lines on stderr.
    #[arg(long, global = true)]
    events: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Save files: stream each into the content store and record it.
    Save {
        /// The files to save.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// MIME type (guessed from the extension when omitted).
        #[arg(long)]
        mime: Option<String>,
    },
    /// Replace a file's content.
    Update {
        /// The file id (from `ls`) or a unique prefix of it.
        id: String,
        /// The new content.
        path: PathBuf,
        /// MIME type (guessed from the extension when omitted).
        #[arg(long)]
        mime: Option<String>,
    },
    /// List files: id, name, size, MIME type, display state, upload state, SHA-256.
    Ls {
        /// Also show deleted files.
        #[arg(long)]
        all: bool,
    },
    /// Write a file's content to stdout or to `--output` (with `--json`: a JSON object, the
    /// content base64-encoded unless `--output` is given).
    Cat {
        /// The file id or a unique prefix of it.
        id: String,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete a file (its content goes once no other file uses it).
    Rm {
        /// The file id or a unique prefix of it.
        id: String,
    },
    /// Exchange events and transfer bytes until everything is in sync, then exit.
    Sync {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Keep syncing until interrupted (Ctrl-C or SIGTERM: exit 0), printing files created,
    /// updated and deleted (here or on other devices) on stdout and transfer events on stderr.
    Watch,
    /// Show the server (or local-only), queued, running and failed transfers.
    Status,
    /// Print a shell completion script, e.g. `filesync completions bash > /etc/bash_completion.d/filesync`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The class of a failure: decides the exit code and the `kind` of a JSON error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Usage,
    NotFound,
    Auth,
    Retryable,
    Conflict,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Error => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Auth => 4,
            Kind::Retryable => 5,
            Kind::Conflict => 6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Error => "error",
            Kind::Usage => "usage",
            Kind::NotFound => "not_found",
            Kind::Auth => "auth",
            Kind::Retryable => "retryable",
            Kind::Conflict => "conflict",
        }
    }

    /// The class of a library error.
    fn of_core(e: &filesync_core::Error) -> Kind {
        use filesync_core::Error as E;
        match e {
            E::Remote {
                status: Some(401 | 403),
                ..
            } => Kind::Auth,
            E::Remote {
                status: Some(404), ..
            } => Kind::NotFound,
            E::Remote {
                status: Some(409), ..
            }
            | E::Conflict { .. } => Kind::Conflict,
            E::Invalid(_) | E::InvalidInput { .. } => Kind::Usage,
            e if e.is_not_found() => Kind::NotFound,
            E::Remote { status: None, .. } => Kind::Retryable,
            e if e.is_retryable() => Kind::Retryable,
            _ => Kind::Error,
        }
    }

    /// The class of an error chain: the outermost [`Classified`] or library error decides.
    fn of(e: &anyhow::Error) -> Kind {
        for cause in e.chain() {
            if let Some(c) = cause.downcast_ref::<Classified>() {
                return c.kind;
            }
            if let Some(c) = cause.downcast_ref::<filesync_core::Error>() {
                return Kind::of_core(c);
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::NotFound
            {
                return Kind::NotFound;
            }
        }
        Kind::Error
    }
}

/// An error the CLI itself makes (or explains), with its class.
#[derive(Debug)]
struct Classified {
    kind: Kind,
    message: String,
    source: Option<filesync_core::Error>,
}

impl std::fmt::Display for Classified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

fn failure(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        kind,
        message: message.into(),
        source: None,
    })
}

/// `message`, caused by the library error `source`, in class `kind`.
fn explained(
    kind: Kind,
    message: impl Into<String>,
    source: filesync_core::Error,
) -> anyhow::Error {
    anyhow::Error::new(Classified {
        kind,
        message: message.into(),
        source: Some(source),
    })
}

/// What `<dir>/filesync.json` remembers after the first use: the store id and the server URL
/// (never the token).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Remembered {
    store: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<String>,
}

const REMEMBERED: &str = "filesync.json";

fn read_remembered(dir: &std::path::Path) -> Result<Remembered> {
    let path = dir.join(REMEMBERED);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid (delete it to start over)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Remembered::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Write atomically (parallel first runs all write the same thing).
fn write_remembered(dir: &std::path::Path, r: &Remembered) -> Result<()> {
    let path = dir.join(REMEMBERED);
    let tmp = dir.join(format!("{REMEMBERED}.{}.tmp", std::process::id()));
    let text = serde_json::to_string_pretty(r)?;
    std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The store id and server for this run: the flags, else what `dir` remembers. A flag that
/// differs from what is remembered is refused unless `reconfigure`. Returns what to remember
/// when it changed.
fn resolve_settings(
    remembered: &Remembered,
    store: Option<String>,
    server: Option<String>,
    reconfigure: bool,
) -> Result<(String, Option<String>, Option<Remembered>)> {
    let mut refused = Vec::new();
    if let (Some(given), Some(kept)) = (&store, &remembered.store)
        && given != kept
        && !reconfigure
    {
        refused.push(format!("store {kept:?} (given: --store {given:?})"));
    }
    if let (Some(given), Some(kept)) = (&server, &remembered.server)
        && !same_server(given, kept)
        && !reconfigure
    {
        refused.push(format!("server {kept} (given: --server {given})"));
    }
    if !refused.is_empty() {
        return Err(failure(
            Kind::Usage,
            format!(
                "this directory is set up for {}; pass --reconfigure to switch (a different store \
                 or server starts an unrelated sync)",
                refused.join(" and ")
            ),
        ));
    }
    let store = store
        .or_else(|| remembered.store.clone())
        .unwrap_or_else(|| "default".to_owned());
    let server = server.or_else(|| remembered.server.clone());
    let next = Remembered {
        store: Some(store.clone()),
        server: server.clone(),
    };
    let changed = (next != *remembered).then_some(next);
    Ok((store, server, changed))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Print a line to stdout; a closed pipe (`filesync ls | head -1`) ends the program quietly.
fn say(line: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("writing to stdout"),
    }
}

async fn input(path: &PathBuf, mime: Option<String>) -> Result<FileInput> {
    // Name from the path, type from the extension, bytes streamed from disk.
    let mut input = FileInput::from_path(path).await?;
    if let Some(mime) = mime {
        input.mime_type = mime;
    }
    Ok(input)
}

/// Print one JSON object as a line on stdout.
fn say_json(value: &serde_json::Value) -> Result<()> {
    say(format_args!("{value}"))
}

/// A warning on stderr: `filesync: …`, or `{"warning": …}` with `--json`.
fn warn(json: bool, text: &str) {
    if json {
        eprintln!("{}", serde_json::json!({ "warning": text }));
    } else {
        eprintln!("filesync: {text}");
    }
}

/// The file's original name, when its `metadataJson` holds one (`name`).
fn name_of(f: &FileRecord) -> Option<String> {
    f.metadata().and_then(|m| m.name).filter(|n| !n.is_empty())
}

/// The MIME type recorded in the file's metadata.
fn mime_of(f: &FileRecord) -> Option<String> {
    f.metadata().and_then(|m| m.mime_type)
}

/// Where the file's bytes stand with respect to the server: `local-only` (not uploaded, or
/// no server), `uploading`, `uploaded`, `downloading` or `error`.
fn upload_state(f: &FileRecord, local: Option<&LocalFileState>, has_server: bool) -> &'static str {
    use filesync_core::schema::TransferStatus as T;
    let busy = |s: T| matches!(s, T::Queued | T::InProgress);
    match local {
        Some(l) if l.upload_status == T::Error || l.download_status == T::Error => "error",
        Some(l) if busy(l.download_status) => "downloading",
        Some(l) if has_server && busy(l.upload_status) => "uploading",
        _ if f.remote_key.is_some() => "uploaded",
        _ => "local-only",
    }
}

struct Ctx {
    sync: FileSync,
    store: Arc<dyn Store>,
    fs: NativeFs,
    store_id: StoreId,
    relay: Option<HttpRelay>,
    server: Option<String>,
    json: bool,
}

impl Ctx {
    /// The file `raw` names: its full id or a unique prefix of one. An ambiguous prefix is a
    /// usage error listing the candidates; no match is not-found.
    async fn resolve(&self, raw: &str) -> Result<FileRecord> {
        if let Err(e) = FileId::parse(raw) {
            return Err(failure(
                Kind::Usage,
                format!("{raw:?} is not a file id ({})", e.reason),
            ));
        }
        let mut matches: Vec<FileRecord> = self
            .store
            .files()
            .await?
            .into_iter()
            .filter(|f| f.id.as_str().starts_with(raw))
            .collect();
        if let Some(exact) = matches.iter().position(|f| f.id.as_str() == raw) {
            return Ok(matches.swap_remove(exact));
        }
        match matches.len() {
            0 => Err(failure(Kind::NotFound, format!("no file with id {raw}"))),
            1 => Ok(matches.remove(0)),
            _ => {
                matches.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
                let ids: Vec<&str> = matches.iter().map(|f| f.id.as_str()).collect();
                Err(failure(
                    Kind::Usage,
                    format!(
                        "file id prefix {raw:?} is ambiguous: it matches {}",
                        ids.join(", ")
                    ),
                ))
            }
        }
    }

    /// The file's MIME type: from its metadata, else from the local content's sidecar.
    async fn mime(&self, f: Option<&FileRecord>) -> Option<String> {
        let f = f?;
        match mime_of(f) {
            Some(m) => Some(m),
            None => self.sync.read_file(&f.id).await.ok().map(|c| c.mime_type),
        }
    }

    /// Print a saved or updated file.
    async fn print_saved(&self, saved: &SaveResult) -> Result<()> {
        let size = self.fs.stat(&saved.path).await?.map_or(0, |s| s.len);
        if self.json {
            let record = self.store.file(&saved.file_id).await?;
            say_json(&serde_json::json!({
                "fileId": saved.file_id,
                "name": record.as_ref().and_then(name_of),
                "contentHash": saved.content_hash.to_string(),
                "path": saved.path.to_string(),
                "size": size,
                "mimeType": self.mime(record.as_ref()).await,
            }))
        } else {
            say(format_args!(
                "{}\t{}\t{size} bytes",
                saved.file_id, saved.content_hash
            ))
        }
    }

    async fn save(&self, paths: Vec<PathBuf>, mime: Option<String>) -> Result<()> {
        for path in paths {
            let saved = self
                .sync
                .save_file(input(&path, mime.clone()).await?)
                .await?;
            self.print_saved(&saved).await?;
        }
        Ok(())
    }

    async fn update(&self, id: &str, path: &PathBuf, mime: Option<String>) -> Result<()> {
        let record = self.resolve(id).await?;
        if record.is_deleted() {
            return Err(failure(
                Kind::NotFound,
                format!("file {} was deleted", record.id),
            ));
        }
        let saved = self
            .sync
            .update_file(&record.id, input(path, mime).await?)
            .await?;
        self.print_saved(&saved).await
    }

    async fn ls(&self, all: bool) -> Result<()> {
        let mut files = self.store.files().await?;
        files.sort_by_key(|f| (f.created_at, f.id.clone()));
        let locals: std::collections::HashMap<FileId, LocalFileState> = self
            .store
            .local_states()
            .await?
            .into_iter()
            .map(|l| (l.file_id.clone(), l))
            .collect();
        for f in files.into_iter().filter(|f| all || !f.is_deleted()) {
            let display = self.sync.file_display_state(&f.id).await?;
            let state = match &display {
                _ if f.is_deleted() => "deleted",
                Some(d) if d.has_local_copy => "local",
                Some(d) if d.is_downloading || d.is_download_queued => "downloading",
                Some(d) if d.can_display => "remote",
                _ => "waiting",
            };
            let local = locals.get(&f.id);
            let upload = upload_state(&f, local, self.server.is_some());
            let error = local
                .map(|l| l.last_sync_error.as_str())
                .filter(|e| !e.is_empty());
            let size = self.fs.stat(&f.path).await?.map(|s| s.len);
            let mime = self.mime(Some(&f)).await;
            let name = name_of(&f);
            if self.json {
                say_json(&serde_json::json!({
                    "fileId": f.id,
                    "name": name,
                    "path": f.path.to_string(),
                    "contentHash": f.content_hash.to_string(),
                    "size": size,
                    "mimeType": mime.unwrap_or_default(),
                    "state": state,
                    "upload": upload,
                    "deleted": f.is_deleted(),
                    "error": error,
                }))?;
            } else {
                let size = size.map_or_else(|| "-".to_owned(), |s| format!("{s} bytes"));
                let mime = mime.filter(|m| !m.is_empty());
                say(format_args!(
                    "{}\t{}\t{size}\t{}\t{state}\t{upload}\t{}",
                    f.id,
                    name.as_deref().unwrap_or("-"),
                    mime.as_deref().unwrap_or("-"),
                    f.content_hash
                ))?;
            }
        }
        Ok(())
    }

    async fn cat(&self, id: &str, output: Option<PathBuf>) -> Result<()> {
        let record = self.resolve(id).await?;
        let id = record.id.clone();
        if record.is_deleted() {
            return Err(failure(Kind::NotFound, format!("file {id} was deleted")));
        }
        let mut content = self.sync.read_file(&id).await.map_err(|e| {
            let kind = Kind::of_core(&e);
            explained(
                kind,
                format!("file {id} is not here yet (run `filesync sync`)"),
                e,
            )
        })?;
        let described = |extra: (&str, serde_json::Value)| {
            let mut v = serde_json::json!({
                "fileId": id,
                "name": name_of(&record),
                "contentHash": content.content_hash.to_string(),
                "size": content.size,
                "mimeType": content.mime_type,
            });
            v[extra.0] = extra.1;
            v
        };
        if self.json && output.is_none() {
            use base64::Engine as _;
            let mut bytes = Vec::with_capacity(usize::try_from(content.size).unwrap_or(0));
            while let Some(chunk) = content.body.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let line = described(("contentBase64", b64.into()));
            return say_json(&line);
        }
        let line = output
            .as_ref()
            .map(|p| described(("output", p.display().to_string().into())));
        let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &output {
            Some(p) => Box::new(
                tokio::fs::File::create(p)
                    .await
                    .with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Box::new(tokio::io::stdout()),
        };
        while let Some(chunk) = content.body.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        match line {
            Some(line) if self.json => say_json(&line),
            _ => Ok(()),
        }
    }

    async fn rm(&self, id: &str) -> Result<()> {
        let record = self.resolve(id).await?;
        let id = record.id.clone();
        self.sync.delete_file(&id).await?;
        let kept = self.fs.stat(&record.path).await?.is_some();
        if self.json {
            return say_json(&serde_json::json!({
                "fileId": id, "deleted": true, "contentKept": kept,
            }));
        }
        let how = if kept {
            "content kept: another file uses it"
        } else {
            "content removed"
        };
        say(format_args!("deleted {id} ({how})"))
    }

    /// Caught up: nothing pending locally, nothing new on the relay, engine idle.
    async fn in_sync(&self) -> Result<bool> {
        self.sync.await_idle().await;
        let confirmed = self.store.confirmed().await?;
        if self.store.head().await? != confirmed {
            return Ok(false);
        }
        if let Some(relay) = &self.relay
            && !relay
                .pull(&self.store_id, confirmed.global, 1)
                .await?
                .is_empty()
        {
            return Ok(false);
        }
        let status = self.sync.sync_status().await?;
        if status.error_count() > 0 {
            let e = &status.errors[0];
            bail!("transfer of {} failed: {}", e.file_id, e.error);
        }
        Ok(!status.has_pending() && !status.is_syncing())
    }

    async fn sync_until_idle(&self, timeout: u64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        // The engine reports failed exchanges with the relay as events: a refusal (bad token,
        // bad batch) ends `sync` with its reason; a transient failure is named on timeout.
        let relay_error: Arc<std::sync::Mutex<Option<(String, bool)>>> = Arc::default();
        let watcher = {
            let relay_error = Arc::clone(&relay_error);
            let mut events = Box::pin(self.sync.events());
            tokio::spawn(async move {
                while let Some(e) = events.next().await {
                    if let SyncEvent::SyncError {
                        error,
                        context: Some(context),
                    } = e
                        && context.starts_with("relay")
                        && let Ok(mut last) = relay_error.lock()
                    {
                        *last = Some((error, context == "relay:refused"));
                    }
                }
            })
        };
        let _stop_watcher = AbortOnDrop(watcher);
        let last_relay_error = || relay_error.lock().ok().and_then(|e| e.clone());
        loop {
            if let Some((error, true)) = last_relay_error() {
                bail!("the relay refused the exchange: {error}");
            }
            if self.in_sync().await? {
                let n = self
                    .store
                    .files()
                    .await?
                    .iter()
                    .filter(|f| !f.is_deleted())
                    .count();
                if self.json {
                    return say_json(&serde_json::json!({"inSync": true, "files": n}));
                }
                let noun = if n == 1 { "file" } else { "files" };
                return say(format_args!("in sync: {n} {noun}"));
            }
            if tokio::time::Instant::now() > deadline {
                let text = match last_relay_error() {
                    Some((error, _)) => {
                        format!("not in sync after {timeout} s; the last relay error: {error}")
                    }
                    None => format!("not in sync after {timeout} s"),
                };
                return Err(failure(Kind::Retryable, text));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Keep syncing until Ctrl-C or SIGTERM, printing each file created, updated or deleted
    /// here, by another process on this directory, or elsewhere (from `FileSync::changes`;
    /// the engine's transfer events go to stderr).
    async fn watch(&self) -> Result<()> {
        use filesync_core::api::FileChange;
        use futures::StreamExt;
        let mut changes = self.sync.changes().await?;
        let mut stop = std::pin::pin!(stop_signal());
        loop {
            let change = tokio::select! {
                _ = &mut stop => return Ok(()),
                change = changes.next() => match change {
                    None => return Ok(()),
                    Some(change) => change?,
                },
            };
            let what = match &change {
                FileChange::Created(_) => "created",
                FileChange::Updated(_) => "updated",
                FileChange::Deleted(_) => "deleted",
                _ => continue, // uploads and future kinds are not printed
            };
            let id = change.id();
            let Some(row) = self.store.file(id).await? else {
                continue;
            };
            let (path, hash, name) = (
                row.path.to_string(),
                row.content_hash.to_string(),
                name_of(&row),
            );
            if self.json {
                say_json(&serde_json::json!({
                    "change": what, "fileId": id, "name": name,
                    "path": path, "contentHash": hash,
                }))?;
            } else {
                say(format_args!("{what}\t{id}\t{path}\t{hash}"))?;
            }
        }
    }

    async fn status(&self) -> Result<()> {
        let s = self.sync.sync_status().await?;
        let mode = match &self.server {
            None => "local-only",
            Some(_) if self.sync.is_online() => "online",
            Some(_) => "offline",
        };
        if self.json {
            let mut v = serde_json::to_value(&s)?;
            v["server"] = serde_json::json!(self.server);
            v["mode"] = mode.into();
            v["online"] = self.sync.is_online().into();
            return say_json(&v);
        }
        let server = match &self.server {
            None => "local-only (no --server)".to_owned(),
            Some(url) => format!("{url} ({mode})"),
        };
        say(format_args!(
            "server: {server}\nonline: {}\nuploading: {}\ndownloading: {}\nqueued uploads: {}\nqueued downloads: {}\nerrors: {}",
            self.sync.is_online(),
            s.uploading_file_ids.len(),
            s.downloading_file_ids.len(),
            s.queued_upload_file_ids.len(),
            s.queued_download_file_ids.len(),
            s.error_count()
        ))?;
        for e in &s.errors {
            say(format_args!("  {}: {}", e.file_id, e.error))?;
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Progress bars for transfers (drawn on stderr), shown when stdout and stderr are terminals
/// and the output is not `--json`.
fn progress_printer(
    builder: &FileSyncBuilder,
    print_events: bool,
    json: bool,
) -> Option<tokio::task::JoinHandle<()>> {
    let bars = !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if !bars && !print_events {
        return None;
    }
    let mut events = Box::pin(builder.events());
    Some(tokio::spawn(async move {
        let multi = indicatif::MultiProgress::new();
        let mut active: std::collections::HashMap<String, indicatif::ProgressBar> =
            Default::default();
        while let Some(e) = events.next().await {
            if print_events {
                // With `--json`, stderr holds JSON only: the event object, no `event: ` prefix.
                let line = if json {
                    e.to_json()
                } else {
                    format!("event: {}", e.to_json())
                };
                if bars {
                    let _ = multi.println(line);
                } else {
                    eprintln!("{line}");
                }
            }
            if !bars {
                continue;
            }
            match &e {
                SyncEvent::UploadProgress { file_id, progress }
                | SyncEvent::DownloadProgress { file_id, progress } => {
                    let bar = active.entry(file_id.to_string()).or_insert_with(|| {
                        let b = multi.add(indicatif::ProgressBar::new(progress.total));
                        b.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{msg} [{bar:30}] {bytes}/{total_bytes}",
                            )
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                        );
                        b.set_message(format!(
                            "{} {}",
                            progress.kind,
                            &file_id.as_str()[..8.min(file_id.as_str().len())]
                        ));
                        b
                    });
                    bar.set_length(progress.total);
                    bar.set_position(progress.loaded);
                }
                SyncEvent::UploadComplete { file_id }
                | SyncEvent::DownloadComplete { file_id }
                | SyncEvent::TransferExhausted { file_id, .. } => {
                    if let Some(b) = active.remove(file_id.as_str()) {
                        b.finish_and_clear();
                    }
                }
                _ => {}
            }
        }
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `--json` anywhere on the line makes even usage errors JSON.
    let json_requested = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if json_requested && !matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
                eprintln!(
                    "{}",
                    serde_json::json!({
                        "error": e.render().to_string().trim_end(),
                        "kind": Kind::Usage.name(),
                        "code": Kind::Usage.code(),
                    })
                );
                return std::process::ExitCode::from(Kind::Usage.code());
            }
            e.exit();
        }
    };
    let json = cli.json;
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let kind = Kind::of(&e);
            if json {
                eprintln!(
                    "{}",
                    serde_json::json!({
                        "error": format!("{e:#}"),
                        "kind": kind.name(),
                        "code": kind.code(),
                    })
                );
            } else {
                eprintln!("filesync: {e:#}");
            }
            std::process::ExitCode::from(kind.code())
        }
    }
}

/// Open the store, waiting up to 30 s while another process holds it (parallel first runs).
async fn open_store(path: PathBuf) -> Result<SqliteStore> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match SqliteStore::open(&path).await {
            Err(filesync_core::Error::StoreLocked { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Why the relay probe failed, in words a user can act on. A 404/405 from a URL that is not
/// the API base gets a hint: `<server>/api/health` is probed and suggested when it answers.
async fn explain_probe_failure(
    server: &str,
    store_id: &StoreId,
    e: filesync_core::Error,
) -> anyhow::Error {
    use filesync_core::Error as E;
    match e {
        E::Remote {
            status: Some(401), ..
        } => explained(Kind::Auth, "the server refused the token (401)", e),
        E::Remote {
            status: Some(403), ..
        } => explained(
            Kind::Auth,
            format!("the token may not use store {store_id} (403)"),
            e,
        ),
        // The relay answers 404 as `NotFound`.
        E::NotFound { .. }
        | E::Remote {
            status: Some(404 | 405),
            ..
        } => {
            let base = server.trim_end_matches('/');
            let health = format!("{base}/api/health");
            let answers = match reqwest::Client::new()
                .get(&health)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(r) => r.status().is_success() || r.status().as_u16() == 503,
                Err(_) => false,
            };
            let hint = if answers {
                format!(
                    "{server} is not the server's API base URL: it answers at {base}/api \
                     (try --server {base}/api)"
                )
            } else if !base.ends_with("/api") {
                format!(
                    "{server} has no filesync API (404): --server is the API base URL, which \
                     usually ends in /api, e.g. http://127.0.0.1:8787/api"
                )
            } else {
                format!("{server} has no filesync relay (404): is it a filesync server?")
            };
            explained(Kind::Usage, hint, e)
        }
        E::Remote { status: None, .. } => {
            anyhow::Error::new(e).context(format!("cannot reach {server}"))
        }
        other => anyhow::Error::new(other).context("the server's relay answered"),
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        let mut out = std::io::stdout();
        clap_complete::generate(shell, &mut Cli::command(), "filesync", &mut out);
        return Ok(());
    }
    tokio::fs::create_dir_all(&cli.dir)
        .await
        .with_context(|| format!("creating {}", cli.dir.display()))?;
    let remembered = read_remembered(&cli.dir)?;
    let (store_name, server, remember) =
        resolve_settings(&remembered, cli.store, cli.server, cli.reconfigure)?;
    let store_id = StoreId::sanitize(&store_name)?;
    let store: Arc<dyn Store> = Arc::new(open_store(cli.dir.join("filesync.sqlite")).await?);
    let fs = NativeFs::new(&cli.dir);
    let mut builder = FileSync::builder(store_id.clone(), Arc::new(fs.clone()), Arc::clone(&store));
    let mut relay = None;
    if let Some(server) = &server {
        let remote = SignerClient::builder(server.as_str());
        let remote = match &cli.token {
            Some(t) => remote.with_auth_token(t.as_str()),
            None => remote,
        }
        .build()?;
        let http = HttpRelay::new(server.as_str(), cli.token.clone())?;
        // Fail early and clearly on a bad token or URL, and on an unreachable server when the
        // command needs it (`sync`, `watch`); the others work offline and leave the exchange
        // to the next `sync`.
        let needs_server = matches!(cli.command, Command::Sync { .. } | Command::Watch);
        let probe = http.pull(&store_id, 0, 1).await;
        match probe {
            Ok(_) => {}
            Err(filesync_core::Error::Remote { status: None, .. }) if !needs_server => warn(
                cli.json,
                &format!("cannot reach {server}: working offline; run `filesync sync` later"),
            ),
            Err(e) => return Err(explain_probe_failure(server, &store_id, e).await),
        }
        builder = builder
            .with_remote(Arc::new(remote))
            .with_relay(Arc::new(http.clone()))
            .with_leadership(Arc::new(FileLock::new(cli.dir.join("filesync.lock"))));
        relay = Some(http);
    }
    if let Some(next) = remember {
        write_remembered(&cli.dir, &next)?;
    }
    let printer = progress_printer(
        &builder,
        cli.events || matches!(cli.command, Command::Watch),
        cli.json,
    );
    let sync = builder.start().await?;
    let ctx = Ctx {
        sync,
        store,
        fs,
        store_id,
        relay,
        server,
        json: cli.json,
    };
    let result = match cli.command {
        Command::Save { paths, mime } => ctx.save(paths, mime).await,
        Command::Update { id, path, mime } => ctx.update(&id, &path, mime).await,
        Command::Ls { all } => ctx.ls(all).await,
        Command::Cat { id, output } => ctx.cat(&id, output).await,
        Command::Rm { id } => ctx.rm(&id).await,
        Command::Sync { timeout } => ctx.sync_until_idle(timeout).await,
        Command::Watch => ctx.watch().await,
        Command::Status => ctx.status().await,
        Command::Completions { .. } => Ok(()),
    };
    // Local-only commands wait for the engine to process what they committed; with a server,
    // `sync` already waited and the others leave transfers to the next `sync`/`watch`.
    if ctx.relay.is_none() {
        ctx.sync.await_idle().await;
    }
    ctx.sync.shutdown().await;
    if let Some(p) = printer {
        tokio::task::yield_now().await;
        p.abort();
    }
    result
}
