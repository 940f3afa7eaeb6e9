//! Connection limits of `server::serve` over real TCP on loopback: a client that sends half its
//! headers (or nothing) is disconnected after the header timeout, an idle kept-alive
//! connection is closed, a request body that stalls fails the request and stores nothing, and
//! with the connection cap full of stalled clients `/api/health` is answered once the header
//! timeout frees a slot, not before. Timeouts are short and real; each check waits for the
//! event it expects (a read returning end of stream or an error), never for a duration.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use filesync_core::Result;
use filesync_core::contract::RelayEvent;
use filesync_core::schema::{Event, FileDeleted};
use filesync_core::server::{
    ConnectionLimits, EventLog, HealthReport, MemoryEventLog, ObjectSigner, ServeConfig,
    SignedRequest, UploadSpec, router_with_relay, serve_with_config,
};
use filesync_core::types::{FileId, ObjectKey, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use common::http::{grants, listen};
use common::store_id;

mod common;

/// Longer than any test: a limit that must not be the one that acts.
const NEVER: Duration = Duration::from_secs(3600);
/// A limit that acts within the test.
const SHORT: Duration = Duration::from_millis(300);
/// How long a test waits for what it expects before failing (a hang guard, not a measure).
const GUARD: Duration = Duration::from_secs(30);
const TOKEN: &str = "store-a-token";

/// A signer whose bucket is always healthy and which signs nothing: these tests need only
/// `/health` and the relay.
struct HealthOnly;

#[async_trait]
impl ObjectSigner for HealthOnly {
    async fn sign_upload(
        &self,
        _: &UploadSpec,
        _: Duration,
        _: Timestamp,
    ) -> Result<SignedRequest> {
        Err(filesync_core::Error::Unsupported { what: "signing" })
    }
    async fn sign_download(
        &self,
        _: &ObjectKey,
        _: Duration,
        _: Timestamp,
    ) -> Result<SignedRequest> {
        Err(filesync_core::Error::Unsupported { what: "signing" })
    }
    async fn delete(&self, _: &ObjectKey) -> Result<()> {
        Ok(())
    }
    async fn health(&self) -> HealthReport {
        HealthReport {
            ok: true,
            details: Default::default(),
        }
    }
}

/// The contract router (`/api/health`) and the relay on a memory log, served on loopback with
/// `limits` until dropped.
struct Server {
    addr: SocketAddr,
    log: Arc<MemoryEventLog>,
    _stop: oneshot::Sender<()>,
}

async fn serve(limits: ConnectionLimits) -> Server {
    let (listener, addr) = listen(0).await;
    let log = Arc::new(MemoryEventLog::new());
    let app = router_with_relay(
        Arc::new(HealthOnly),
        grants(&[(TOKEN, &["store-a/"])]),
        Some(log.clone() as Arc<dyn EventLog>),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let config = ServeConfig {
        limits,
        grace: Duration::from_millis(100),
    };
    filesync_core::rt::spawn(async move {
        serve_with_config(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            config,
        )
        .await
        .unwrap();
    });
    Server {
        addr,
        log,
        _stop: stop,
    }
}

fn limits(header: Duration, idle: Duration, body: Duration, max: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: header,
        idle_timeout: idle,
        body_read_timeout: body,
        max_connections: max,
    }
}

const HEALTH: &str = "GET /api/health HTTP/1.1\r\nHost: test\r\n\r\n";
const HEALTH_AND_CLOSE: &str =
    "GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

/// Everything the server sends until it closes the connection (end of stream or a reset).
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// [`until_closed`], failing the test if the server never closes.
async fn closed_by_server(stream: &mut TcpStream, what: &str) -> String {
    tokio::time::timeout(GUARD, until_closed(stream))
        .await
        .unwrap_or_else(|_| panic!("the server never closed {what}"))
}

/// Read one response with a `content-length` body (the connection stays open).
async fn one_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(GUARD, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed mid-response: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// A connection that sent half of a request's headers, then nothing.
async fn stalled_client(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    stream
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    stream
}

/// Half-sent headers, and no bytes at all, are cut by the header timeout: on a new connection
/// and on a kept-alive one (where the clock starts at the next request's first byte; the idle
/// timeout, which would otherwise apply, is an hour). A complete request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_disconnected_after_the_header_timeout() {
    let server = serve(limits(SHORT, NEVER, NEVER, 64)).await;
    let mut half = stalled_client(server.addr).await;
    let mut silent = connect(server.addr).await;
    assert_eq!(closed_by_server(&mut half, "a half-sent request").await, "");
    assert_eq!(
        closed_by_server(&mut silent, "a silent connection").await,
        ""
    );

    let mut kept = connect(server.addr).await;
    kept.write_all(HEALTH.as_bytes()).await.unwrap();
    let first = one_response(&mut kept).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    kept.write_all(b"GET /api/health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    assert_eq!(
        closed_by_server(&mut kept, "a kept-alive connection with half a request").await,
        ""
    );

    let mut whole = connect(server.addr).await;
    whole.write_all(HEALTH_AND_CLOSE.as_bytes()).await.unwrap();
    let answer = closed_by_server(&mut whole, "an answered request").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A kept-alive connection with no next request is closed after the idle timeout (the header
/// timeout here is an hour, so only the idle timeout can close it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = serve(limits(NEVER, SHORT, NEVER, 64)).await;
    let mut stream = connect(server.addr).await;
    for _ in 0..2 {
        stream.write_all(HEALTH.as_bytes()).await.unwrap();
        let response = one_response(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            !response.to_ascii_lowercase().contains("connection: close"),
            "{response}"
        );
    }
    assert_eq!(
        closed_by_server(&mut stream, "an idle connection").await,
        ""
    );
}

/// A push whose body stops halfway fails after the body timeout (400, the relay's answer for
/// a body it could not read), the connection is closed, and the relay stores nothing; the
/// same bytes sent whole are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_fails_the_request_and_stores_nothing() {
    let server = serve(limits(NEVER, NEVER, SHORT, 64)).await;
    let events: Vec<RelayEvent> = (1..=2)
        .map(|seq| RelayEvent {
            event: Event::FileDeleted(FileDeleted {
                id: FileId::parse(format!("f{seq}")).unwrap(),
                deleted_at: Timestamp::from_millis(1).unwrap(),
            }),
            seq_num: seq,
            parent_seq_num: seq - 1,
            client_id: "c1".into(),
            session_id: "s".into(),
        })
        .collect();
    let body = serde_json::json!({ "batch": events }).to_string();
    let head = format!(
        "POST /api/v1/stores/store-a/push HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );

    let mut stalled = connect(server.addr).await;
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let answer = closed_by_server(&mut stalled, "a stalled upload").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("cut off"), "{answer}");
    let store = store_id("store-a");
    assert_eq!(server.log.head(&store).await.unwrap(), 0, "nothing stored");

    let mut whole = connect(server.addr).await;
    whole.write_all(head.as_bytes()).await.unwrap();
    whole.write_all(body.as_bytes()).await.unwrap();
    let answer = one_response(&mut whole).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"head":2}"#), "{answer}");
    assert_eq!(server.log.head(&store).await.unwrap(), 2);
}

/// With the cap (4) taken by stalled clients, a new client's `/api/health` is not answered
/// while they hold every slot (the cap is enforced) and is answered once the header timeout
/// has cut one of them (health stays reachable). The stalled clients connect first, so they
/// are accepted first; the check that health waited is an order of events: when its answer
/// arrives, a stalled client's disconnection (which came earlier) is already readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_fill_the_cap_and_health_is_answered_once_one_is_cut() {
    const CAP: usize = 4;
    let server = serve(limits(Duration::from_millis(500), NEVER, NEVER, CAP)).await;
    let mut stalled = Vec::new();
    for _ in 0..CAP {
        stalled.push(stalled_client(server.addr).await);
    }
    let mut health = connect(server.addr).await;
    health.write_all(HEALTH_AND_CLOSE.as_bytes()).await.unwrap();

    let mut cuts = futures::future::select_all(
        stalled
            .iter_mut()
            .map(|s| Box::pin(until_closed(s)))
            .collect::<Vec<_>>(),
    );
    let answer = Box::pin(until_closed(&mut health));
    let mut cut_seen = false;
    let answer = tokio::time::timeout(GUARD, async {
        tokio::pin!(answer);
        loop {
            tokio::select! {
                biased;
                _ = &mut cuts, if !cut_seen => cut_seen = true,
                answer = &mut answer => return answer,
            }
        }
    })
    .await
    .expect("health was never answered");
    assert!(
        cut_seen,
        "health was answered while {CAP} stalled clients held every slot: {answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The server flags reach [`ServeConfig`]: defaults, each flag, and 0 refused with the
/// setting named.
#[cfg(feature = "cli")]
#[test]
fn server_flags_set_the_connection_limits() {
    use clap::Parser;
    use filesync_core::server::cli::ServerArgs;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        server: ServerArgs,
    }
    let config = |flags: &[&str]| {
        Args::try_parse_from(std::iter::once("server").chain(flags.iter().copied()))
            .unwrap()
            .server
            .serve_config()
    };
    assert_eq!(config(&[]).unwrap(), ServeConfig::default());
    assert_eq!(config(&[]).unwrap().limits, ConnectionLimits::DEFAULT);
    let set = config(&[
        "--header-timeout-secs",
        "3",
        "--idle-timeout-secs",
        "4",
        "--body-timeout-secs",
        "5",
        "--max-connections",
        "6",
    ])
    .unwrap();
    assert_eq!(
        set.limits,
        limits(
            Duration::from_secs(3),
            Duration::from_secs(4),
            Duration::from_secs(5),
            6
        )
    );
    for flag in [
        "--header-timeout-secs",
        "--idle-timeout-secs",
        "--body-timeout-secs",
        "--max-connections",
    ] {
        let error = config(&[flag, "0"]).unwrap_err().to_string();
        assert!(error.contains(&flag[2..]), "{flag}: {error}");
        assert!(error.contains("at least 1"), "{flag}: {error}");
    }
}
