//! Preprocessors (PRE): transform a file before it is hashed and stored, chosen by MIME type.

use std::sync::Arc;

use async_trait::async_trait;

use crate::Result;
use crate::fs::ByteStream;
use crate::rt::{MaybeSend, MaybeSync};
use crate::schema::FileMetadata;

/// A file handed to `save_file` / `update_file`: a byte stream, its MIME type and its name.
///
/// Build one from a path (`from_path`, native), a browser `File` or `Blob` (`from_file`,
/// `from_blob`, wasm32), bytes ([`from_bytes`](Self::from_bytes)) or any stream
/// ([`new`](Self::new)).
pub struct FileInput {
    /// The bytes; streamed once into the content store.
    pub body: ByteStream,
    /// The MIME type (`file.type`); may be empty.
    pub mime_type: String,
    /// The file's name (`photo.jpg`). Kept with the file in its `metadataJson` as `name`
    /// (content itself is named by its hash); an empty name is not recorded.
    pub name: String,
}

impl FileInput {
    /// A file from a byte stream.
    pub fn new(name: impl Into<String>, mime_type: impl Into<String>, body: ByteStream) -> Self {
        Self {
            body,
            mime_type: mime_type.into(),
            name: name.into(),
        }
    }

    /// The file at `path`, streamed from disk when saved: its name is the path's last
    /// component, its MIME type guessed from the extension (`application/octet-stream` when
    /// unknown). A missing path or a directory is an error now, not when saving.
    #[cfg(not(target_arch = "wasm32"))]
    pub async fn from_path(path: impl AsRef<std::path::Path>) -> Result<Self> {
        use futures::StreamExt;
        let path = path.as_ref();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| crate::Error::io("open", path.display(), e))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| crate::Error::io("stat", path.display(), e))?;
        if meta.is_dir() {
            return Err(crate::Error::invalid("path", "is a directory, not a file"));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(|chunk| {
            chunk.map_err(|e| crate::Error::Stream {
                source: Box::new(e),
            })
        });
        Ok(Self::new(
            name,
            mime.essence_str(),
            crate::rt::boxed_stream(body),
        ))
    }

    /// A browser `File` (from a picker or a drop): its name and type as the browser reports
    /// them, its bytes read in 1 MiB slices as they are saved (never the whole file at once).
    #[cfg(target_arch = "wasm32")]
    pub fn from_file(file: &web_sys::File) -> Self {
        Self::new(file.name(), file.type_(), blob_stream(file.clone().into()))
    }

    /// A browser `Blob` under `name` (its type as the blob reports it), read in 1 MiB slices.
    #[cfg(target_arch = "wasm32")]
    pub fn from_blob(blob: &web_sys::Blob, name: impl Into<String>) -> Self {
        Self::new(name, blob.type_(), blob_stream(blob.clone()))
    }

    /// A file from bytes in memory.
    pub fn from_bytes(
        name: impl Into<String>,
        mime_type: impl Into<String>,
        data: impl Into<bytes::Bytes>,
    ) -> Self {
        Self::new(name, mime_type, crate::fs::bytes_stream(data))
    }
}

/// A blob's bytes in 1 MiB slices, each read when the stream is polled.
#[cfg(target_arch = "wasm32")]
fn blob_stream(blob: web_sys::Blob) -> ByteStream {
    const SLICE: f64 = 1024.0 * 1024.0;
    let size = blob.size();
    Box::pin(futures::stream::unfold(0.0, move |pos| {
        let blob = blob.clone();
        async move {
            if pos >= size {
                return None;
            }
            let end = (pos + SLICE).min(size);
            let chunk = async {
                let slice = blob
                    .slice_with_f64_and_f64(pos, end)
                    .map_err(|e| format!("{e:?}"))?;
                let buf = wasm_bindgen_futures::JsFuture::from(slice.array_buffer())
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                Ok::<_, String>(bytes::Bytes::from(js_sys::Uint8Array::new(&buf).to_vec()))
            }
            .await
            .map_err(|e| crate::Error::Stream {
                source: std::io::Error::other(e).into(),
            });
            Some((chunk, end))
        }
    }))
}

impl std::fmt::Debug for FileInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileInput")
            .field("name", &self.name)
            .field("mime_type", &self.mime_type)
            .finish_non_exhaustive()
    }
}

/// What a preprocessor returns (PRE-3): the processed file and, optionally, metadata.
#[derive(Debug)]
pub struct Processed {
    /// The file to hash, store and upload.
    pub file: FileInput,
    /// Metadata to record in `metadataJson`.
    pub metadata: Option<FileMetadata>,
}

/// Transforms files of matching MIME types before they are stored (PRE-3..5).
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait Preprocessor: MaybeSend + MaybeSync + 'static {
    /// Process one file. An error fails the save with [`crate::Error::Preprocessor`]; nothing is written.
    async fn process(&self, file: FileInput) -> Result<Processed>;
}

/// `matchMimeType` (PRE-2): `*` and `*/*` match anything; `type/*` compares the part before
/// `/`; otherwise an exact, case-insensitive match ignoring surrounding whitespace.
pub fn match_mime_type(pattern: &str, mime: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    let mime = mime.trim().to_ascii_lowercase();
    if pattern == "*" || pattern == "*/*" {
        return true;
    }
    if let Some(major) = pattern.strip_suffix("/*") {
        return mime.split('/').next() == Some(major);
    }
    pattern == mime
}

/// Preprocessors keyed by MIME pattern, chosen with the original's precedence (PRE-1): exact
/// type, then `type/*`, then `*`, then `*/*`.
#[derive(Clone, Default)]
pub struct Preprocessors {
    entries: Vec<(String, Arc<dyn Preprocessor>)>,
}

impl std::fmt::Debug for Preprocessors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(p, _)| p))
            .finish()
    }
}

impl Preprocessors {
    /// Add a preprocessor for a pattern (`image/png`, `image/*`, `*`, `*/*`).
    pub fn insert(&mut self, pattern: impl Into<String>, p: Arc<dyn Preprocessor>) {
        let pattern = pattern.into().trim().to_ascii_lowercase();
        self.entries.retain(|(k, _)| *k != pattern);
        self.entries.push((pattern, p));
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The preprocessor for `mime` (PRE-1), with the pattern that matched.
    pub fn select(&self, mime: &str) -> Option<(&str, &Arc<dyn Preprocessor>)> {
        let mime = mime.trim().to_ascii_lowercase();
        let major = mime.split('/').next().unwrap_or_default();
        let wanted = [mime.clone(), format!("{major}/*"), "*".into(), "*/*".into()];
        wanted.iter().find_map(|w| {
            self.entries
                .iter()
                .find(|(k, _)| k == w)
                .map(|(k, p)| (k.as_str(), p))
        })
    }

    /// Run the matching preprocessor, or pass the file through with no metadata (PRE-1, PRE-4).
    pub async fn apply(&self, file: FileInput) -> Result<Processed> {
        let Some((_, p)) = self.select(&file.mime_type) else {
            return Ok(Processed {
                file,
                metadata: None,
            });
        };
        let name = if file.name.is_empty() {
            file.mime_type.clone()
        } else {
            file.name.clone()
        };
        p.process(file)
            .await
            .map_err(|e| crate::Error::Preprocessor {
                name,
                source: e.into(),
            })
    }
}

/// PRE-6: the `metadataJson` to record: `None` without metadata; otherwise the metadata with
/// `mimeType` filled in (if missing and known) and `sizeBytes` (if missing).
pub fn serialize_metadata(metadata: Option<FileMetadata>, mime: &str, size: u64) -> Option<String> {
    named_metadata(metadata, "", mime, size)
}

/// [`serialize_metadata`], keeping the file's `name` too: with a non-empty name the metadata is
/// recorded even when no preprocessor gave any (`{"name":…,"mimeType":…,"sizeBytes":…}`), so
/// the name travels with the file's events. A name the metadata already has is kept.
pub fn named_metadata(
    metadata: Option<FileMetadata>,
    name: &str,
    mime: &str,
    size: u64,
) -> Option<String> {
    let name = name.trim();
    let mut m = match metadata {
        Some(m) => m,
        None if !name.is_empty() => FileMetadata::default(),
        None => return None,
    };
    if m.name.is_none() && !name.is_empty() {
        m.name = Some(name.to_owned());
    }
    if m.mime_type.is_none() && !mime.trim().is_empty() {
        m.mime_type = Some(mime.trim().to_owned());
    }
    if m.size_bytes.is_none() {
        m.size_bytes = Some(size);
    }
    Some(m.to_json())
}
