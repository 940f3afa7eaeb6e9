//! Small bindings the `opfs` crate lacks: the global `navigator.storage`, `FileSystemFileHandle.move()`,
//! and turning thrown JS values (`DOMException`s, `TypeError`s) into [`std::io::Error`]s.

use std::io::ErrorKind;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{FileSystemDirectoryHandle, FileSystemFileHandle, StorageManager};

/// `obj[name]`, or `undefined` when it is missing or the lookup throws.
pub(crate) fn get(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// `obj[name]` if it is a function.
pub(crate) fn method(obj: &JsValue, name: &str) -> Option<Function> {
    get(obj, name).dyn_into::<Function>().ok()
}

/// `globalThis.navigator.storage` of whichever global scope this runs in (a window or a
/// worker), if it has `getDirectory()` (the OPFS). Never assumes a `window`.
pub(crate) fn storage_manager() -> Option<StorageManager> {
    let storage = storage()?;
    method(&storage, "getDirectory")?;
    Some(storage.unchecked_into())
}

/// Await a JS promise.
pub(crate) async fn await_promise(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

/// Call `obj[name](...args)` if it is a function and await the promise it returns. `None` when
/// there is no such method (the feature is unsupported).
pub(crate) async fn call_async(
    obj: &JsValue,
    name: &str,
    args: &[&JsValue],
) -> Option<Result<JsValue, JsValue>> {
    let func = method(obj, name)?;
    let array = js_sys::Array::new();
    for arg in args {
        array.push(arg);
    }
    Some(match Reflect::apply(&func, obj, &array) {
        Ok(value) => match value.dyn_into::<Promise>() {
            Ok(promise) => await_promise(promise).await,
            Err(value) => Ok(value),
        },
        Err(e) => Err(e),
    })
}

/// Whether this browser has `move()` on file handles. Chromium defines it on
/// `FileSystemFileHandle.prototype` (not on `FileSystemHandle.prototype`), so look there.
pub(crate) fn move_supported() -> bool {
    let class = get(&js_sys::global(), "FileSystemFileHandle");
    class.is_function() && method(&get(&class, "prototype"), "move").is_some()
}

/// `globalThis.navigator.storage`, if there is one.
pub(crate) fn storage() -> Option<JsValue> {
    let navigator = get(&js_sys::global(), "navigator");
    if !navigator.is_object() {
        return None;
    }
    Some(get(&navigator, "storage")).filter(JsValue::is_object)
}

/// `handle.move(dir, name)`: move (and rename) the file, replacing an existing file at the
/// destination. `None` if the browser has no `move()`.
pub(crate) async fn move_file(
    handle: &FileSystemFileHandle,
    dir: &FileSystemDirectoryHandle,
    name: &str,
) -> Option<Result<(), JsValue>> {
    call_async(handle, "move", &[dir, &JsValue::from_str(name)])
        .await
        .map(|r| r.map(drop))
}

/// The `name` of a thrown `DOMException` or `Error` (e.g. `"NotFoundError"`, `"TypeError"`).
pub(crate) fn error_name(err: &JsValue) -> String {
    get(err, "name").as_string().unwrap_or_default()
}

/// Whether the thrown value says "no such entry".
pub(crate) fn is_not_found(err: &JsValue) -> bool {
    error_name(err) == "NotFoundError"
}

/// Whether the thrown value says "an entry of the other kind is there" (a file where a
/// directory was expected or the reverse).
pub(crate) fn is_type_mismatch(err: &JsValue) -> bool {
    error_name(err) == "TypeMismatchError"
}

/// Whether the thrown value says the entry is locked (an open writable or sync access handle).
pub(crate) fn is_locked(err: &JsValue) -> bool {
    matches!(
        error_name(err).as_str(),
        "NoModificationAllowedError" | "InvalidModificationError"
    )
}

/// A readable description of a thrown value.
pub(crate) fn describe(err: &JsValue) -> String {
    let name = error_name(err);
    let message = get(err, "message").as_string().unwrap_or_default();
    match (name.is_empty(), message.is_empty()) {
        (false, false) => format!("{name}: {message}"),
        (false, true) => name,
        (true, false) => message,
        (true, true) => err
            .as_string()
            .unwrap_or_else(|| format!("{err:?}"))
            .chars()
            .take(200)
            .collect(),
    }
}

/// Map a thrown value to an [`std::io::Error`] whose kind says what happened, so
/// `Error::is_retryable` and `Error::is_not_found` behave as with `NativeFs`.
/// `mismatch` is the kind to use for `TypeMismatchError`, which depends on what was expected.
pub(crate) fn io_error(err: &JsValue, mismatch: ErrorKind) -> std::io::Error {
    let kind = match error_name(err).as_str() {
        "NotFoundError" => ErrorKind::NotFound,
        "TypeMismatchError" => mismatch,
        "NotAllowedError" | "SecurityError" => ErrorKind::PermissionDenied,
        // Another writer or a sync access handle holds the file's lock: may work later.
        "NoModificationAllowedError" => ErrorKind::ResourceBusy,
        "QuotaExceededError" => ErrorKind::QuotaExceeded,
        "AbortError" => ErrorKind::Interrupted,
        "TypeError" | "InvalidCharacterError" | "SyntaxError" => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    };
    std::io::Error::new(kind, describe(err))
}
