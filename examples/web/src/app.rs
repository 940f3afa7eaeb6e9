//! The page's logic: start a `FileSync` on OPFS + IndexedDB, wire the picker and drag-and-drop,
//! and keep the gallery, the file list and the status line up to date.
// wasm32 is single-threaded; the core API takes `Arc`s (shared with native code).
#![allow(clippy::arc_with_non_send_sync)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use filesync_core::FileSync;
use filesync_core::api::{DisplayState, FileUrl};
use filesync_core::events::SyncEvent;
use filesync_core::preprocess::FileInput;
use filesync_core::remote::SignerClient;
use filesync_core::schema::TransferStatus;
use filesync_core::status::{ActiveTransfers, percent};
use filesync_core::sync::{HttpRelay, WebLock};
use filesync_core::types::{ContentHash, FileId, StoreId};
use filesync_opfs::{IdbStore, OpfsFs};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Document, Element, HtmlElement, HtmlImageElement, HtmlInputElement};

/// How often the page refreshes from the store.
/// How often the status line (leader or follower, online or not) is refreshed.
const STATUS_TICK: Duration = Duration::from_millis(300);

type AppResult<T> = Result<T, String>;

fn js(e: JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// The page's entry point (`init()` in index.html runs it).
#[wasm_bindgen(start)]
pub fn start() {
    wasm_bindgen_futures::spawn_local(async {
        if let Err(e) = run().await
            && let Some(doc) = web_sys::window().and_then(|w| w.document())
        {
            set_text(&doc, "status", &format!("error: {e}"));
        }
    });
}

struct App {
    sync: FileSync,
    doc: Document,
    /// The image URL each card shows, so a card is only touched when something changed.
    shown: RefCell<HashMap<FileId, String>>,
    /// MIME types of local content (from its sidecar, as `read_file` reports it).
    mimes: RefCell<HashMap<ContentHash, String>>,
    /// Transfers in flight, fed by the engine's progress events (API-23).
    transfers: RefCell<ActiveTransfers>,
}

async fn run() -> AppResult<()> {
    let window = web_sys::window().ok_or("no window")?;
    let doc = window.document().ok_or("no document")?;
    let location = window.location();
    let params =
        web_sys::UrlSearchParams::new_with_str(&location.search().map_err(js)?).map_err(js)?;
    let store = StoreId::sanitize(&params.get("store").unwrap_or_else(|| "demo".into()))
        .map_err(|e| e.to_string())?;
    let token = params.get("token").filter(|t| !t.is_empty());
    let api = format!("{}/api", location.origin().map_err(js)?);

    set_text(&doc, "status", "opening local storage…");
    let fs = OpfsFs::open(&format!("filesync-{store}"))
        .await
        .map_err(|e| e.report())?;
    let db = IdbStore::open(&format!("filesync-{store}"))
        .await
        .map_err(|e| e.report())?;
    let mut remote = SignerClient::builder(&api);
    if let Some(t) = &token {
        remote = remote.with_auth_token(t);
    }
    let remote = remote.build().map_err(|e| e.report())?;
    let relay = HttpRelay::new(&api, token.clone()).map_err(|e| e.report())?;
    let sync = FileSync::builder(store.clone(), Arc::new(fs), Arc::new(db))
        .with_remote(Arc::new(remote))
        .with_relay(Arc::new(relay))
        .with_leadership(Arc::new(WebLock::new(format!("filesync:{store}"))))
        .start()
        .await
        .map_err(|e| e.report())?;
    let app = Rc::new(App {
        sync,
        doc,
        shown: RefCell::new(HashMap::new()),
        mimes: RefCell::new(HashMap::new()),
        transfers: RefCell::new(ActiveTransfers::default()),
    });
    // The gallery re-renders when something happened: a file changed (`changes()`: this tab,
    // other tabs, other devices) or the engine reported progress. Only the status line (which
    // tab leads, online or not) is refreshed on a timer, from memory.
    let (wake, mut woken) = futures::channel::mpsc::unbounded::<()>();
    follow_progress(&app, wake.clone());
    follow_changes(&app, wake).await?;
    wire_picker(&app)?;
    wire_drop(&app)?;
    let mut files_due = true;
    loop {
        if files_due && let Err(e) = app.render_files().await {
            set_text(&app.doc, "status", &format!("error: {e}"));
        }
        if let Err(e) = app.render_status().await {
            set_text(&app.doc, "status", &format!("error: {e}"));
        }
        use futures::StreamExt;
        let tick = std::pin::pin!(filesync_core::rt::sleep(STATUS_TICK));
        files_due = matches!(
            futures::future::select(woken.next(), tick).await,
            futures::future::Either::Left(_)
        );
        // Coalesce a burst of changes into one render.
        while woken.try_recv().is_ok() {}
    }
}

/// Wake the render loop on every file change.
async fn follow_changes(
    app: &Rc<App>,
    wake: futures::channel::mpsc::UnboundedSender<()>,
) -> AppResult<()> {
    use futures::StreamExt;
    let mut changes = app.sync.changes().await.map_err(|e| e.report())?;
    wasm_bindgen_futures::spawn_local(async move {
        while changes.next().await.is_some() {
            let _ = wake.unbounded_send(());
        }
    });
    Ok(())
}

/// Keep `app.transfers` up to date from the engine's events, and wake the render loop.
fn follow_progress(app: &Rc<App>, wake: futures::channel::mpsc::UnboundedSender<()>) {
    use futures::StreamExt;
    let app = Rc::clone(app);
    let mut events = Box::pin(app.sync.events());
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(event) = events.next().await {
            let _ = wake.unbounded_send(());
            let mut t = app.transfers.borrow_mut();
            match event {
                SyncEvent::UploadProgress { progress, .. }
                | SyncEvent::DownloadProgress { progress, .. } => t.update(progress),
                SyncEvent::UploadComplete { file_id, .. }
                | SyncEvent::UploadError { file_id, .. }
                | SyncEvent::DownloadComplete { file_id, .. }
                | SyncEvent::DownloadError { file_id, .. } => t.remove(&file_id),
                _ => {}
            }
        }
    });
}

fn set_text(doc: &Document, id: &str, text: &str) {
    if let Some(e) = doc.get_element_by_id(id) {
        e.set_text_content(Some(text));
    }
}

fn element(doc: &Document, tag: &str, class: &str) -> AppResult<Element> {
    let e = doc.create_element(tag).map_err(js)?;
    e.set_class_name(class);
    Ok(e)
}

fn save_files(app: &Rc<App>, files: web_sys::FileList) {
    for i in 0..files.length() {
        let Some(file) = files.get(i) else { continue };
        let app = Rc::clone(app);
        wasm_bindgen_futures::spawn_local(async move {
            let input = FileInput::from_file(&file);
            if let Err(e) = app.sync.save_file(input).await {
                set_text(&app.doc, "status", &format!("saving failed: {e}"));
            }
        });
    }
}

fn wire_picker(app: &Rc<App>) -> AppResult<()> {
    let input: HtmlInputElement = app
        .doc
        .get_element_by_id("picker")
        .ok_or("no #picker")?
        .dyn_into()
        .map_err(|_| "#picker is not an input")?;
    let target = input.clone();
    let app = Rc::clone(app);
    let on_change = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if let Some(files) = target.files() {
            save_files(&app, files);
        }
        target.set_value("");
    });
    input
        .add_event_listener_with_callback("change", on_change.as_ref().unchecked_ref())
        .map_err(js)?;
    on_change.forget(); // lives as long as the page
    Ok(())
}

fn wire_drop(app: &Rc<App>) -> AppResult<()> {
    let zone: HtmlElement = app
        .doc
        .get_element_by_id("drop")
        .ok_or("no #drop")?
        .dyn_into()
        .map_err(|_| "#drop is not an element")?;
    let over_zone = zone.clone();
    let on_over = Closure::<dyn FnMut(web_sys::DragEvent)>::new(move |e: web_sys::DragEvent| {
        e.prevent_default();
        let _ = over_zone.class_list().add_1("over");
    });
    let leave_zone = zone.clone();
    let on_leave = Closure::<dyn FnMut(web_sys::DragEvent)>::new(move |_| {
        let _ = leave_zone.class_list().remove_1("over");
    });
    let drop_zone = zone.clone();
    let app = Rc::clone(app);
    let on_drop = Closure::<dyn FnMut(web_sys::DragEvent)>::new(move |e: web_sys::DragEvent| {
        e.prevent_default();
        let _ = drop_zone.class_list().remove_1("over");
        if let Some(files) = e.data_transfer().and_then(|d| d.files()) {
            save_files(&app, files);
        }
    });
    for (event, f) in [
        ("dragover", on_over.as_ref()),
        ("dragleave", on_leave.as_ref()),
        ("drop", on_drop.as_ref()),
    ] {
        zone.add_event_listener_with_callback(event, f.unchecked_ref())
            .map_err(js)?;
    }
    on_over.forget();
    on_leave.forget();
    on_drop.forget();
    Ok(())
}

/// What a card says about a file's state.
fn state_text(d: &DisplayState) -> (String, bool) {
    let Some(s) = &d.local_state else {
        return ("waiting".into(), false);
    };
    let label = |t: TransferStatus| match t {
        TransferStatus::Pending => "pending",
        TransferStatus::Queued => "queued",
        TransferStatus::InProgress => "in progress",
        TransferStatus::Done => "done",
        TransferStatus::Error => "error",
    };
    if s.upload_status == TransferStatus::Error || s.download_status == TransferStatus::Error {
        return (format!("error: {}", s.last_sync_error), true);
    }
    let text = if d.is_uploaded && d.has_local_copy {
        "synced".to_owned()
    } else if d.has_local_copy {
        format!("uploading ({})", label(s.upload_status))
    } else {
        format!("downloading ({})", label(s.download_status))
    };
    (text, false)
}

impl App {
    async fn render_status(self: &Rc<Self>) -> AppResult<()> {
        let sync = &self.sync;
        let status = sync.sync_status().await.map_err(|e| e.report())?;
        let leader = sync.is_leader();
        let busy = status.uploading_file_ids.len()
            + status.downloading_file_ids.len()
            + status.queued_upload_file_ids.len()
            + status.queued_download_file_ids.len();
        let line = format!(
            "{} · {} · {}",
            if leader {
                "leader: this tab syncs"
            } else {
                "follower: another tab syncs"
            },
            if sync.is_online() {
                "online"
            } else {
                "offline"
            },
            match (busy, self.transfers.borrow().total().percent) {
                (0, _) => "idle".to_owned(),
                (n, Some(p)) => format!("{n} transfers, {p}%"),
                (n, None) => format!("{n} transfers"),
            }
        );
        if let Some(s) = self.doc.get_element_by_id("status") {
            s.set_text_content(Some(&line));
            s.set_class_name(if leader { "status leader" } else { "status" });
            let _ = s.set_attribute("data-leader", if leader { "true" } else { "false" });
        }
        Ok(())
    }

    async fn render_files(self: &Rc<Self>) -> AppResult<()> {
        let live = self.sync.list_files().await.map_err(|e| e.report())?;
        // Remove cards of files that are gone.
        let ids: Vec<FileId> = self.shown.borrow().keys().cloned().collect();
        for id in ids {
            if !live.iter().any(|f| f.id == id) {
                if let Some(card) = self.doc.get_element_by_id(&card_id(&id)) {
                    card.remove();
                }
                self.shown.borrow_mut().remove(&id);
            }
        }
        for entry in &live {
            self.render_card(&entry.display, entry.name.as_deref())
                .await?;
        }
        set_text(&self.doc, "count", &format!("{} files", live.len()));
        Ok(())
    }

    async fn render_card(self: &Rc<Self>, d: &DisplayState, name: Option<&str>) -> AppResult<()> {
        let meta = d.file.metadata();
        let Some(mime) = self.mime_of(d).await else {
            return Ok(()); // not here yet: the card appears once the content is
        };
        let is_image = mime.starts_with("image/");
        let id = &d.file.id;
        let card = match self.doc.get_element_by_id(&card_id(id)) {
            Some(c) => c,
            None => self.new_card(id, is_image)?,
        };
        let hash = d.file.content_hash.to_string();
        let _ = card.set_attribute("data-hash", &hash);
        let _ = card.set_attribute("data-mime", &mime);
        let (state, error) = state_text(d);
        let _ = card.set_attribute("data-state", &state);
        let shown = match self.transfers.borrow().get(id).and_then(percent) {
            Some(p) => format!("{state} {p}%"),
            None => state,
        };
        if let Some(e) = card.query_selector(".state").map_err(js)? {
            e.set_text_content(Some(&shown));
            e.set_class_name(if error { "state error" } else { "state" });
        }
        if let Some(e) = card.query_selector(".name").map_err(js)? {
            let label = name.map_or_else(|| mime.clone(), |n| format!("{n} · {mime}"));
            match meta.as_ref().and_then(|m| m.size_bytes) {
                Some(size) => e.set_text_content(Some(&format!("{label} · {size} bytes"))),
                None => e.set_text_content(Some(&label)),
            }
        }
        if let Some(e) = card.query_selector(".hash").map_err(js)? {
            e.set_text_content(Some(&format!("sha256 {}…", &hash[..12])));
        }
        if is_image && d.can_display {
            let url = match self
                .sync
                .resolve_file_url(id)
                .await
                .map_err(|e| e.report())?
            {
                Some(FileUrl::Local(u) | FileUrl::Remote(u)) => u,
                None => return Ok(()),
            };
            let changed = self.shown.borrow().get(id) != Some(&url);
            if changed
                && let Some(img) = card.query_selector("img").map_err(js)?
                && let Ok(img) = img.dyn_into::<HtmlImageElement>()
            {
                img.set_src(&url);
                self.shown.borrow_mut().insert(id.clone(), url);
            }
        }
        Ok(())
    }

    /// The content's MIME type: from the record's metadata, else from the local copy's
    /// sidecar (cached per content); `None` while there is neither.
    async fn mime_of(&self, d: &DisplayState) -> Option<String> {
        if let Some(m) = d.file.metadata().and_then(|m| m.mime_type) {
            return Some(m);
        }
        let hash = d.file.content_hash;
        if let Some(m) = self.mimes.borrow().get(&hash) {
            return Some(m.clone());
        }
        if !d.has_local_copy {
            return None;
        }
        let content = self.sync.read_file(&d.file.id).await.ok()?;
        let mime = if content.mime_type.is_empty() {
            "application/octet-stream".to_owned()
        } else {
            content.mime_type
        };
        self.mimes.borrow_mut().insert(hash, mime.clone());
        Some(mime)
    }

    fn new_card(self: &Rc<Self>, id: &FileId, is_image: bool) -> AppResult<Element> {
        let doc = &self.doc;
        let (parent, tag) = if is_image {
            ("gallery", "div")
        } else {
            ("others", "li")
        };
        let card = element(doc, tag, "card")?;
        card.set_id(&card_id(id));
        let _ = card.set_attribute("data-id", id.as_str());
        if is_image {
            let img = element(doc, "img", "")?;
            let _ = img.set_attribute("alt", id.as_str());
            card.append_child(&img).map_err(js)?;
        }
        let meta = element(doc, "div", "meta")?;
        for class in ["name", "state", "hash"] {
            let span = element(doc, "span", class)?;
            meta.append_child(&span).map_err(js)?;
        }
        card.append_child(&meta).map_err(js)?;
        let button = element(doc, "button", "delete")?;
        button.set_text_content(Some("Delete"));
        let app = Rc::clone(self);
        let file = id.clone();
        let on_click = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let app = Rc::clone(&app);
            let file = file.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = app.sync.delete_file(&file).await {
                    set_text(&app.doc, "status", &format!("delete failed: {e}"));
                }
            });
        });
        button
            .add_event_listener_with_callback("click", on_click.as_ref().unchecked_ref())
            .map_err(js)?;
        on_click.forget(); // the card's lifetime: a deleted card's closure is never called again
        card.append_child(&button).map_err(js)?;
        doc.get_element_by_id(parent)
            .ok_or_else(|| format!("no #{parent}"))?
            .append_child(&card)
            .map_err(js)?;
        self.shown.borrow_mut().insert(id.clone(), String::new());
        Ok(card)
    }
}

fn card_id(id: &FileId) -> String {
    format!("f-{id}")
}
