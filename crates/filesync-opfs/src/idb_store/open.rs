//! Opening, naming and deleting databases.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use filesync_core::rt::Instant;
use filesync_core::types::FileId;
use filesync_core::{Error, Result};
use tokio::sync::{Mutex, watch};
use wasm_bindgen::prelude::Closure;
use web_sys::{BroadcastChannel, IdbFactory, MessageEvent};

use super::data::load;
use super::schema::{ALL_STORES, create_schema, not_a_store};
use super::{DEFAULT_DATABASE, IDB_SCHEMA_VERSION, IdbStore, Inner};
use crate::idb;

/// The `BroadcastChannel` name of the database `name`.
fn channel_name(name: &str) -> String {
    format!("filesync-idb:{name}")
}

fn get_factory() -> Result<IdbFactory> {
    match idb::factory() {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(Error::Unsupported {
            what: "IndexedDB (globalThis.indexedDB)",
        }),
        Err(e) => Err(idb::store_error("open", &e)),
    }
}

impl IdbStore {
    /// Open (creating it if needed) the IndexedDB database `name` of this origin and load it.
    ///
    /// Fails with [`Error::Unsupported`] where there is no IndexedDB, with
    /// [`Error::NotAStore`] (leaving it untouched) if the database exists but is not a
    /// filesync store (other object stores, a newer schema version, unreadable rows), and with
    /// [`Error::Store`] when the browser refuses (e.g. some private modes).
    pub async fn open(name: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::InvalidInput {
                what: "IndexedDB database name",
                reason: "must not be empty".into(),
                source: None,
            });
        }
        let factory = get_factory()?;
        let db = idb::open(&factory, name, IDB_SCHEMA_VERSION, Box::new(create_schema))
            .await
            .map_err(|e| match crate::js::error_name(&e).as_str() {
                "VersionError" => not_a_store(
                    name,
                    format!(
                        "its schema version is newer than this build understands \
                         ({IDB_SCHEMA_VERSION})"
                    ),
                ),
                _ => idb::store_error("open", &e),
            })?;
        let names = db.object_store_names();
        if let Some(missing) = ALL_STORES.iter().find(|s| !names.contains(s)) {
            db.close();
            return Err(not_a_store(
                name,
                format!("it has no {missing:?} object store"),
            ));
        }
        let data = match load(&db, name).await {
            Ok(data) => data,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        let closed = Rc::new(Cell::new(false));
        let on_versionchange = Closure::<dyn FnMut(web_sys::Event)>::new({
            let db = db.clone();
            let closed = Rc::clone(&closed);
            let name = name.to_owned();
            move |_: web_sys::Event| {
                tracing::info!(
                    database = %name,
                    "IndexedDB database deleted or upgraded elsewhere: closing this store"
                );
                closed.set(true);
                db.close();
            }
        });
        db.set_onversionchange(Some(wasm_bindgen::JsCast::unchecked_ref(
            on_versionchange.as_ref(),
        )));
        let head = data.head();
        let channel = match BroadcastChannel::new(&channel_name(name)) {
            Ok(channel) => Some(channel),
            Err(e) => {
                tracing::warn!(
                    database = %name,
                    error = ?e,
                    "no BroadcastChannel: other connections' writes are noticed by polling"
                );
                None
            }
        };
        let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
            let on_message = channel.as_ref().map(|channel| {
                let weak = weak.clone();
                let callback =
                    Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                        if let Some(inner) = weak.upgrade() {
                            inner.notified(event.data().as_f64());
                        }
                    });
                channel.set_onmessage(Some(wasm_bindgen::JsCast::unchecked_ref(callback.as_ref())));
                callback
            });
            Inner {
                name: name.to_owned(),
                db,
                data: RefCell::new(data),
                head: watch::channel(head).0,
                write_lock: Arc::new(Mutex::new(())),
                closed,
                channel,
                refresh_queued: Cell::new(false),
                checked_at: Cell::new(Some(Instant::now())),
                _on_versionchange: on_versionchange,
                _on_message: on_message,
            }
        });
        Ok(Self { inner })
    }

    /// [`IdbStore::open`] on [`DEFAULT_DATABASE`] (`"filesync"`).
    pub async fn open_default() -> Result<Self> {
        Self::open(DEFAULT_DATABASE).await
    }

    /// A store in a new, uniquely named database `filesync-scratch-<uuid>`, for tests. It is
    /// not removed automatically: call [`IdbStore::destroy`].
    pub async fn scratch() -> Result<Self> {
        Self::open(&format!("filesync-scratch-{}", FileId::random())).await
    }

    /// The database name, as given to [`IdbStore::open`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Close this store's connection and delete its database. Other clones of this store
    /// (and other stores on the same database) are closed too: their writes fail from then on.
    pub async fn destroy(self) -> Result<()> {
        self.inner.closed.set(true);
        self.inner.db.close();
        let name = self.inner.name.clone();
        drop(self);
        Self::delete(&name).await
    }

    /// Delete the database `name` (fine if there is none). Open stores on it close their
    /// connections when asked, so this does not wait for them to be dropped.
    pub async fn delete(name: &str) -> Result<()> {
        let factory = get_factory()?;
        idb::delete(&factory, name)
            .await
            .map_err(|e| idb::store_error("delete", &e))
    }
}
