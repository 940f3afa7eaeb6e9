//! Properties of the byte proxy's router over generated requests (proptest), in process
//! (`tower::ServiceExt::oneshot`), on a local-disk bucket and a SQLite relay in a temporary
//! directory: the contract routes, the relay routes and the file routes, fed known routes and
//! garbage paths, every method, absent, valid, scoped and garbage credentials, signed URLs
//! (valid, tampered, expired, for another method), bodies built from the real request types
//! and then mutated, truncated, garbage or over the limit, file bodies that match their key or
//! not, are over the size limit or are cut off, and odd `Content-Length`, checksum, `Range`
//! and `If-None-Match` headers.
//!
//! The router never answers 5xx (the documented ones cannot happen here: 500 from `/health`
//! and `Storage error` need a failing bucket, the local one is healthy; 504 needs a request
//! slower than `request_timeout`, 30 s) and never panics, also while streaming a body. The
//! stored state (the bucket directory, objects and content types, and the relay log of every
//! store a request touched) changes only for an authorized `POST`, `PUT` or `DELETE`
//! answered 2xx; a request built valid gets exactly its answer and its change (an upload
//! stores its bytes, a delete removes the object, a push at the head appends its batch, a
//! download returns the stored bytes or 404); an unauthorized one 401, a key or store
//! outside the token's prefixes 403.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use filesync_core::contract::{
    KeyRequest, PushOutcome, PushRequest, RelayEvent, SignUploadRequest,
};
use filesync_core::hash::hash_bytes;
use filesync_core::schema::{Event, FileCreated, FileDeleted, LocalFileStateClear, MetadataJson};
use filesync_core::server::{EventLog, RouterConfig, Secret, SqliteEventLog};
use filesync_core::types::{ContentHash, FileId, LocalPath, ObjectKey, StoreId, Timestamp};
use filesync_r2::signature::{Bound, decode_key, encode_key, signed_url_bound};
use filesync_r2::{Bucket, DEFAULT_FILES_BASE_PATH, R2Config, R2Proxy, router};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tower::ServiceExt;

mod common;

/// A token for every key and store.
const TOKEN: &str = "r2-props-token-0123456789";
/// A token for keys under `other/` and the store `other` only.
const SCOPED: &str = "scoped-props-token-0123456789";
/// The JSON body limit of the signer routes here.
const BODY_LIMIT: usize = 4 * 1024;
/// The push body limit here.
const RELAY_BODY_LIMIT: usize = 16 * 1024;
/// The largest object here.
const MAX_OBJECT: u64 = 1024;
/// Where signed URLs point (only their path and query are sent).
const PUBLIC_URL: &str = "http://files.test";
/// The file URLs' HMAC key.
const SIGNING_SECRET: &str = "r2-props-signing-secret";

// ---------------------------------------------------------------------------------------
// The world: one runtime, a router on a fresh directory per case.

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(16 << 20)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A relay log that remembers every store a request touched, so a snapshot can read them all.
struct Touched {
    log: SqliteEventLog,
    stores: Mutex<BTreeSet<StoreId>>,
}

impl Touched {
    fn touch(&self, store: &StoreId) {
        self.stores.lock().unwrap().insert(store.clone());
    }
}

#[async_trait]
impl EventLog for Touched {
    async fn append(
        &self,
        store: &StoreId,
        batch: Vec<RelayEvent>,
    ) -> filesync_core::Result<PushOutcome> {
        self.touch(store);
        self.log.append(store, batch).await
    }
    async fn read(
        &self,
        store: &StoreId,
        after: u64,
        limit: usize,
    ) -> filesync_core::Result<Vec<RelayEvent>> {
        self.touch(store);
        self.log.read(store, after, limit).await
    }
    async fn head(&self, store: &StoreId) -> filesync_core::Result<u64> {
        self.touch(store);
        self.log.head(store).await
    }
    async fn wait(&self, store: &StoreId, after: u64, max: Duration) -> filesync_core::Result<()> {
        self.touch(store);
        self.log.wait(store, after, max).await
    }
}

/// One case's router, its relay and its data directory (bucket under `objects/`, `meta/`).
struct World {
    app: Router,
    relay: Arc<Touched>,
    dir: tempfile::TempDir,
}

/// A temporary directory in memory where there is one (`/dev/shm`): the bucket and the relay
/// sync every write, which on a busy disk would make the cases slow, not more thorough.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    match shm.is_dir() {
        true => tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap()),
        false => tempfile::tempdir().unwrap(),
    }
}

async fn world() -> World {
    let dir = scratch_dir();
    let relay = Arc::new(Touched {
        log: SqliteEventLog::open(dir.path().join("relay.sqlite"))
            .await
            .unwrap(),
        stores: Mutex::default(),
    });
    let mut proxy_config = R2Config::new(PUBLIC_URL.parse().unwrap(), Secret::new(SIGNING_SECRET));
    proxy_config.max_object_size = MAX_OBJECT;
    let proxy = Arc::new(R2Proxy::new(
        Bucket::local(dir.path()).unwrap(),
        proxy_config,
    ));
    let config = RouterConfig {
        body_limit: BODY_LIMIT,
        relay_body_limit: RELAY_BODY_LIMIT,
        ..common::grants(&[TOKEN, &format!("{SCOPED}:other/")])
    };
    let log: Arc<dyn EventLog> = Arc::clone(&relay) as Arc<dyn EventLog>;
    World {
        app: router(proxy, config, Some(log)),
        relay,
        dir,
    }
}

/// What requests can change: every touched store's log, and every file under the bucket's
/// directories (`objects/<key>`, `meta/<key>`, staging files too) with its bytes.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    relay: BTreeMap<StoreId, Vec<RelayEvent>>,
    files: BTreeMap<String, Vec<u8>>,
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let name = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read(&p).unwrap());
        }
    }
}

impl World {
    async fn snapshot(&self) -> Snapshot {
        let stores: Vec<StoreId> = self.relay.stores.lock().unwrap().iter().cloned().collect();
        let mut relay = BTreeMap::new();
        for store in stores {
            let events = self.relay.log.read(&store, 0, usize::MAX).await.unwrap();
            if !events.is_empty() {
                relay.insert(store, events);
            }
        }
        let mut files = BTreeMap::new();
        for sub in ["objects", "meta"] {
            walk(self.dir.path(), &self.dir.path().join(sub), &mut files);
        }
        Snapshot { relay, files }
    }

    async fn head(&self, store: &str) -> u64 {
        match StoreId::parse(store) {
            Ok(s) => self.relay.log.head(&s).await.unwrap(),
            Err(_) => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Generated requests.

/// What a token grants: every key, keys under `other/`, nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    All,
    Other,
    Nothing,
}

#[derive(Debug, Clone)]
enum Auth {
    Absent,
    Bearer,
    /// `bearer <token>`: the scheme in any case.
    LowerBearer,
    /// `X-Worker-Auth: <token>`.
    Worker,
    Scoped,
    /// Two `Authorization` headers with the token: none counts.
    Twice,
    Garbage(String),
}

impl Auth {
    fn grant(&self) -> Grant {
        match self {
            Auth::Bearer | Auth::LowerBearer | Auth::Worker => Grant::All,
            Auth::Scoped => Grant::Other,
            Auth::Absent | Auth::Twice | Auth::Garbage(_) => Grant::Nothing,
        }
    }

    fn apply(&self, req: axum::http::request::Builder) -> axum::http::request::Builder {
        let bearer = format!("Bearer {TOKEN}");
        match self {
            Auth::Absent => req,
            Auth::Bearer => req.header("authorization", bearer),
            Auth::LowerBearer => req.header("authorization", format!("bearer {TOKEN}")),
            Auth::Worker => req.header("x-worker-auth", TOKEN),
            Auth::Scoped => req.header("authorization", format!("Bearer {SCOPED}")),
            Auth::Twice => req
                .header("authorization", bearer.clone())
                .header("authorization", bearer),
            Auth::Garbage(v) => req.header("authorization", v.as_str()),
        }
    }
}

fn auth() -> BoxedStrategy<Auth> {
    prop_oneof![
        4 => Just(Auth::Bearer),
        1 => Just(Auth::LowerBearer),
        1 => Just(Auth::Worker),
        2 => Just(Auth::Scoped),
        2 => Just(Auth::Absent),
        1 => Just(Auth::Twice),
        2 => prop_oneof!["[ -~]{0,40}", "Bearer [ -~]{0,30}", Just(format!("Bearer {TOKEN}x"))]
            .prop_map(Auth::Garbage),
    ]
    .boxed()
}

fn hex64() -> BoxedStrategy<String> {
    any::<[u8; 32]>()
        .prop_map(|b| ContentHash::from_bytes(b).to_string())
        .boxed()
}

/// Keys a valid request uses: content addresses and plain keys, in both scopes.
fn valid_key() -> BoxedStrategy<String> {
    prop_oneof![
        hex64().prop_map(|h| format!("s1/{h}")),
        hex64().prop_map(|h| format!("other/{h}")),
        Just("s1/docs/a.txt".to_owned()),
        Just("other/x".to_owned()),
    ]
    .boxed()
}

/// Any key text: valid ones, unsafe ones, long ones, anything.
fn any_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => valid_key(),
        1 => Just(String::new()),
        1 => Just("/s1/x".to_owned()),
        1 => Just("s1/../x".to_owned()),
        1 => Just("s1//x".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just("s1\\x".to_owned()),
        1 => Just("s1/x\u{1}".to_owned()),
        1 => prop_oneof![Just("other"), Just("s1"), Just("other/x/y"), Just("s1/docs/a.txt/b")]
            .prop_map(str::to_owned),
        1 => Just("a".repeat(2000)),
        2 => any::<String>(),
    ]
    .boxed()
}

fn valid_upload() -> BoxedStrategy<SignUploadRequest> {
    (
        valid_key(),
        any::<bool>(),
        prop::option::of(0..=MAX_OBJECT),
        prop::option::of(prop_oneof![Just("text/plain"), Just("image/png")]),
    )
        .prop_map(|(key, declare, content_length, content_type)| {
            // A content address's own hash, or none; a plain key any hash.
            let content_hash = declare.then(|| {
                key.split_once('/')
                    .map(|(_, h)| h)
                    .filter(|h| h.len() == 64)
                    .map_or_else(|| "ab".repeat(32), str::to_owned)
            });
            SignUploadRequest {
                key,
                content_type: content_type.map(str::to_owned),
                content_length,
                content_hash,
            }
        })
        .boxed()
}

fn wild_upload() -> BoxedStrategy<SignUploadRequest> {
    (
        any_key(),
        prop::option::of(prop_oneof![
            Just(String::new()),
            Just("text/plain".to_owned()),
            Just("a\u{7}b".to_owned()),
            Just("é".to_owned()),
            Just("a".repeat(300)),
            "[ -~]{0,20}",
        ]),
        prop::option::of(any::<u64>()),
        prop::option::of(prop_oneof![
            Just(String::new()),
            Just("zz".to_owned()),
            hex64(),
            hex64().prop_map(|h| h.to_uppercase()),
            any::<String>(),
        ]),
    )
        .prop_map(
            |(key, content_type, content_length, content_hash)| SignUploadRequest {
                key,
                content_type,
                content_length,
                content_hash,
            },
        )
        .boxed()
}

/// A file event: created or deleted, with valid, `null`, absent or broken metadata, or a
/// client-only event (never synced: a bad push).
#[derive(Debug, Clone)]
enum Ev {
    File {
        created: bool,
        file: u8,
        n: u8,
        meta: u8,
    },
    ClientOnly,
}

impl Ev {
    fn valid(&self) -> bool {
        matches!(self, Ev::File { meta, .. } if *meta < 3)
    }

    fn event(&self) -> Event {
        let Ev::File {
            created,
            file,
            n,
            meta,
        } = *self
        else {
            return Event::LocalFileStateClear(LocalFileStateClear {});
        };
        let id = FileId::parse(format!("f{file}")).unwrap();
        let at = Timestamp::from_millis(1_000 + i64::from(n)).unwrap();
        if !created {
            return Event::FileDeleted(FileDeleted { id, deleted_at: at });
        }
        let hash = ContentHash::from_bytes([n; 32]);
        Event::FileCreated(FileCreated {
            id,
            path: LocalPath::parse(format!("livestore-filesync-files/s1/{hash}")).unwrap(),
            content_hash: hash,
            metadata_json: match meta {
                0 => MetadataJson::Absent,
                1 => MetadataJson::Null,
                2 => MetadataJson::Value(format!("{{\"n\":{n}}}")),
                _ => MetadataJson::Value("{not json".into()),
            },
            created_at: at,
            updated_at: at,
        })
    }
}

fn ev() -> BoxedStrategy<Ev> {
    prop_oneof![
        8 => (any::<bool>(), 0u8..4, any::<u8>(), 0u8..4)
            .prop_map(|(created, file, n, meta)| Ev::File { created, file, n, meta }),
        1 => Just(Ev::ClientOnly),
    ]
    .boxed()
}

/// Where a push's batch starts.
#[derive(Debug, Clone)]
enum Parent {
    /// At the relay's head: the valid push.
    Head,
    /// This many before the head (saturating): a client that is behind, or a repeat.
    Behind(u64),
    /// This many beyond it.
    Beyond(u64),
    Any(u64),
}

#[derive(Debug, Clone)]
struct PushPlan {
    events: Vec<Ev>,
    client: String,
    parent: Parent,
}

impl PushPlan {
    fn valid_client(&self) -> bool {
        ["c1", "client-2", "a:b.c_d"].contains(&self.client.as_str())
    }

    fn batch(&self, head: u64) -> Vec<RelayEvent> {
        let parent = match self.parent {
            Parent::Head => head,
            Parent::Behind(n) => head.saturating_sub(n),
            Parent::Beyond(n) => head + n,
            Parent::Any(p) => p,
        };
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| RelayEvent {
                event: e.event(),
                seq_num: parent.wrapping_add(1 + i as u64),
                parent_seq_num: parent.wrapping_add(i as u64),
                client_id: self.client.clone(),
                session_id: "session-1".into(),
            })
            .collect()
    }
}

fn push_plan() -> BoxedStrategy<PushPlan> {
    (
        prop::collection::vec(ev(), 0..4),
        prop_oneof![
            6 => prop_oneof![Just("c1"), Just("client-2"), Just("a:b.c_d")].prop_map(str::to_owned),
            1 => Just(String::new()),
            1 => Just("a b".to_owned()),
            1 => Just("é".to_owned()),
            1 => Just("x".repeat(200)),
        ],
        prop_oneof![
            6 => Just(Parent::Head),
            1 => (1u64..3).prop_map(Parent::Behind),
            1 => (1u64..3).prop_map(Parent::Beyond),
            1 => any::<u64>().prop_map(Parent::Any),
        ],
    )
        .prop_map(|(events, client, parent)| PushPlan {
            events,
            client,
            parent,
        })
        .boxed()
}

/// What happens to a JSON body before it is sent.
#[derive(Debug, Clone)]
enum Mangle {
    None,
    /// Overwrite bytes at these positions (modulo the length).
    Flip(Vec<(usize, u8)>),
    /// Keep this fraction (in 1/16) of it.
    Truncate(usize),
    /// Replace it.
    Garbage(Vec<u8>),
    /// Pad it (as JSON whitespace) past the limit by this much.
    Oversize(usize),
    Empty,
}

impl Mangle {
    fn apply(&self, mut body: Vec<u8>, limit: usize) -> Vec<u8> {
        match self {
            Mangle::None => body,
            Mangle::Flip(flips) => {
                if !body.is_empty() {
                    let len = body.len();
                    for (i, b) in flips {
                        body[i % len] = *b;
                    }
                }
                body
            }
            Mangle::Truncate(sixteenths) => {
                body.truncate(body.len() * sixteenths / 16);
                body
            }
            Mangle::Garbage(g) => g.clone(),
            Mangle::Oversize(extra) => {
                body.resize(limit + extra, b' ');
                body
            }
            Mangle::Empty => Vec::new(),
        }
    }
}

fn mangle() -> BoxedStrategy<Mangle> {
    prop_oneof![
        24 => Just(Mangle::None),
        2 => prop::collection::vec((any::<usize>(), any::<u8>()), 1..4).prop_map(Mangle::Flip),
        1 => (0usize..16).prop_map(Mangle::Truncate),
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Mangle::Garbage),
        1 => (1usize..64).prop_map(Mangle::Oversize),
        1 => Just(Mangle::Empty),
    ]
    .boxed()
}

/// A contract route's body: built from a valid request, or from anything.
#[derive(Debug, Clone)]
enum Payload<T> {
    Valid(T),
    Wild(T),
}

/// Which request, to which known route.
#[derive(Debug, Clone)]
enum Route {
    Health,
    SignUpload(Payload<SignUploadRequest>),
    SignDownload(Payload<String>),
    Delete(Payload<String>),
    Push(String, PushPlan),
    Pull(String, String),
    Stream(String, String, Option<String>),
    File(FilePlan),
}

fn store_seg() -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just("s1".to_owned()),
        3 => Just("other".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just("%2E%2E".to_owned()),
        1 => Just("a%2Fb".to_owned()),
        1 => Just("%ZZ".to_owned()),
        1 => "[a-zA-Z0-9._~-]{1,12}",
    ]
    .boxed()
}

/// Pull and stream queries; never a `wait` above 0, which would hold a case for seconds.
fn query() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop_oneof![Just(""), Just("after=0"), Just("after=0&limit=5"), Just("wait=0")]
            .prop_map(str::to_owned),
        1 => prop_oneof![
            Just("after=-1"),
            Just("after=99999999999999999999"),
            Just("after=9223372036854775808"),
            Just("after=9223372036854775807"),
            Just("limit=0"),
            Just("limit=abc"),
            Just("wait=x"),
            Just("after=1&after=2"),
            Just("&&=&"),
        ]
        .prop_map(str::to_owned),
        1 => "[a-z0-9=&%+]{0,24}".prop_filter("no wait", |q| !q.contains('w')),
    ]
    .boxed()
}

fn key_payload() -> BoxedStrategy<Payload<String>> {
    prop_oneof![
        3 => valid_key().prop_map(Payload::Valid),
        2 => any_key().prop_map(Payload::Wild),
    ]
    .boxed()
}

fn route() -> BoxedStrategy<Route> {
    prop_oneof![
        1 => Just(Route::Health),
        3 => prop_oneof![
            3 => valid_upload().prop_map(Payload::Valid),
            2 => wild_upload().prop_map(Payload::Wild),
        ]
        .prop_map(Route::SignUpload),
        2 => key_payload().prop_map(Route::SignDownload),
        3 => key_payload().prop_map(Route::Delete),
        4 => (store_seg(), push_plan()).prop_map(|(s, p)| Route::Push(s, p)),
        2 => (store_seg(), query()).prop_map(|(s, q)| Route::Pull(s, q)),
        1 => (
            store_seg(),
            query(),
            prop::option::of(prop_oneof![
                Just("0".to_owned()),
                Just("abc".to_owned()),
                Just("99999999999999999999999".to_owned()),
                "[0-9]{1,3}",
            ]),
        )
            .prop_map(|(s, q, id)| Route::Stream(s, q, id)),
        16 => file_plan().prop_map(Route::File),
    ]
    .boxed()
}

/// A file route's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileOp {
    Put,
    Get,
    Head,
    Delete,
    Options,
}

impl FileOp {
    fn method(self) -> Method {
        match self {
            FileOp::Put => Method::PUT,
            FileOp::Get => Method::GET,
            FileOp::Head => Method::HEAD,
            FileOp::Delete => Method::DELETE,
            FileOp::Options => Method::OPTIONS,
        }
    }

    /// The method a signed URL for it names (`GET` covers `HEAD`).
    fn signed(self) -> &'static str {
        match self {
            FileOp::Put => "PUT",
            FileOp::Delete => "DELETE",
            _ => "GET",
        }
    }
}

/// A file route's key.
#[derive(Debug, Clone)]
enum FileKey {
    /// The body's own content address, in `s1/` or (when set) `other/`.
    Own(bool),
    /// A content address that is not the body's.
    Wrong(String),
    /// A plain key.
    Plain(&'static str),
    /// Raw path segments after the prefix.
    Raw(String),
    /// A stored object's key (picked by the index), else the body's content address.
    Existing(usize),
}

/// How a file request is signed.
#[derive(Debug, Clone)]
enum Signed {
    No,
    /// For this method and key, binding the body's length and SHA-256 on an upload.
    Valid,
    /// The original's format: nothing bound.
    Unbound,
    Tampered,
    Expired,
    TooFar,
    OtherMethod,
    Garbage(String),
}

/// A header that is absent, right, wrong or not even a value of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    No,
    Right,
    Wrong,
    Garbage,
}

#[derive(Debug, Clone)]
struct FilePlan {
    op: FileOp,
    key: FileKey,
    body: Vec<u8>,
    signed: Signed,
    length: Declared,
    checksum: Declared,
    content_type: Option<&'static str>,
    range: Option<String>,
    if_none_match: Option<String>,
    /// The body stream fails half way.
    cut: bool,
}

impl FilePlan {
    fn key(&self, before: &Snapshot) -> Option<String> {
        let own = hash_bytes(&self.body);
        match &self.key {
            FileKey::Existing(i) => {
                let stored: Vec<&str> = before
                    .files
                    .keys()
                    .filter_map(|p| p.strip_prefix("objects/"))
                    .filter(|k| {
                        k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._~/-".contains(&b))
                    })
                    .collect();
                match stored.len() {
                    0 => Some(format!("s1/{own}")),
                    n => Some(stored[i % n].to_owned()),
                }
            }
            FileKey::Own(false) => Some(format!("s1/{own}")),
            FileKey::Own(true) => Some(format!("other/{own}")),
            FileKey::Wrong(h) if *h == own.to_string() => None,
            FileKey::Wrong(h) => Some(format!("s1/{h}")),
            FileKey::Plain(k) => Some((*k).to_owned()),
            FileKey::Raw(_) => None,
        }
    }

    /// Whether the headers and body are what a well-behaved client sends.
    fn clean(&self) -> bool {
        !self.cut
            && matches!(self.length, Declared::No | Declared::Right)
            && matches!(self.checksum, Declared::No | Declared::Right)
            && self.range.is_none()
            && self.if_none_match.is_none()
            && !matches!(self.key, FileKey::Raw(_))
            // An upload to another object's key may contradict its content address.
            && !(self.op == FileOp::Put && matches!(self.key, FileKey::Existing(_)))
    }
}

fn declared() -> BoxedStrategy<Declared> {
    prop_oneof![
        8 => Just(Declared::No),
        8 => Just(Declared::Right),
        1 => Just(Declared::Wrong),
        1 => Just(Declared::Garbage),
    ]
    .boxed()
}

fn file_plan() -> BoxedStrategy<FilePlan> {
    let op = prop_oneof![
        4 => Just(FileOp::Put),
        3 => Just(FileOp::Get),
        1 => Just(FileOp::Head),
        2 => Just(FileOp::Delete),
        1 => Just(FileOp::Options),
    ];
    let key = prop_oneof![
        6 => any::<bool>().prop_map(FileKey::Own),
        6 => any::<usize>().prop_map(FileKey::Existing),
        1 => hex64().prop_map(FileKey::Wrong),
        2 => prop_oneof![Just("s1/docs/a.txt"), Just("other/x")].prop_map(FileKey::Plain),
        2 => prop::collection::vec(segment(), 0..4).prop_map(|s| FileKey::Raw(s.join("/"))),
        // Keys that are a stored object's directory, or under a stored object.
        2 => prop_oneof![Just("other"), Just("s1"), Just("other/x/y"), Just("s1/docs/a.txt/b")]
            .prop_map(|k| FileKey::Raw(k.to_owned())),
    ];
    // A few bodies, so uploads, downloads and deletes meet the same keys.
    let body = prop_oneof![
        4 => prop_oneof![Just(b"hello".to_vec()), Just(Vec::new()), Just(vec![7u8; 300])],
        2 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 1000..1100),
    ];
    let signed = prop_oneof![
        6 => Just(Signed::No),
        6 => Just(Signed::Valid),
        1 => Just(Signed::Unbound),
        1 => Just(Signed::Tampered),
        1 => Just(Signed::Expired),
        1 => Just(Signed::TooFar),
        1 => Just(Signed::OtherMethod),
        1 => "[a-z0-9=&%_-]{0,40}".prop_map(Signed::Garbage),
    ];
    let range = prop::option::of(
        prop_oneof![
            Just("bytes=0-1"),
            Just("bytes=-3"),
            Just("bytes=5-2"),
            Just("bytes=x-1"),
            Just("bytes=-0"),
            Just("bytes=0-"),
            Just("bytes=0-1,3-4"),
            Just("items=0-1"),
            Just("bytes=99999999999999999999-"),
            Just("bytes=-99999999999999999999"),
        ]
        .prop_map(str::to_owned),
    );
    let if_none_match = prop::option::of(
        prop_oneof![Just("*"), Just("\"abc\""), Just("W/\"x\", \"y\""), Just("")]
            .prop_map(str::to_owned),
    );
    (
        (op, key, body, signed),
        (
            declared(),
            declared(),
            prop::option::of(prop_oneof![Just("text/plain"), Just("image/png")]),
        ),
        (
            prop::bool::weighted(0.1),
            range,
            prop::bool::weighted(0.1),
            if_none_match,
            prop::bool::weighted(0.05),
        ),
    )
        .prop_map(
            |(
                (op, key, body, signed),
                (length, checksum, content_type),
                (r, range, i, inm, cut),
            )| FilePlan {
                op,
                key,
                body,
                signed,
                length,
                checksum,
                content_type,
                range: range.filter(|_| r),
                if_none_match: inm.filter(|_| i),
                cut,
            },
        )
        .boxed()
}

/// What happens to the route's path.
#[derive(Debug, Clone)]
enum PathMangle {
    None,
    Suffix(String),
    Prefix(String),
    /// Replace the segment at this index (modulo the count).
    Replace(usize, String),
    Trailing,
    DoubleSlash,
    /// Another base: `/apix`, `/API`, none.
    Base(&'static str),
    /// Not a known route at all.
    Garbage(String),
}

fn segment() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-zA-Z0-9._~-]{0,10}",
        1 => prop_oneof![
            Just(".."), Just("."), Just("%2e%2e"), Just("%2F"), Just("%00"), Just("%ZZ"),
            Just("api"), Just("v1"), Just("stores"), Just("push"), Just("%E2%82%AC"),
        ]
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn path_mangle() -> BoxedStrategy<PathMangle> {
    prop_oneof![
        40 => Just(PathMangle::None),
        1 => segment().prop_map(PathMangle::Suffix),
        1 => segment().prop_map(PathMangle::Prefix),
        1 => (any::<usize>(), segment()).prop_map(|(i, s)| PathMangle::Replace(i, s)),
        1 => Just(PathMangle::Trailing),
        1 => Just(PathMangle::DoubleSlash),
        1 => prop_oneof![Just("/apix"), Just("/API"), Just("")].prop_map(PathMangle::Base),
        1 => prop::collection::vec(segment(), 0..5).prop_map(|s| PathMangle::Garbage(s.join("/"))),
    ]
    .boxed()
}

fn method() -> BoxedStrategy<Option<Method>> {
    prop_oneof![
        24 => Just(None),
        1 => prop_oneof![
            Just(Method::GET),
            Just(Method::POST),
            Just(Method::PUT),
            Just(Method::DELETE),
            Just(Method::HEAD),
            Just(Method::OPTIONS),
            Just(Method::PATCH),
            Just(Method::from_bytes(b"FOO").unwrap()),
        ]
        .prop_map(Some),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Plan {
    route: Route,
    method: Option<Method>,
    path: PathMangle,
    auth: Auth,
    body: Mangle,
}

fn plan() -> BoxedStrategy<Plan> {
    (route(), method(), path_mangle(), auth(), mangle())
        .prop_map(|(route, method, path, auth, body)| Plan {
            route,
            method,
            path,
            auth,
            body,
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Building and checking.

/// What a request built valid must get, and what it changes.
#[derive(Debug)]
enum Effect {
    Nothing,
    Appended(StoreId, Vec<RelayEvent>),
    /// The object under this key is gone.
    Deleted(String),
    /// The object under this key holds these bytes, stored with this type.
    Stored(String, Vec<u8>, String),
    /// Nothing changes; the answer's body is these bytes.
    Served(Vec<u8>),
}

#[derive(Debug)]
struct Expect {
    status: StatusCode,
    effect: Effect,
}

/// Whether `grant` covers the key or store scope `scoped` (`other/…`).
fn covers(grant: Grant, key: &str) -> bool {
    match grant {
        Grant::All => true,
        Grant::Other => key.starts_with("other/"),
        Grant::Nothing => false,
    }
}

/// `path` (with its query) with `mangle` applied; a URI the `http` crate refuses becomes one
/// it takes.
fn mangled_uri(mangle: &PathMangle, path: String) -> String {
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_owned(), format!("?{q}")),
        None => (path, String::new()),
    };
    let mut segments: Vec<String> = path_only.split('/').skip(1).map(str::to_owned).collect();
    let path = match mangle {
        PathMangle::None => path_only,
        PathMangle::Suffix(s) => format!("{path_only}/{s}"),
        PathMangle::Prefix(s) => format!("/{s}{path_only}"),
        PathMangle::Replace(i, s) => {
            let n = segments.len();
            segments[i % n] = s.clone();
            format!("/{}", segments.join("/"))
        }
        PathMangle::Trailing => format!("{path_only}/"),
        PathMangle::DoubleSlash => path_only.replacen('/', "//", 2),
        PathMangle::Base(b) => format!("{b}{}", path_only.trim_start_matches("/api")),
        PathMangle::Garbage(g) => format!("/{g}"),
    };
    let uri = format!("{path}{query}");
    if uri.parse::<axum::http::Uri>().is_ok() {
        uri
    } else {
        "/api/%ZZ".into()
    }
}

/// A request, what it must get when it is built valid, and whether its credentials allow
/// what it asks.
struct Built {
    request: Request<Body>,
    expect: Option<Expect>,
    authorized: bool,
    /// What the request may change at most, when its path and body are known.
    scope: Scope,
}

/// What a request may change.
#[derive(Debug)]
enum Scope {
    /// Not known (a mangled path or body may name anything).
    Unknown,
    /// The object under this key (and its content type), nothing else.
    Key(String),
    /// This store's relay log, nothing else.
    Store(String),
}

/// The request, and what it must get when it is built valid.
async fn build(world: &World, plan: &Plan, before: &Snapshot) -> Built {
    if let Route::File(file) = &plan.route {
        return build_file(plan, file, before);
    }
    let grant = plan.auth.grant();
    let (default_method, path, json, limit, mut expect): (_, String, Option<Vec<u8>>, _, _) =
        match &plan.route {
            Route::Health => (
                Method::GET,
                "/api/health".into(),
                None,
                BODY_LIMIT,
                Some(Expect {
                    status: StatusCode::OK,
                    effect: Effect::Nothing,
                }),
            ),
            Route::SignUpload(p) => {
                let (req, valid) = match p {
                    Payload::Valid(r) => (r, true),
                    Payload::Wild(r) => (r, false),
                };
                let expect = valid.then(|| Expect {
                    status: if covers(grant, &req.key) {
                        StatusCode::OK
                    } else {
                        StatusCode::FORBIDDEN
                    },
                    effect: Effect::Nothing,
                });
                (
                    Method::POST,
                    "/api/v1/sign/upload".into(),
                    Some(serde_json::to_vec(req).unwrap()),
                    BODY_LIMIT,
                    expect,
                )
            }
            Route::SignDownload(p) | Route::Delete(p) => {
                let delete = matches!(plan.route, Route::Delete(_));
                let (key, valid) = match p {
                    Payload::Valid(k) => (k, true),
                    Payload::Wild(k) => (k, false),
                };
                let expect = valid.then(|| match (covers(grant, key), delete) {
                    (false, _) => Expect {
                        status: StatusCode::FORBIDDEN,
                        effect: Effect::Nothing,
                    },
                    (true, false) => Expect {
                        status: StatusCode::OK,
                        effect: Effect::Nothing,
                    },
                    (true, true) => Expect {
                        status: StatusCode::NO_CONTENT,
                        effect: Effect::Deleted(key.clone()),
                    },
                });
                let path = if delete {
                    "/api/v1/delete"
                } else {
                    "/api/v1/sign/download"
                };
                let body = serde_json::to_vec(&KeyRequest { key: key.clone() }).unwrap();
                (Method::POST, path.into(), Some(body), BODY_LIMIT, expect)
            }
            Route::Push(store, push) => {
                let head = world.head(store).await;
                let batch = push.batch(head);
                let valid = matches!(store.as_str(), "s1" | "other")
                    && matches!(push.parent, Parent::Head)
                    && push.valid_client()
                    && push.events.iter().all(Ev::valid);
                let expect = valid.then(|| {
                    if covers(grant, &format!("{store}/")) {
                        Expect {
                            status: StatusCode::OK,
                            effect: Effect::Appended(
                                StoreId::parse(store.as_str()).unwrap(),
                                batch.clone(),
                            ),
                        }
                    } else {
                        Expect {
                            status: StatusCode::FORBIDDEN,
                            effect: Effect::Nothing,
                        }
                    }
                });
                let body = serde_json::to_vec(&PushRequest { batch }).unwrap();
                (
                    Method::POST,
                    format!("/api/v1/stores/{store}/push"),
                    Some(body),
                    RELAY_BODY_LIMIT,
                    expect,
                )
            }
            Route::Pull(store, q) | Route::Stream(store, q, _) => {
                let stream = matches!(plan.route, Route::Stream(..));
                let valid = matches!(store.as_str(), "s1" | "other")
                    && matches!(q.as_str(), "" | "after=0" | "after=0&limit=5" | "wait=0")
                    && !matches!(&plan.route, Route::Stream(_, _, Some(id)) if id.len() > 3 || id.parse::<u64>().is_err());
                let expect = valid.then(|| Expect {
                    status: if covers(grant, &format!("{store}/")) {
                        StatusCode::OK
                    } else {
                        StatusCode::FORBIDDEN
                    },
                    effect: Effect::Nothing,
                });
                let name = if stream { "stream" } else { "pull" };
                let query = if q.is_empty() {
                    String::new()
                } else {
                    format!("?{q}")
                };
                (
                    Method::GET,
                    format!("/api/v1/stores/{store}/{name}{query}"),
                    None,
                    BODY_LIMIT,
                    expect,
                )
            }
            Route::File(_) => unreachable!("built by build_file"),
        };
    // Anything but the route's own method, path and body is unpredictable here (but still
    // held to the general rules); an unauthorized request to an authenticated route is 401.
    let method = plan.method.clone().unwrap_or(default_method.clone());
    if method != default_method
        || !matches!(plan.path, PathMangle::None)
        || !matches!(plan.body, Mangle::None)
    {
        expect = None;
    }
    if grant == Grant::Nothing
        && !matches!(plan.route, Route::Health)
        && let Some(e) = &mut expect
    {
        *e = Expect {
            status: StatusCode::UNAUTHORIZED,
            effect: Effect::Nothing,
        };
    }
    let uri = mangled_uri(&plan.path, path);
    let mut req = plan.auth.apply(Request::builder().method(method).uri(uri));
    if let Route::Stream(_, _, Some(id)) = &plan.route {
        req = req.header("last-event-id", id.as_str());
    }
    let scope = match (&plan.route, &plan.path, &plan.body) {
        (Route::Push(store, _), PathMangle::None, _) => Scope::Store(store.clone()),
        (Route::Delete(Payload::Valid(k) | Payload::Wild(k)), PathMangle::None, Mangle::None) => {
            match ObjectKey::parse(k.trim_start_matches('/')) {
                Ok(k) => Scope::Key(k.to_string()),
                Err(_) => Scope::Key(String::new()),
            }
        }
        (Route::Delete(_), _, _) => Scope::Unknown,
        // A path mangled into another route's (`…/stores/api/push`) may change that route's.
        (_, PathMangle::None, _) => Scope::Key(String::new()),
        _ => Scope::Unknown,
    };
    let body = json.map(|b| plan.body.apply(b, limit)).unwrap_or_default();
    Built {
        request: req.body(Body::from(body)).unwrap(),
        expect,
        authorized: grant != Grant::Nothing,
        scope,
    }
}

/// Whether an object stored under `key` would collide with the local bucket's directories:
/// a stored object under `key/`, or one at a prefix of it.
fn collides(before: &Snapshot, key: &str) -> bool {
    let objects = || {
        before
            .files
            .keys()
            .filter_map(|p| p.strip_prefix("objects/"))
    };
    let dir = format!("{key}/");
    objects().any(|o| o.starts_with(&dir) || key.starts_with(&format!("{o}/")))
}

/// A file route request: its path (signed or not), headers and body, and what it must get
/// when it is built valid (the route's own method, a known key, clean headers).
fn build_file(plan: &Plan, file: &FilePlan, before: &Snapshot) -> Built {
    let grant = plan.auth.grant();
    let key = file.key(before);
    let parsed = key.as_deref().map(|k| ObjectKey::parse(k).unwrap());
    let now_s = Timestamp::now().as_millis().div_euclid(1000);
    let secret = Secret::new(SIGNING_SECRET);
    let hash = hash_bytes(&file.body);
    let url = |method: &str, exp: i64, bound: &Bound| {
        let key = parsed.as_ref().unwrap();
        let url = signed_url_bound(
            PUBLIC_URL,
            DEFAULT_FILES_BASE_PATH,
            &secret,
            method,
            key,
            exp,
            bound,
        );
        url.strip_prefix(PUBLIC_URL).unwrap().to_owned()
    };
    let bound = if file.op == FileOp::Put {
        Bound {
            length: Some(file.body.len() as u64),
            sha256: Some(hash),
        }
    } else {
        Bound::default()
    };
    let plain = match (&file.key, &parsed) {
        (FileKey::Raw(raw), _) => format!("{DEFAULT_FILES_BASE_PATH}/{raw}"),
        (_, Some(k)) => format!("{DEFAULT_FILES_BASE_PATH}/{}", encode_key(k)),
        (_, None) => format!("{DEFAULT_FILES_BASE_PATH}/s1/x"),
    };
    let signed_method = file.op.signed();
    let path = match (&file.signed, &parsed) {
        (Signed::No, _) | (_, None) => plain,
        (Signed::Valid, _) => url(signed_method, now_s + 600, &bound),
        (Signed::Unbound, _) => url(signed_method, now_s + 600, &Bound::default()),
        (Signed::Tampered, _) => {
            let mut u = url(signed_method, now_s + 600, &bound);
            let last = u.pop().unwrap();
            u.push(if last == 'A' { 'B' } else { 'A' });
            u
        }
        (Signed::Expired, _) => url(signed_method, now_s - 5, &bound),
        (Signed::TooFar, _) => url(signed_method, now_s + 100_000, &bound),
        (Signed::OtherMethod, _) => {
            let other = if signed_method == "PUT" { "GET" } else { "PUT" };
            url(other, now_s + 600, &bound)
        }
        (Signed::Garbage(q), _) => format!("{plain}?{q}"),
    };
    let method = plan.method.clone().unwrap_or(file.op.method());
    // Whether the URL carries a good signature for the method sent (`GET` covers `HEAD`).
    let url_method = match file.signed {
        Signed::Valid | Signed::Unbound => Some(signed_method),
        Signed::OtherMethod if signed_method == "PUT" => Some("GET"),
        Signed::OtherMethod => Some("PUT"),
        _ => None,
    };
    let sent_method = match method {
        Method::PUT => Some("PUT"),
        Method::GET | Method::HEAD => Some("GET"),
        Method::DELETE => Some("DELETE"),
        _ => None,
    };
    let signed_valid = parsed.is_some() && url_method.is_some() && url_method == sent_method;
    // The key the route serves: a raw path's as the route decodes it.
    let served = match &file.key {
        FileKey::Raw(raw) => decode_key(raw).and_then(Result::ok).map(|k| k.to_string()),
        _ => key.clone(),
    };
    // A mangled path may name another key (or route) than the one signed or planned.
    let authorized = signed_valid
        || match plan.path {
            PathMangle::None => served.as_deref().is_some_and(|k| covers(grant, k)),
            _ => grant != Grant::Nothing,
        };

    let mut req = plan.auth.apply(
        Request::builder()
            .method(method.clone())
            .uri(mangled_uri(&plan.path, path)),
    );
    let len = file.body.len();
    req = match file.length {
        Declared::No => req,
        Declared::Right => req.header("content-length", len),
        Declared::Wrong => req.header("content-length", len + 1),
        Declared::Garbage => req.header("content-length", "12x"),
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    req = match file.checksum {
        Declared::No => req,
        Declared::Right => req.header("x-amz-checksum-sha256", b64(hash.as_bytes())),
        Declared::Wrong => req.header("x-amz-checksum-sha256", b64(&[1u8; 32])),
        Declared::Garbage => req.header("x-amz-checksum-sha256", "not base64!"),
    };
    if let Some(t) = file.content_type {
        req = req.header("content-type", t);
    }
    if let Some(r) = &file.range {
        req = req.header("range", r.as_str());
    }
    if let Some(v) = &file.if_none_match {
        req = req.header("if-none-match", v.as_str());
    }
    let body = if file.cut {
        let half = bytes::Bytes::from(file.body[..len / 2].to_vec());
        Body::from_stream(futures::stream::iter([
            Ok(half),
            Err(std::io::Error::other("the client went away")),
        ]))
    } else {
        Body::from(file.body.clone())
    };

    let predictable = plan.method.is_none()
        && matches!(plan.path, PathMangle::None)
        && file.clean()
        && matches!(file.signed, Signed::No | Signed::Valid | Signed::Unbound);
    let expect = match (predictable, &key) {
        (false, _) | (_, None) => None,
        _ if file.op == FileOp::Options => Some(Expect {
            status: StatusCode::NO_CONTENT,
            effect: Effect::Nothing,
        }),
        (true, Some(key)) if !authorized => match (&file.signed, grant) {
            (Signed::No, Grant::Nothing) => Some(Expect {
                status: StatusCode::UNAUTHORIZED,
                effect: Effect::Nothing,
            }),
            (Signed::No, Grant::Other) if !covers(grant, key) => Some(Expect {
                status: StatusCode::FORBIDDEN,
                effect: Effect::Nothing,
            }),
            _ => None,
        },
        (true, Some(key)) => Some(match file.op {
            // As `files::put` checks: a declared length over the limit; a checksum (declared or
            // signed) that contradicts the content address; a key that collides with the local
            // bucket's directories (`a` beside `a/b`: 409); then, while streaming, a body over
            // the limit; then a body that is not its content address.
            FileOp::Put => {
                let too_big = len as u64 > MAX_OBJECT;
                let wrong = matches!(file.key, FileKey::Wrong(_));
                let contradicted = wrong
                    && (file.checksum == Declared::Right || matches!(file.signed, Signed::Valid));
                let refused = |status| Expect {
                    status,
                    effect: Effect::Nothing,
                };
                if too_big && file.length == Declared::Right {
                    refused(StatusCode::PAYLOAD_TOO_LARGE)
                } else if contradicted {
                    refused(StatusCode::BAD_REQUEST)
                } else if collides(before, key) {
                    refused(StatusCode::CONFLICT)
                } else if too_big {
                    refused(StatusCode::PAYLOAD_TOO_LARGE)
                } else if wrong {
                    refused(StatusCode::BAD_REQUEST)
                } else {
                    Expect {
                        status: StatusCode::OK,
                        effect: Effect::Stored(
                            key.clone(),
                            file.body.clone(),
                            file.content_type
                                .unwrap_or("application/octet-stream")
                                .to_owned(),
                        ),
                    }
                }
            }
            FileOp::Get | FileOp::Head => match before.files.get(&format!("objects/{key}")) {
                None => Expect {
                    status: StatusCode::NOT_FOUND,
                    effect: Effect::Nothing,
                },
                Some(bytes) => Expect {
                    status: StatusCode::OK,
                    effect: Effect::Served(if file.op == FileOp::Get {
                        bytes.clone()
                    } else {
                        Vec::new()
                    }),
                },
            },
            FileOp::Delete => Expect {
                status: StatusCode::NO_CONTENT,
                effect: Effect::Deleted(key.clone()),
            },
            FileOp::Options => unreachable!("answered above"),
        }),
    };
    let scope = match (&plan.path, &served) {
        (PathMangle::None, Some(k)) => Scope::Key(k.clone()),
        (PathMangle::None, None) => Scope::Key(String::new()),
        _ => Scope::Unknown,
    };
    Built {
        request: req.body(body).unwrap(),
        expect,
        authorized,
        scope,
    }
}

/// Send one request and hold the answer and the state change to the rules.
async fn check(world: &World, plan: &Plan) -> Result<(), TestCaseError> {
    let before = world.snapshot().await;
    let Built {
        request,
        expect,
        authorized,
        scope,
    } = build(world, plan, &before).await;
    let what = format!("{} {}", request.method(), request.uri());
    let mutating = [Method::POST, Method::PUT, Method::DELETE].contains(request.method());
    let response = world.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    // Read the body too: a panic or an error while producing it fails the case.
    let body = if streaming {
        None
    } else {
        Some(
            axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap(),
        )
    };
    let after = world.snapshot().await;
    prop_assert!(!status.is_server_error(), "{what} answered {status}");
    if let Some(expect) = expect {
        prop_assert_eq!(status, expect.status, "{}", what);
        let mut want = before.clone();
        let mut after = after.clone();
        match expect.effect {
            Effect::Nothing => {}
            Effect::Appended(store, batch) => {
                if !batch.is_empty() {
                    want.relay.entry(store).or_default().extend(batch);
                }
            }
            Effect::Deleted(key) => {
                want.files.remove(&format!("objects/{key}"));
                want.files.remove(&format!("meta/{key}"));
            }
            Effect::Stored(key, bytes, content_type) => {
                want.files.insert(format!("objects/{key}"), bytes);
                // The sidecar names the object's identity (inode, time, size), then its type.
                let meta = format!("meta/{key}");
                let stored = after.files.remove(&meta).unwrap_or_default();
                prop_assert!(
                    stored.ends_with(format!("\n{content_type}").as_bytes()),
                    "{}: stored type {:?}",
                    what,
                    String::from_utf8_lossy(&stored)
                );
                want.files.remove(&meta);
            }
            Effect::Served(bytes) => {
                prop_assert_eq!(body.as_deref(), Some(bytes.as_slice()), "{}: body", what);
            }
        }
        prop_assert_eq!(&after, &want, "{}: state", what);
    }
    if after != before {
        prop_assert!(
            status.is_success(),
            "{what} answered {status} and changed the state"
        );
        prop_assert!(mutating, "{what} changed the state");
        prop_assert!(authorized, "{what}: unauthorized, changed the state");
        let changed: BTreeSet<&String> = before
            .files
            .iter()
            .chain(&after.files)
            .filter(|(p, v)| before.files.get(*p) != Some(v) || after.files.get(*p) != Some(v))
            .map(|(p, _)| p)
            .collect();
        match &scope {
            Scope::Unknown => {}
            Scope::Key(key) => {
                let allowed = [format!("objects/{key}"), format!("meta/{key}")];
                // The local bucket percent-encodes some characters in file names.
                let decoded = |p: &String| percent_decode_str(p).decode_utf8_lossy().into_owned();
                prop_assert!(
                    changed.iter().all(|p| allowed.contains(&decoded(p))),
                    "{}: changed {:?}, beyond {:?}",
                    what,
                    changed,
                    key
                );
                prop_assert_eq!(&after.relay, &before.relay, "{}: relay", what);
            }
            Scope::Store(store) => {
                prop_assert!(changed.is_empty(), "{}: changed {:?}", what, changed);
                let others = |s: &Snapshot| {
                    s.relay
                        .iter()
                        .filter(|(k, _)| k.as_str() != store)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>()
                };
                prop_assert_eq!(others(&after), others(&before), "{}: other stores", what);
            }
        }
    }
    Ok(())
}

/// Two uploads every case starts with (checked like the others), so downloads and deletes
/// meet stored objects: `hello` at its content address, and `other/x`.
fn seed() -> Vec<Plan> {
    let upload = |key| Plan {
        route: Route::File(FilePlan {
            op: FileOp::Put,
            key,
            body: b"hello".to_vec(),
            signed: Signed::No,
            length: Declared::Right,
            checksum: Declared::Right,
            content_type: Some("text/plain"),
            range: None,
            if_none_match: None,
            cut: false,
        }),
        method: None,
        path: PathMangle::None,
        auth: Auth::Bearer,
        body: Mangle::None,
    };
    vec![
        upload(FileKey::Own(false)),
        upload(FileKey::Plain("other/x")),
    ]
}

/// `default` cases, or `PROPTEST_CASES` when set (to hunt with many more).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]
    /// 256 cases (or `PROPTEST_CASES`) of 2 seed uploads then 1 to 23 requests, each to a fresh
    /// router on a fresh directory.
    #[test]
    fn r2_router_answers_generated_requests_safely(plans in prop::collection::vec(plan(), 1..24)) {
        // On the runtime's workers (their stacks are large enough for the router's futures
        // in a debug build).
        runtime().block_on(runtime().spawn(async move {
            let world = world().await;
            for plan in seed().iter().chain(&plans) {
                check(&world, plan).await?;
            }
            Ok::<_, TestCaseError>(())
        })).unwrap()?;
    }
}
