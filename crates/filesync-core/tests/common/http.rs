//! Servers in tests: a router served on a loopback port until stopped, token grants, requests
//! with or without a bearer token, and sending one over real HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use filesync_core::rt::Task;
use filesync_core::server::{RouterConfig, Secret, TokenGrant, serve_with_grace};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A router served on `127.0.0.1` in the background. Dropping it (or [`Served::shutdown`])
/// starts a graceful shutdown.
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Task,
}

impl Served {
    /// `http://<addr>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://<addr>/api`, the contract's base URL.
    pub fn api(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Signal the shutdown (without waiting for it).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
    }

    /// Wait until the server has returned.
    pub async fn join(self) {
        self.task.join().await;
    }

    /// Shut down and wait until the server has returned.
    pub async fn stop(mut self) {
        self.shutdown();
        self.join().await;
    }
}

/// Bind `127.0.0.1:port` (`0`: a free port).
pub async fn listen(port: u16) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// An address on loopback where nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    listen(0).await.1
}

/// Serve `app` on a free loopback port with `filesync_core::server::serve`.
pub async fn serve_app(app: Router) -> Served {
    serve_on(0, app, filesync_core::server::SHUTDOWN_GRACE).await
}

/// Serve `app` on `127.0.0.1:port` (`0`: a free port), with `grace` for in-flight requests
/// after the shutdown signal.
pub async fn serve_on(port: u16, app: Router, grace: Duration) -> Served {
    serve_listener(listen(port).await.0, app, grace)
}

/// Serve `app` on `listener` (bound by the caller, who needed its address first), with
/// `grace` for in-flight requests after the shutdown signal.
pub fn serve_listener(listener: TcpListener, app: Router, grace: Duration) -> Served {
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = filesync_core::rt::spawn(async move {
        serve_with_grace(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            grace,
        )
        .await
        .unwrap();
    });
    Served {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Router settings with these tokens, each with its key (or store) prefixes.
pub fn grants(tokens: &[(&str, &[&str])]) -> RouterConfig {
    RouterConfig {
        tokens: tokens
            .iter()
            .map(|(token, prefixes)| TokenGrant {
                token: Secret::new(*token),
                prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            })
            .collect(),
        ..RouterConfig::default()
    }
}

/// A `GET` of `path`, with `Authorization: Bearer <token>` when there is a token.
pub fn get(path: &str, token: Option<&str>) -> Request<Body> {
    bearer(Request::get(path), token)
        .body(Body::empty())
        .unwrap()
}

/// A JSON `POST` of `body` to `path`, with `Authorization: Bearer <token>` when there is a
/// token.
pub fn post(path: &str, token: Option<&str>, body: impl Into<String>) -> Request<Body> {
    bearer(
        Request::post(path).header("content-type", "application/json"),
        token,
    )
    .body(Body::from(body.into()))
    .unwrap()
}

fn bearer(b: axum::http::request::Builder, token: Option<&str>) -> axum::http::request::Builder {
    match token {
        Some(t) => b.header("authorization", format!("Bearer {t}")),
        None => b,
    }
}

/// Send `req` (its URI a path) to the server at `base` over real HTTP: the status and the body.
pub async fn send(base: &str, req: Request<Body>) -> (StatusCode, String) {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let resp = reqwest::Client::new()
        .request(parts.method, format!("{base}{}", parts.uri))
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, text)
}
