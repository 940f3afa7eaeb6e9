//! `filesync`: a command-line client for filesync.
//!
//! Works in local-only mode on the embedded default: `NativeFs` + `SqliteStore` under
//! `--data-dir`, through the `FileSync` API (save, list, read back, delete). Syncing with a
//! server arrives with the signer client and the relay; `--events` prints the engine's event
//! stream as JSON lines on stderr.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use filesync_core::FileSync;
use filesync_core::fs::{ByteStream, FileSystem, NativeFs};
use filesync_core::preprocess::FileInput;
use filesync_core::store::{SqliteStore, Store};
use filesync_core::types::{FileId, StoreId};
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
    /// Print the engine's events (EVT-1..10) as JSON lines on stderr.
    #[arg(long)]
    events: bool,
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
                source: format!("reading {shown}: {e}").into(),
            })
        }),
    );
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(FileInput::new(name, mime, body))
}

async fn run(cli: Cli, sync: &FileSync, store: &Arc<dyn Store>, fs: &NativeFs) -> Result<()> {
    match cli.command {
        Command::Save { path, mime } => {
            let saved = sync.save_file(input(&path, mime).await?).await?;
            let size = fs.stat(&saved.path).await?.map_or(0, |s| s.len);
            say(format_args!(
                "{}\t{}\t{size} bytes",
                saved.file_id, saved.content_hash
            ))
        }
        Command::Update { id, path, mime } => {
            let id = FileId::parse(id)?;
            let saved = sync.update_file(&id, input(&path, mime).await?).await?;
            say(format_args!("{}\t{}", saved.file_id, saved.content_hash))
        }
        Command::Ls { all } => {
            let mut files = store.files().await?;
            files.sort_by_key(|f| (f.created_at, f.id.clone()));
            for f in files.into_iter().filter(|f| all || !f.is_deleted()) {
                let state = sync
                    .file_display_state(&f.id)
                    .await?
                    .map_or("unknown", |d| {
                        if d.has_local_copy {
                            "local"
                        } else {
                            "not here"
                        }
                    });
                let deleted = if f.is_deleted() { "\tdeleted" } else { "" };
                say(format_args!(
                    "{}\t{}\t{state}\t{}{deleted}",
                    f.id, f.content_hash, f.created_at
                ))?;
            }
            Ok(())
        }
        Command::Cat { id, output } => {
            let id = FileId::parse(id)?;
            match store.file(&id).await? {
                None => bail!("no file with id {id}"),
                Some(r) if r.is_deleted() => bail!("file {id} was deleted"),
                Some(_) => {}
            }
            let mut content = sync.read_file(&id).await?;
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
        Command::Rm { id } => {
            let id = FileId::parse(id)?;
            let Some(record) = store.file(&id).await? else {
                bail!("no file with id {id}");
            };
            sync.delete_file(&id).await?;
            let kept = fs.stat(&record.path).await?.is_some();
            let how = if kept {
                "content kept: another file uses it"
            } else {
                "content removed"
            };
            say(format_args!("deleted {id} ({how})"))
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tokio::fs::create_dir_all(&cli.data_dir)
        .await
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    let store_id = StoreId::sanitize(&cli.store_id)?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(cli.data_dir.join("filesync.sqlite")).await?);
    let fs = NativeFs::new(&cli.data_dir);
    let builder = FileSync::builder(store_id, Arc::new(fs.clone()), Arc::clone(&store));
    let printer = cli.events.then(|| {
        let mut events = Box::pin(builder.events());
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                eprintln!("event: {}", e.to_json());
            }
        })
    });
    let sync = builder.start().await?;
    let result = run(cli, &sync, &store, &fs).await;
    sync.await_idle().await;
    sync.shutdown().await;
    if let Some(p) = printer {
        // Let the printer drain what was emitted before shutdown.
        tokio::task::yield_now().await;
        p.abort();
    }
    result
}
