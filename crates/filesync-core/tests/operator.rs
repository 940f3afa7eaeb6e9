//! What `server::cli` and `server::with_request_log` give an operator, over a real loopback
//! socket: `--listen` host names resolved and bound, a bad `--listen` naming the flag,
//! `--log-format` and the expiry clamp parsed, and the request log holding the route template
//! (not the raw path or the query) of a router served by `serve`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use clap::Parser;
use filesync_core::server::cli::{LogFormat, ServerArgs, bind};
use filesync_core::server::{serve, with_request_log};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn parse(flags: &[&str]) -> ServerArgs {
    Args::try_parse_from(std::iter::once("server").chain(flags.iter().copied()))
        .unwrap()
        .server
}

/// `GET path` over a new connection; the whole answer.
async fn get_raw(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn listen_resolves_host_names_and_names_the_flag_when_it_cannot() {
    let listener = bind("localhost:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let app = Router::new().route("/ping", get(|| async { "pong" }));
    drop(filesync_core::rt::spawn(async move {
        serve(listener, app, std::future::pending()).await.unwrap();
    }));
    assert!(get_raw(addr, "/ping").await.ends_with("pong"));

    for bad in ["localhost", "127.0.0.1", "not an address", ""] {
        let error = bind(bad).await.unwrap_err().to_string();
        assert!(error.contains("--listen"), "{bad:?}: {error}");
        assert!(error.contains("FILESYNC_LISTEN"), "{bad:?}: {error}");
    }
    // Taken: the bind error names the flag too.
    let taken = addr.to_string();
    let error = bind(&taken).await.unwrap_err().to_string();
    assert!(
        error.contains("--listen") && error.contains("cannot bind"),
        "{error}"
    );
}

#[test]
fn log_format_and_clamped_expiry_are_parsed() {
    assert_eq!(parse(&[]).log_format, LogFormat::Text);
    assert_eq!(parse(&["--log-format", "json"]).log_format, LogFormat::Json);
    assert!(
        Args::try_parse_from(["server", "--log-format", "xml"]).is_err(),
        "an unknown format is refused"
    );
    assert_eq!(
        parse(&["--listen", "localhost:8787"]).listen,
        "localhost:8787"
    );
    let expiry = |flags: &[&str]| {
        let mut all = vec!["--allow-anonymous"];
        all.extend_from_slice(flags);
        parse(&all).router_config().unwrap().max_expiry.as_secs()
    };
    assert_eq!(expiry(&[]), 900);
    assert_eq!(expiry(&["--max-expiry-secs", "86400"]), 3600);
    assert_eq!(expiry(&["--max-expiry-secs", "0"]), 1);
    assert_eq!(expiry(&["--max-expiry-secs", "60"]), 60);
}

/// Where the test subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_request_log_holds_the_route_template_not_the_path() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = with_request_log(Router::new().nest(
        "/files",
        Router::new().route("/{*key}", get(|| async { "bytes" })),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(filesync_core::rt::spawn(async move {
        serve(listener, app, std::future::pending()).await.unwrap();
    }));
    let answer = get_raw(addr, "/files/store/private-key?sig=credential").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = get_raw(addr, "/elsewhere/private-path").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("finished processing request"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains(r#"route="/files/{*key}""#), "{log}");
    assert!(lines[0].contains("status=200"), "{log}");
    assert!(lines[1].contains(r#"route="-""#), "{log}");
    assert!(lines[1].contains("status=404"), "{log}");
    for secret in ["private-key", "sig=", "credential", "private-path"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}
