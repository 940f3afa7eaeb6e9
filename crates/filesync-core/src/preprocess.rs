//! Preprocessors (PRE): transform a file before it is hashed and stored, chosen by MIME type.

use std::sync::Arc;

use async_trait::async_trait;

use crate::Result;
use crate::fs::ByteStream;
use crate::rt::{MaybeSend, MaybeSync};
use crate::schema::FileMetadata;

/// A file handed to `save_file` / `update_file`: a byte stream and its MIME type.
pub struct FileInput {
    /// The bytes; streamed once into the content store.
    pub body: ByteStream,
    /// The MIME type (`file.type`); may be empty.
    pub mime_type: String,
    /// A name for messages (not stored: content is named by its hash).
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

    /// A file from bytes in memory.
    pub fn from_bytes(
        name: impl Into<String>,
        mime_type: impl Into<String>,
        data: impl Into<bytes::Bytes>,
    ) -> Self {
        Self::new(name, mime_type, crate::fs::bytes_stream(data))
    }
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
    let mut m = metadata?;
    if m.mime_type.is_none() && !mime.trim().is_empty() {
        m.mime_type = Some(mime.trim().to_owned());
    }
    if m.size_bytes.is_none() {
        m.size_bytes = Some(size);
    }
    Some(m.to_json())
}
