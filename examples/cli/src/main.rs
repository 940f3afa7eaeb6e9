//! `filesync`: a command-line client for filesync.
//!
//! `--dir D` alone works local-only (NativeFs + SqliteStore under `D`). With `--server URL`
//! (a `filesync-s3-signer` or `filesync-r2` with the relay enabled) and `--token T`, bytes go
//! through the signer and events through the relay; `sync` exchanges and transfers until idle,
//! `watch` keeps syncing and prints events.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use filesync_core::events::SyncEvent;
use filesync_core::fs::{ByteStream, FileSystem, NativeFs};
use filesync_core::preprocess::FileInput;
use filesync_core::remote::SignerClient;
use filesync_core::store::{SqliteStore, Store};
use filesync_core::sync::{EventExchange, FileLock, HttpRelay};
use filesync_core::types::{FileId, StoreId};
use filesync_core::{FileSync, FileSyncBuilder};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
#[command(
    name = "filesync",
    version,
    about = "Local-first, content-addressed file sync"
)]
struct Cli {
    /// Where the store (`filesync.sqlite`) and the file contents live.
    #[arg(
        long,
        visible_alias = "data-dir",
        env = "FILESYNC_DIR",
        default_value = ".filesync"
    )]
    dir: PathBuf,
    /// The store id used in local paths, remote keys and the relay.
    #[arg(
        long,
        visible_alias = "store-id",
        env = "FILESYNC_STORE",
        default_value = "default"
    )]
    store: String,
    /// The server's API base URL, e.g. `http://127.0.0.1:8787/api`. Without it: local-only.
    #[arg(long, env = "FILESYNC_SERVER")]
    server: Option<String>,
    /// Bearer token for the server.
    #[arg(long, env = "FILESYNC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print results as JSON lines.
    #[arg(long)]
    json: bool,
    /// Print the engine's events (sync, transfers and their progress, errors, recovery,
    /// online/offline) as JSON lines on stderr.
    #[arg(long)]
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
        /// The file id (from `ls`).
        id: String,
        /// The new content.
        path: PathBuf,
        /// MIME type (guessed from the extension when omitted).
        #[arg(long)]
        mime: Option<String>,
    },
    /// List files: id, path, size, MIME type, display state, SHA-256.
    Ls {
        /// Also show deleted files.
        #[arg(long)]
        all: bool,
    },
    /// Write a file's content to stdout or to `--output`.
    Cat {
        /// The file id.
        id: String,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete a file (its content goes once no other file uses it).
    Rm {
        /// The file id.
        id: String,
    },
    /// Exchange events and transfer bytes until everything is in sync, then exit.
    Sync {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Keep syncing until interrupted, printing files created, updated and deleted (here or
    /// on other devices) on stdout and transfer events on stderr.
    Watch,
    /// Show queued, running and failed transfers.
    Status,
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
    let mime = mime.unwrap_or_else(|| {
        mime_guess::from_path(path)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_owned()
    });
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let shown = path.display().to_string();
    let body: ByteStream = Box::pin(
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |r| {
            r.map_err(|e| filesync_core::Error::Stream {
                source: Box::new(filesync_core::Error::Io {
                    op: "read",
                    path: shown.clone(),
                    source: e,
                }),
            })
        }),
    );
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(FileInput::new(name, mime, body))
}

fn file_id(raw: &str) -> Result<FileId> {
    FileId::parse(raw).map_err(|e| anyhow!("{raw:?} is not a file id ({})", e.reason))
}

struct Ctx {
    sync: FileSync,
    store: Arc<dyn Store>,
    fs: NativeFs,
    store_id: StoreId,
    relay: Option<HttpRelay>,
    json: bool,
}

impl Ctx {
    async fn save(&self, paths: Vec<PathBuf>, mime: Option<String>) -> Result<()> {
        for path in paths {
            let saved = self
                .sync
                .save_file(input(&path, mime.clone()).await?)
                .await?;
            let size = self.fs.stat(&saved.path).await?.map_or(0, |s| s.len);
            if self.json {
                say(format_args!(
                    "{}",
                    serde_json::json!({"fileId": saved.file_id, "contentHash": saved.content_hash.to_string(), "path": saved.path.to_string(), "size": size})
                ))?;
            } else {
                say(format_args!(
                    "{}\t{}\t{size} bytes",
                    saved.file_id, saved.content_hash
                ))?;
            }
        }
        Ok(())
    }

    async fn ls(&self, all: bool) -> Result<()> {
        let mut files = self.store.files().await?;
        files.sort_by_key(|f| (f.created_at, f.id.clone()));
        for f in files.into_iter().filter(|f| all || !f.is_deleted()) {
            let display = self.sync.file_display_state(&f.id).await?;
            let state = match &display {
                _ if f.is_deleted() => "deleted",
                Some(d) if d.has_local_copy => "local",
                Some(d) if d.is_downloading || d.is_download_queued => "downloading",
                Some(d) if d.can_display => "remote",
                _ => "waiting",
            };
            let size = self.fs.stat(&f.path).await?.map(|s| s.len);
            let mime = self
                .sync
                .read_file(&f.id)
                .await
                .map(|c| c.mime_type)
                .unwrap_or_default();
            if self.json {
                say(format_args!(
                    "{}",
                    serde_json::json!({"fileId": f.id, "path": f.path.to_string(), "contentHash": f.content_hash.to_string(), "size": size, "mimeType": mime, "state": state, "deleted": f.is_deleted()})
                ))?;
            } else {
                let size = size.map_or_else(|| "-".to_owned(), |s| format!("{s} bytes"));
                let mime = if mime.is_empty() { "-" } else { mime.as_str() };
                say(format_args!(
                    "{}\t{}\t{size}\t{mime}\t{state}\t{}",
                    f.id, f.path, f.content_hash
                ))?;
            }
        }
        Ok(())
    }

    async fn cat(&self, id: &str, output: Option<PathBuf>) -> Result<()> {
        let id = file_id(id)?;
        match self.store.file(&id).await? {
            None => bail!("no file with id {id}"),
            Some(r) if r.is_deleted() => bail!("file {id} was deleted"),
            Some(_) => {}
        }
        let mut content = self
            .sync
            .read_file(&id)
            .await
            .with_context(|| format!("file {id} is not here yet (run `filesync sync`)"))?;
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
        Ok(())
    }

    async fn rm(&self, id: &str) -> Result<()> {
        let id = file_id(id)?;
        let Some(record) = self.store.file(&id).await? else {
            bail!("no file with id {id}");
        };
        self.sync.delete_file(&id).await?;
        let kept = self.fs.stat(&record.path).await?.is_some();
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
                let noun = if n == 1 { "file" } else { "files" };
                return say(format_args!("in sync: {n} {noun}"));
            }
            if tokio::time::Instant::now() > deadline {
                match last_relay_error() {
                    Some((error, _)) => {
                        bail!("not in sync after {timeout} s; the last relay error: {error}")
                    }
                    None => bail!("not in sync after {timeout} s"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every file's (content hash, deleted, path).
    async fn snapshot(&self) -> Result<std::collections::HashMap<FileId, (String, bool, String)>> {
        Ok(self
            .store
            .files()
            .await?
            .into_iter()
            .map(|f| {
                let deleted = f.is_deleted();
                (
                    f.id,
                    (f.content_hash.to_string(), deleted, f.path.to_string()),
                )
            })
            .collect())
    }

    /// Keep syncing until Ctrl-C, printing each file created, updated or deleted here or
    /// elsewhere (the engine's transfer events go to stderr).
    async fn watch(&self) -> Result<()> {
        let mut seen = self.snapshot().await?;
        let mut head = self.store.watch();
        head.borrow_and_update();
        let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                changed = head.changed() => if changed.is_err() { return Ok(()) },
            }
            let now = self.snapshot().await?;
            let mut changes: Vec<(&str, &FileId, &(String, bool, String))> = now
                .iter()
                .filter_map(|(id, row)| {
                    let what = match seen.get(id) {
                        None if !row.1 => "created",
                        Some(old) if !old.1 && row.1 => "deleted",
                        Some(old) if !row.1 && old.0 != row.0 => "updated",
                        _ => return None,
                    };
                    Some((what, id, row))
                })
                .collect();
            changes.sort_by(|a, b| a.1.as_str().cmp(b.1.as_str()));
            for (what, id, (hash, _, path)) in changes {
                if self.json {
                    say(format_args!(
                        "{}",
                        serde_json::json!({"change": what, "fileId": id, "path": path, "contentHash": hash})
                    ))?;
                } else {
                    say(format_args!("{what}\t{id}\t{path}\t{hash}"))?;
                }
            }
            seen = now;
        }
    }

    async fn status(&self) -> Result<()> {
        let s = self.sync.sync_status().await?;
        if self.json {
            return say(format_args!("{}", serde_json::to_string(&s)?));
        }
        say(format_args!(
            "online: {}\nuploading: {}\ndownloading: {}\nqueued uploads: {}\nqueued downloads: {}\nerrors: {}",
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
                let line = format!("event: {}", e.to_json());
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
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("filesync: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    tokio::fs::create_dir_all(&cli.dir)
        .await
        .with_context(|| format!("creating {}", cli.dir.display()))?;
    let store_id = StoreId::sanitize(&cli.store)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(cli.dir.join("filesync.sqlite")).await?);
    let fs = NativeFs::new(&cli.dir);
    let mut builder = FileSync::builder(store_id.clone(), Arc::new(fs.clone()), Arc::clone(&store));
    let mut relay = None;
    if let Some(server) = &cli.server {
        let remote = SignerClient::builder(server.as_str());
        let remote = match &cli.token {
            Some(t) => remote.with_auth_token(t.as_str()),
            None => remote,
        }
        .build()?;
        let http = HttpRelay::new(server.as_str(), cli.token.clone())?;
        // Fail early and clearly on a bad token, and on an unreachable server when the command
        // needs it (`sync`, `watch`); the others work offline and leave the exchange to the
        // next `sync`.
        let needs_server = matches!(cli.command, Command::Sync { .. } | Command::Watch);
        let probe = http.pull(&store_id, 0, 1).await;
        if let Err(filesync_core::Error::Remote { status: None, .. }) = &probe
            && !needs_server
        {
            eprintln!(
                "filesync: cannot reach {server}: working offline; run `filesync sync` later"
            );
        } else {
            probe.map_err(|e| match e {
                filesync_core::Error::Remote {
                    status: Some(401), ..
                } => anyhow!("the server refused the token (401)"),
                filesync_core::Error::Remote {
                    status: Some(403), ..
                } => anyhow!("the token may not use store {store_id} (403)"),
                filesync_core::Error::Remote { status: None, .. } => {
                    anyhow::Error::new(e).context(format!("cannot reach {server}"))
                }
                other => anyhow::Error::new(other).context("the server's relay answered"),
            })?;
        }
        builder = builder
            .with_remote(Arc::new(remote))
            .with_relay(Arc::new(http.clone()))
            .with_leadership(Arc::new(FileLock::new(cli.dir.join("filesync.lock"))));
        relay = Some(http);
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
        json: cli.json,
    };
    let result = match cli.command {
        Command::Save { paths, mime } => ctx.save(paths, mime).await,
        Command::Update { id, path, mime } => {
            let id = file_id(&id)?;
            let saved = ctx.sync.update_file(&id, input(&path, mime).await?).await?;
            say(format_args!("{}\t{}", saved.file_id, saved.content_hash))
        }
        Command::Ls { all } => ctx.ls(all).await,
        Command::Cat { id, output } => ctx.cat(&id, output).await,
        Command::Rm { id } => ctx.rm(&id).await,
        Command::Sync { timeout } => ctx.sync_until_idle(timeout).await,
        Command::Watch => ctx.watch().await,
        Command::Status => ctx.status().await,
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
