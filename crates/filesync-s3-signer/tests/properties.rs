//! Properties of the signer's router over generated requests (proptest), in process
//! (`tower::ServiceExt::oneshot`): the contract routes and the relay routes, fed known routes
//! and garbage paths, every method, absent, valid, scoped and garbage credentials, and bodies
//! that are valid (built from the real request types), mutated, truncated, garbage or over
//! the limit. The signer presigns for a stub S3 endpoint on loopback, which answers every
//! request (deletes 204, the health probe 200) and records the deletes it receives.
//!
//! The router never answers 5xx (the documented ones cannot happen here: 500 from `/health`
//! needs an unreachable bucket and 500 `Delete failed` a failing one, the stub is neither;
//! 504 needs a request slower than `request_timeout`, 30 s) and never panics. The stored
//! state (the relay log of every store a request touched, the deletes the stub received)
//! changes only for an authorized `POST` answered 2xx; a request built valid gets exactly
//! its answer and its change (a push at the head appends its batch, a delete reaches the
//! bucket once); an unauthorized one 401, a key or store outside the token's prefixes 403.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use filesync_core::contract::{
    KeyRequest, PushOutcome, PushRequest, RelayEvent, SignUploadRequest,
};
use filesync_core::schema::{Event, FileCreated, FileDeleted, LocalFileStateClear, MetadataJson};
use filesync_core::server::{
    EventLog, MemoryEventLog, RouterConfig, TokenGrant, router_with_relay, serve,
};
use filesync_core::types::{ContentHash, FileId, LocalPath, StoreId, Timestamp};
use filesync_s3_signer::S3Signer;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tower::ServiceExt;

mod common;

/// A token for every key and store.
const TOKEN: &str = "signer-props-token-0123456789";
/// A token for keys under `other/` and the store `other` only.
const SCOPED: &str = "scoped-props-token-0123456789";
/// The JSON body limit of the signer routes here.
const BODY_LIMIT: usize = 4 * 1024;
/// The push body limit here.
const RELAY_BODY_LIMIT: usize = 16 * 1024;

// ---------------------------------------------------------------------------------------
// The world: one runtime, one stub S3 endpoint, a router per case.

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

/// The stub S3 endpoint: its URL and the `DELETE` paths it received, in order.
struct StubS3 {
    endpoint: String,
    deletes: Arc<Mutex<Vec<String>>>,
}

fn stub_s3() -> &'static StubS3 {
    static S3: OnceLock<StubS3> = OnceLock::new();
    S3.get_or_init(|| {
        let deletes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&deletes);
        let app = Router::new().fallback(move |req: Request<Body>| {
            let seen = Arc::clone(&seen);
            async move {
                if req.method() == Method::DELETE {
                    seen.lock().unwrap().push(req.uri().path().to_owned());
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::OK
                }
            }
        });
        let listener = runtime().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            drop(tokio::spawn(async move {
                serve(listener, app, std::future::pending()).await.unwrap();
            }));
            addr
        });
        StubS3 {
            endpoint: format!("http://{listener}"),
            deletes,
        }
    })
}

/// A relay log that remembers every store a request touched, so a snapshot can read them all.
#[derive(Default)]
struct Touched {
    log: MemoryEventLog,
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

/// One case's router, its relay and the bucket path prefix its deletes carry.
struct World {
    app: Router,
    relay: Arc<Touched>,
    bucket: String,
}

fn world() -> World {
    static CASE: AtomicUsize = AtomicUsize::new(0);
    let bucket = format!("props-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let signer = S3Signer::new(common::config(&stub_s3().endpoint, &bucket)).unwrap();
    let config = RouterConfig {
        tokens: TokenGrant::parse_all(&[TOKEN.to_owned(), format!("{SCOPED}:other/")]).unwrap(),
        body_limit: BODY_LIMIT,
        relay_body_limit: RELAY_BODY_LIMIT,
        ..RouterConfig::default()
    };
    let relay = Arc::new(Touched::default());
    let log: Arc<dyn EventLog> = Arc::clone(&relay) as Arc<dyn EventLog>;
    World {
        app: router_with_relay(Arc::new(signer), config, Some(log)),
        relay,
        bucket,
    }
}

/// What requests can change: every touched store's log, and this case's deletes.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    relay: BTreeMap<StoreId, Vec<RelayEvent>>,
    deletes: Vec<String>,
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
        let prefix = format!("/{}/", self.bucket);
        let deletes = stub_s3()
            .deletes
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        Snapshot { relay, deletes }
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
        1 => Just("a".repeat(2000)),
        2 => any::<String>(),
    ]
    .boxed()
}

fn valid_upload() -> BoxedStrategy<SignUploadRequest> {
    (
        valid_key(),
        any::<bool>(),
        prop::option::of(0u64..100_000),
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
    ]
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
        16 => Just(None),
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
    Deleted(String),
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

/// The request, and what it must get when it is built valid.
async fn build(world: &World, plan: &Plan) -> (Request<Body>, Option<Expect>) {
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
                        effect: Effect::Deleted(format!("/{}/{key}", world.bucket)),
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
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_owned(), format!("?{q}")),
        None => (path, String::new()),
    };
    let mut segments: Vec<String> = path_only.split('/').skip(1).map(str::to_owned).collect();
    let path = match &plan.path {
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
    let uri = if uri.parse::<axum::http::Uri>().is_ok() {
        uri
    } else {
        "/api/%ZZ".into()
    };
    let mut req = plan.auth.apply(Request::builder().method(method).uri(uri));
    if let Route::Stream(_, _, Some(id)) = &plan.route {
        req = req.header("last-event-id", id.as_str());
    }
    let body = json.map(|b| plan.body.apply(b, limit)).unwrap_or_default();
    (req.body(Body::from(body)).unwrap(), expect)
}

/// Send one request and hold the answer and the state change to the rules.
async fn check(world: &World, plan: &Plan) -> Result<(), TestCaseError> {
    let (req, expect) = build(world, plan).await;
    let what = format!("{} {}", req.method(), req.uri());
    let mutating = req.method() == Method::POST;
    let before = world.snapshot().await;
    let response = world.app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        // Read the body too: a panic while producing it fails the case.
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
    }
    let after = world.snapshot().await;
    prop_assert!(!status.is_server_error(), "{what} answered {status}");
    if let Some(expect) = expect {
        prop_assert_eq!(status, expect.status, "{}", what);
        let mut want = before.clone();
        match expect.effect {
            Effect::Nothing => {}
            Effect::Appended(store, batch) => {
                if !batch.is_empty() {
                    want.relay.entry(store).or_default().extend(batch);
                }
            }
            Effect::Deleted(path) => want.deletes.push(path),
        }
        prop_assert_eq!(&after, &want, "{}: state", what);
    }
    if after != before {
        prop_assert!(
            status.is_success(),
            "{what} answered {status} and changed the state"
        );
        prop_assert!(mutating, "{what} changed the state");
        prop_assert!(
            plan.auth.grant() != Grant::Nothing,
            "{what}: unauthorized, changed the state"
        );
        // Only what the request names changes (when its path and body are known): a push
        // its store's log, a delete one object.
        let unmangled = matches!(plan.path, PathMangle::None);
        match &plan.route {
            Route::Push(store, _) if unmangled => {
                let others = |s: &Snapshot| {
                    s.relay
                        .iter()
                        .filter(|(k, _)| k.as_str() != store)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>()
                };
                prop_assert_eq!(others(&after), others(&before), "{}: other stores", what);
                prop_assert_eq!(&after.deletes, &before.deletes, "{}: deletes", what);
            }
            Route::Delete(Payload::Valid(key) | Payload::Wild(key))
                if unmangled && matches!(plan.body, Mangle::None) =>
            {
                // The object's URL percent-encodes each key segment.
                let decode = |d: &[String]| {
                    d.iter()
                        .map(|p| percent_decode_str(p).decode_utf8_lossy().into_owned())
                        .collect::<Vec<_>>()
                };
                let mut want = decode(&before.deletes);
                want.push(format!("/{}/{}", world.bucket, key.trim_start_matches('/')));
                prop_assert_eq!(decode(&after.deletes), want, "{}: deletes", what);
                prop_assert_eq!(&after.relay, &before.relay, "{}: relay", what);
            }
            Route::Push(..) | Route::Delete(_) => {}
            // A path mangled into another route's may change what that route changes.
            _ => prop_assert!(!unmangled, "{what} changed the state"),
        }
    }
    Ok(())
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
    /// 256 cases (or `PROPTEST_CASES`) of 1 to 11 requests, each to a fresh router (its relay
    /// starts empty).
    #[test]
    fn signer_router_answers_generated_requests_safely(plans in prop::collection::vec(plan(), 1..12)) {
        stub_s3();
        // On the runtime's workers (their stacks are large enough for the router's futures
        // in a debug build).
        runtime().block_on(runtime().spawn(async move {
            let world = world();
            for plan in &plans {
                check(&world, plan).await?;
            }
            Ok::<_, TestCaseError>(())
        })).unwrap()?;
    }
}
