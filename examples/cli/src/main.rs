//! `filesync`: a command-line client for filesync.
//!
//! Today it works in local-only mode on the embedded default (`NativeFs` + `SqliteStore` under
//! `--data-dir`): save, list, read back and delete files. Syncing with a server arrives with the
//! sync engine; until then this binary commits the same events the engine's local-only mode will.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use filesync_core::cas::{ContentStore, References};
use filesync_core::fs::{ByteStream, NativeFs};
use filesync_core::schema::{
    Event, FileCreated, FileDeleted, LocalFileState, LocalFileStateRemove, MetadataJson,
    TransferStatus,
};
use filesync_core::store::{SqliteStore, Store};
use filesync_core::types::{FileId, StoreId, Timestamp};
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
    #[arg(long, env = "FILESYNC_DATA_DIR", default_value = ".filesync")]
    data_dir: PathBuf,
    /// The store id used in local paths and remote keys (sanitised as the original does).
    #[arg(long, env = "FILESYNC_STORE_ID", default_value = "default")]
    store_id: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Save a file: stream it into the content store and record it.
    Save {
        /// The file to save.
        path: PathBuf,
        /// MIME type (guessed from the extension when omitted).
        #[arg(long)]
        mime: Option<String>,
    },
    /// List files.
    Ls {
        /// Also show deleted files.
        #[arg(long)]
        all: bool,
    },
    /// Write a file's content to stdout or to `--output`.
    Cat {
        /// The file id (from `ls`).
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

struct App {
    store: Arc<dyn Store>,
    cas: ContentStore,
}

impl App {
    async fn open(cli: &Cli) -> Result<Self> {
        tokio::fs::create_dir_all(&cli.data_dir)
            .await
            .with_context(|| format!("creating {}", cli.data_dir.display()))?;
        let store_id = StoreId::sanitize(&cli.store_id)?;
        let store = SqliteStore::open(cli.data_dir.join("filesync.sqlite")).await?;
        let fs = Arc::new(NativeFs::new(&cli.data_dir));
        Ok(Self {
            store: Arc::new(store),
            cas: ContentStore::new(fs, store_id),
        })
    }

    async fn save(&self, path: PathBuf, mime: Option<String>) -> Result<()> {
        let mime = mime.unwrap_or_else(|| {
            mime_guess::from_path(&path)
                .first_raw()
                .unwrap_or("application/octet-stream")
                .to_owned()
        });
        let file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let shown = path.display().to_string();
        let body: ByteStream = Box::pin(
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |r| {
                r.map_err(|e| filesync_core::Error::Stream {
                    source: format!("reading {shown}: {e}").into(),
                })
            }),
        );
        let put = self.cas.put(body, Some(&mime)).await?;
        let id = FileId::random();
        let now = Timestamp::now();
        self.store
            .commit(vec![
                Event::FileCreated(FileCreated {
                    id: id.clone(),
                    path: put.path.clone(),
                    content_hash: put.hash,
                    metadata_json: MetadataJson::Null,
                    created_at: now,
                    updated_at: now,
                }),
                // Local-only mode: the bytes are here and nothing is to be transferred (CFG-4).
                Event::LocalFileStateUpsert(LocalFileState {
                    file_id: id.clone(),
                    path: Some(put.path.clone()),
                    local_hash: Some(put.hash),
                    download_status: TransferStatus::Done,
                    upload_status: TransferStatus::Done,
                    last_sync_error: String::new(),
                }),
            ])
            .await?;
        drop(put.pin);
        say(format_args!(
            "{id}\t{}\t{} bytes\t{mime}",
            put.hash, put.size
        ))
    }

    async fn ls(&self, all: bool) -> Result<()> {
        let mut files = self.store.files().await?;
        files.sort_by_key(|f| (f.created_at, f.id.clone()));
        for f in files {
            if f.is_deleted() && !all {
                continue;
            }
            let size = self
                .cas
                .fs()
                .stat(&f.path)
                .await?
                .map_or_else(|| "missing".to_owned(), |s| format!("{} bytes", s.len));
            let deleted = if f.is_deleted() { "\tdeleted" } else { "" };
            say(format_args!(
                "{}\t{}\t{size}\t{}{deleted}",
                f.id, f.content_hash, f.created_at
            ))?;
        }
        Ok(())
    }

    async fn cat(&self, id: &str, output: Option<PathBuf>) -> Result<()> {
        let id = FileId::parse(id)?;
        let Some(record) = self.store.file(&id).await? else {
            bail!("no file with id {id}");
        };
        if record.is_deleted() {
            bail!("file {id} was deleted");
        }
        let (mut body, _) = self.cas.read(&record.content_hash).await?;
        let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &output {
            Some(p) => Box::new(
                tokio::fs::File::create(p)
                    .await
                    .with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Box::new(tokio::io::stdout()),
        };
        while let Some(chunk) = body.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        Ok(())
    }

    async fn rm(&self, id: &str) -> Result<()> {
        let id = FileId::parse(id)?;
        let Some(record) = self.store.file(&id).await? else {
            bail!("no file with id {id}");
        };
        if record.is_deleted() {
            return say(format_args!("{id} was already deleted"));
        }
        self.store
            .commit(vec![
                Event::FileDeleted(FileDeleted {
                    id: id.clone(),
                    deleted_at: Timestamp::now(),
                }),
                Event::LocalFileStateRemove(LocalFileStateRemove {
                    file_id: id.clone(),
                }),
            ])
            .await?;
        let refs = References::from_records(&self.store.files().await?);
        let removed = self.cas.release(&record.content_hash, &refs).await?;
        let how = if removed {
            "content removed"
        } else {
            "content kept: another file uses it"
        };
        say(format_args!("deleted {id} ({how})"))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let app = App::open(&cli).await?;
    match cli.command {
        Command::Save { path, mime } => app.save(path, mime).await,
        Command::Ls { all } => app.ls(all).await,
        Command::Cat { id, output } => app.cat(&id, output).await,
        Command::Rm { id } => app.rm(&id).await,
    }
}
