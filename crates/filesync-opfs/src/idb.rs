//! Small IndexedDB helpers over web-sys: find the factory through `globalThis`, open (with a
//! synchronous upgrade callback) and delete databases, run one read-write transaction of
//! prepared operations guarded by a compare (see [`write_if`]) and wait for its `complete`
//! event, read one row, and map thrown `DOMException`s to filesync errors.
//!
//! Only whole transactions are awaited (never single requests): a transaction's requests all
//! finish before its `complete` event, so their results can be read afterwards, and nothing
//! yields to the event loop while the transaction is being filled (it would auto-commit); the
//! writes that depend on a read are issued synchronously from that read's `success` handler.

use std::cell::RefCell;
use std::rc::Rc;

use filesync_core::Error;
use futures::StreamExt;
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    DomException, Event, EventTarget, IdbDatabase, IdbFactory, IdbOpenDbRequest, IdbRequest,
    IdbTransaction, IdbVersionChangeEvent,
};

use crate::js;

/// `globalThis.indexedDB` (a window or a worker), `None` where there is none. Reading it may
/// throw (`SecurityError` in opaque origins): that is an error.
pub(crate) fn factory() -> Result<Option<IdbFactory>, JsValue> {
    let value = Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))?;
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    Ok(Some(value.unchecked_into()))
}

/// A listener attached with `addEventListener`.
type Listener = Closure<dyn FnMut(Event)>;

/// Event listeners removed again when dropped, so a cancelled wait leaves no dangling closure.
struct Listeners {
    target: EventTarget,
    list: Vec<(&'static str, Listener)>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for (name, callback) in &self.list {
            let _ = self
                .target
                .remove_event_listener_with_callback(name, callback.as_ref().unchecked_ref());
        }
    }
}

/// Wait for the first of the events `names` on `target` and return its name. The listeners
/// are attached when this is first polled, so poll it before yielding to the event loop.
async fn next_event(target: &EventTarget, names: &[&'static str]) -> Result<&'static str, JsValue> {
    let (tx, mut rx) = futures::channel::mpsc::unbounded::<&'static str>();
    let mut listeners = Listeners {
        target: target.clone(),
        list: Vec::with_capacity(names.len()),
    };
    for &name in names {
        let tx = tx.clone();
        let callback = Listener::new(move |_: Event| {
            let _ = tx.unbounded_send(name);
        });
        target.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref())?;
        listeners.list.push((name, callback));
    }
    drop(tx);
    let got = rx.next().await;
    drop(listeners);
    got.ok_or_else(|| dom_error("AbortError", "the event listeners went away"))
}

/// A `DOMException` made here (for failures that come with no exception of their own).
pub(crate) fn dom_error(name: &str, message: &str) -> JsValue {
    DomException::new_with_message_and_name(message, name)
        .map(JsValue::from)
        .unwrap_or_else(|_| JsValue::from_str(message))
}

/// The error of a finished request, or a generic one.
fn request_error(request: &IdbRequest) -> JsValue {
    match request.error() {
        Ok(Some(e)) => e.into(),
        Ok(None) => dom_error("UnknownError", "the request failed without an error"),
        Err(e) => e,
    }
}

/// What an open request's `upgradeneeded` handler does: create the schema in the version-change
/// transaction. Gets the database, that transaction and the old version (0 for a new database).
pub(crate) type Upgrade = dyn FnMut(&IdbDatabase, &IdbTransaction, f64) -> Result<(), JsValue>;

/// `indexedDB.open(name, version)`. `upgrade` runs synchronously inside `upgradeneeded`; if it
/// fails the version change is aborted (nothing is created) and its error returned. A
/// `blocked` open (an older connection elsewhere does not close) keeps waiting.
pub(crate) async fn open(
    factory: &IdbFactory,
    name: &str,
    version: u32,
    mut upgrade: Box<Upgrade>,
) -> Result<IdbDatabase, JsValue> {
    let request: IdbOpenDbRequest = factory.open_with_u32(name, version)?;
    let failure: Rc<RefCell<Option<JsValue>>> = Rc::default();
    let on_upgrade = {
        let request = request.clone();
        let failure = Rc::clone(&failure);
        Closure::<dyn FnMut(IdbVersionChangeEvent)>::new(move |event: IdbVersionChangeEvent| {
            let mut run = || -> Result<(), JsValue> {
                let db: IdbDatabase = request.result()?.dyn_into()?;
                let txn = request.transaction().ok_or_else(|| {
                    dom_error("InvalidStateError", "no version-change transaction")
                })?;
                upgrade(&db, &txn, event.old_version())
            };
            if let Err(e) = run() {
                *failure.borrow_mut() = Some(e);
                if let Some(txn) = request.transaction() {
                    let _ = txn.abort();
                }
            }
        })
    };
    request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let outcome = next_event(&request, &["success", "error"]).await;
    request.set_onupgradeneeded(None);
    drop(on_upgrade);
    let upgrade_failure = failure.borrow_mut().take();
    match outcome? {
        "success" => Ok(request.result()?.dyn_into()?),
        _ => Err(upgrade_failure.unwrap_or_else(|| request_error(&request))),
    }
}

/// `indexedDB.deleteDatabase(name)`: succeeds when there was none. Waits while other
/// connections stay open (`blocked`); they get a `versionchange` event asking them to close.
pub(crate) async fn delete(factory: &IdbFactory, name: &str) -> Result<(), JsValue> {
    let request = factory.delete_database(name)?;
    let on_blocked = Closure::<dyn FnMut(Event)>::new({
        let name = name.to_owned();
        move |_: Event| {
            tracing::warn!(
                database = %name,
                "deleting an IndexedDB database waits for other connections to close"
            );
        }
    });
    request.set_onblocked(Some(on_blocked.as_ref().unchecked_ref()));
    let outcome = next_event(&request, &["success", "error"]).await;
    request.set_onblocked(None);
    drop(on_blocked);
    match outcome? {
        "success" => Ok(()),
        _ => Err(request_error(&request)),
    }
}

/// A transaction over `stores`. `readwrite` ones ask for `durability: "strict"` (flushed to
/// disk before `complete`, like SQLite's `synchronous=FULL`).
pub(crate) fn transaction(
    db: &IdbDatabase,
    stores: &[&str],
    readwrite: bool,
) -> Result<IdbTransaction, JsValue> {
    let names = stores
        .iter()
        .map(|s| JsValue::from_str(s))
        .collect::<Array>();
    let options = Object::new();
    let mode = if readwrite {
        Reflect::set(&options, &"durability".into(), &"strict".into())?;
        "readwrite"
    } else {
        "readonly"
    };
    // `db.transaction(names, mode, options)`: web-sys binds the `options` overload only behind
    // `web_sys_unstable_apis`; browsers without it ignore the extra argument.
    let method = js::method(db, "transaction")
        .ok_or_else(|| dom_error("NotSupportedError", "IDBDatabase.transaction is missing"))?;
    let args = Array::of3(&names, &JsValue::from_str(mode), &options);
    Ok(Reflect::apply(&method, db, &args)?.unchecked_into())
}

/// Wait until `txn` commits (`complete`) or fails (`abort`, with the transaction's error).
/// Poll it before yielding to the event loop, right after the last request was issued.
pub(crate) async fn finish(txn: &IdbTransaction) -> Result<(), JsValue> {
    match next_event(txn, &["complete", "abort"]).await? {
        "complete" => Ok(()),
        _ => Err(txn
            .error()
            .map(JsValue::from)
            .unwrap_or_else(|| dom_error("AbortError", "the IndexedDB transaction was aborted"))),
    }
}

/// One change of a read-write transaction.
#[derive(Debug)]
pub(crate) enum Op {
    /// Empty an object store.
    Clear(&'static str),
    /// `store.put(value, key)`.
    Put {
        /// The object store.
        store: &'static str,
        /// Its (out-of-line) key.
        key: JsValue,
        /// The stored value: a string.
        value: String,
    },
    /// `store.delete(key)`.
    Delete {
        /// The object store.
        store: &'static str,
        /// Its key.
        key: JsValue,
    },
}

/// Issue `ops` in order on `txn` (synchronously: the transaction must be active).
fn issue(txn: &IdbTransaction, ops: &[Op]) -> Result<(), JsValue> {
    for op in ops {
        match op {
            Op::Clear(store) => {
                txn.object_store(store)?.clear()?;
            }
            Op::Put { store, key, value } => {
                txn.object_store(store)?
                    .put_with_key(&JsValue::from_str(value), key)?;
            }
            Op::Delete { store, key } => {
                txn.object_store(store)?.delete(key)?;
            }
        }
    }
    Ok(())
}

/// An `onsuccess` handler, unset again when dropped (a cancelled wait leaves no handler that
/// would call a dropped closure).
struct OnSuccess {
    request: IdbRequest,
    _callback: Listener,
}

impl Drop for OnSuccess {
    fn drop(&mut self) {
        self.request.set_onsuccess(None);
    }
}

/// A compare-and-write: in one read-write transaction over `stores`, read `key` of the object
/// store `guard`; if `check` accepts its value (`undefined` when there is none), apply `ops`
/// in order and wait for the transaction to commit: `Ok(true)`. Otherwise abort it, changing
/// nothing: `Ok(false)`.
///
/// The check and the writes are one atomic step: the writes are issued synchronously from the
/// read's `success` event, while the transaction is still active, and IndexedDB runs
/// read-write transactions with overlapping scopes one at a time, across every connection
/// (tabs, workers) of the origin. All or nothing: a request that throws aborts the transaction
/// and its error is returned.
pub(crate) async fn write_if(
    db: &IdbDatabase,
    stores: &[&str],
    guard: &str,
    key: &JsValue,
    check: impl FnOnce(&JsValue) -> bool + 'static,
    ops: Vec<Op>,
) -> Result<bool, JsValue> {
    let txn = transaction(db, stores, true)?;
    let request = match txn.object_store(guard).and_then(|s| s.get(key)) {
        Ok(request) => request,
        Err(e) => {
            let _ = txn.abort();
            return Err(e);
        }
    };
    // `Some(Ok(true))`: written, `Some(Ok(false))`: refused by `check`, `Some(Err)`: a
    // request threw. `None` until the read succeeded.
    let outcome: Rc<RefCell<Option<Result<bool, JsValue>>>> = Rc::default();
    let mut pending = Some((check, ops));
    let callback = Listener::new({
        let request = request.clone();
        let txn = txn.clone();
        let outcome = Rc::clone(&outcome);
        move |_: Event| {
            let Some((check, ops)) = pending.take() else {
                return;
            };
            let result = match request.result() {
                Ok(value) if check(&value) => issue(&txn, &ops).map(|()| true),
                Ok(_) => Ok(false),
                Err(e) => Err(e),
            };
            if !matches!(result, Ok(true)) {
                let _ = txn.abort();
            }
            *outcome.borrow_mut() = Some(result);
        }
    });
    request.set_onsuccess(Some(callback.as_ref().unchecked_ref()));
    let on_success = OnSuccess {
        request,
        _callback: callback,
    };
    let finished = finish(&txn).await;
    drop(on_success);
    let outcome = outcome.borrow_mut().take();
    match (finished, outcome) {
        (Ok(()), Some(Ok(true))) => Ok(true),
        (_, Some(Ok(false))) => Ok(false),
        (_, Some(Err(e))) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), _) => Err(dom_error(
            "UnknownError",
            "the IndexedDB transaction finished before its guard was read",
        )),
    }
}

/// `store.get(key)` in its own read-only transaction (`undefined` when there is no such row).
pub(crate) async fn get(db: &IdbDatabase, store: &str, key: &JsValue) -> Result<JsValue, JsValue> {
    let txn = transaction(db, &[store], false)?;
    let request = txn.object_store(store)?.get(key)?;
    finish(&txn).await?;
    request.result()
}

/// Map a thrown value to [`Error::Store`]. Full quota, aborted and timed-out transactions
/// and the browser's own failures may work next time; a closed database or bad data do not.
pub(crate) fn store_error(op: &'static str, err: &JsValue) -> Error {
    let name = js::error_name(err);
    let retryable = matches!(
        name.as_str(),
        "QuotaExceededError"
            | "AbortError"
            | "UnknownError"
            | "TransactionInactiveError"
            | "TimeoutError"
    );
    let message = match name.as_str() {
        "InvalidStateError" => format!(
            "{} (the IndexedDB connection is closed: the database was deleted or upgraded \
             by another connection, or the store was destroyed)",
            js::describe(err)
        ),
        _ => js::describe(err),
    };
    Error::Store {
        op,
        retryable,
        source: Box::new(std::io::Error::other(message)),
    }
}
