//! Serving a router on a listener until a shutdown future completes, with a bounded grace
//! period and [`ConnectionLimits`]. The caller brings the listener and the signal (see
//! `server::cli` for the binaries').
//!
//! `axum::serve` sets no header-read or idle timeout, so a client that sends half a request
//! and waits would hold its connection (and a file descriptor) forever. Here the server
//! accepts connections itself and serves each with hyper's HTTP/1 connection (as axum's
//! `serve-with-hyper` example does), with a watchdog per connection:
//! - **header read**: a new connection must deliver its first request's headers within
//!   [`ConnectionLimits::header_read_timeout`]; on a kept-alive connection the clock starts at
//!   the next request's first byte;
//! - **idle**: a kept-alive connection with no request in flight and no byte of a next request
//!   is closed after [`ConnectionLimits::idle_timeout`];
//! - **stalled body**: each read of a request body waits at most
//!   [`ConnectionLimits::body_read_timeout`] for the next bytes, then fails with
//!   [`std::io::ErrorKind::TimedOut`] (the handler sees a body error; what it was storing is
//!   discarded, and the connection is closed after the answer);
//! - **cap**: at most [`ConnectionLimits::max_connections`] connections are served at once.
//!   When all are in use the server stops accepting: new clients wait in the kernel's listen
//!   backlog (holding no descriptor of ours) and are served in arrival order as connections
//!   close, which the timeouts above guarantee. So a burst of stalled clients delays
//!   `/health` by at most the header timeout instead of stopping it (the alternative,
//!   accepting and closing at once, would refuse every new client while the burst lasts).
//!
//! While a request is in flight (a handler running, a response streaming: an event stream, a
//! long poll, a download) none of the connection timeouts apply; JSON routes have their own
//! `TimeoutLayer`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::rt::{BoxFuture, Instant};

/// How long [`serve`] lets in-flight requests finish after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Per-connection limits; each field says what it cuts. [`serve_with_config`] applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a request's headers: from accepting the connection, or on a
    /// kept-alive connection from the request's first byte. Default 10 s: headers are a few
    /// hundred bytes, so any client, even on a poor link, sends them in well under that, and a
    /// short wait frees a stalled client's slot quickly.
    pub header_read_timeout: Duration,
    /// Longest a kept-alive connection may wait, idle, for its next request. Default 60 s:
    /// longer than the clients' usual gap between requests (a relay long poll returns within
    /// 30 s), so they keep reusing their connection, and shorter than nginx's 75 s.
    pub idle_timeout: Duration,
    /// Longest wait for the next bytes of a request body that is being read. Default 30 s:
    /// a live upload delivers bytes far more often, even on a slow link; a stalled one is cut
    /// and its partial object discarded.
    pub body_read_timeout: Duration,
    /// Connections served at once; more wait to be accepted. Default 512: half the common
    /// 1024 soft limit on open files, because a connection may hold a second descriptor (a
    /// file being stored or read, or a connection to S3). 0 counts as 1.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The defaults (10 s, 60 s, 30 s, 512 connections; reasons on each field).
    pub const DEFAULT: Self = Self {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        body_read_timeout: Duration::from_secs(30),
        max_connections: 512,
    };
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How [`serve_with_config`] serves: the connection limits and the shutdown grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Timeouts and the connection cap.
    pub limits: ConnectionLimits,
    /// How long in-flight requests may finish after the shutdown signal.
    pub grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            limits: ConnectionLimits::DEFAULT,
            grace: SHUTDOWN_GRACE,
        }
    }
}

/// Serve `app` on `listener` with the default [`ServeConfig`] until `shutdown` completes: no
/// new connections are accepted, and in-flight requests get [`SHUTDOWN_GRACE`] to finish. If
/// connections are still open then (an event stream never ends by itself; a long-poll may wait
/// 30 s), they are closed and `serve` returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_config(listener, app, shutdown, ServeConfig::default()).await
}

/// [`serve`] with another grace period.
pub async fn serve_with_grace(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let config = ServeConfig {
        grace,
        ..ServeConfig::default()
    };
    serve_with_config(listener, app, shutdown, config).await
}

/// [`serve`] with these limits and grace period.
pub async fn serve_with_config(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    config: ServeConfig,
) -> std::io::Result<()> {
    let ServeConfig { limits, grace } = config;
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Dropped at shutdown: every connection then finishes its request and closes.
    let (stop, stopped) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut last_full_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        if slots.available_permits() == 0
            && last_full_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            last_full_warning = Some(Instant::now());
            tracing::warn!(
                max_connections = limits.max_connections,
                "all connections in use: new clients wait to be accepted"
            );
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to close (as axum does).
                    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
                    tokio::select! {
                        () = crate::rt::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let (app, limits, stopped) = (app.clone(), limits.clone(), stopped.clone());
        connections.spawn(async move {
            serve_connection(stream, app, &limits, stopped).await;
            drop(slot);
        });
    }
    drop(listener);
    drop(stop);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs_f64(),
            open = connections.len(),
            "connections still open after the grace period (event streams, long polls): closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Errors of one connection attempt that say nothing about the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serve one connection until it ends, a [`ConnectionLimits`] timeout cuts it, or (after
/// `stopped` fires) its last request is answered.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: &ConnectionLimits,
    mut stopped: watch::Receiver<()>,
) {
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = ConnectionService {
        app,
        activity: activity.clone(),
        body_read_timeout: limits.body_read_timeout,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Header and idle timeouts are ours (hyper's one timer cannot tell them apart).
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            reason = activity.expired(limits) => {
                tracing::debug!(reason, "closing a connection");
                return;
            }
            _ = stopped.changed(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// What a connection is doing, for its watchdog.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
    /// Set when the connection turns idle after a response: the next byte read starts a
    /// request (and its header timeout).
    awaiting_first_byte: AtomicBool,
}

#[derive(Debug)]
struct Phase {
    /// Requests whose response has not been sent yet.
    in_flight: usize,
    /// When the current wait began: accepting, the last response, or a request's first byte.
    since: Instant,
    /// Whether a request has begun arriving since the connection turned idle.
    head_started: bool,
    /// Whether any request was answered (after one, an empty wait is idle keep-alive).
    served: bool,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase {
                in_flight: 0,
                since: Instant::now(),
                head_started: false,
                served: false,
            }),
            changed: Notify::new(),
            awaiting_first_byte: AtomicBool::new(false),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes arrived from the client.
    fn read_some(&self) {
        if self.awaiting_first_byte.swap(false, Ordering::Relaxed) {
            {
                let mut phase = self.phase();
                if phase.in_flight == 0 && !phase.head_started {
                    phase.head_started = true;
                    phase.since = Instant::now();
                }
            }
            self.changed.notify_waiters();
        }
    }

    /// A request's headers were read; it is in flight until the guard drops (after its
    /// response's last byte, or when it is abandoned).
    fn begin(self: &Arc<Self>) -> InFlight {
        {
            let mut phase = self.phase();
            phase.in_flight += 1;
            phase.head_started = false;
        }
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    fn end(&self) {
        {
            let mut phase = self.phase();
            phase.in_flight = phase.in_flight.saturating_sub(1);
            if phase.in_flight == 0 {
                phase.since = Instant::now();
                phase.head_started = false;
                phase.served = true;
                self.awaiting_first_byte.store(true, Ordering::Relaxed);
            }
        }
        self.changed.notify_waiters();
    }

    /// The current deadline and which limit it is, or none while a request is in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, &'static str)> {
        let phase = self.phase();
        if phase.in_flight > 0 {
            None
        } else if !phase.served || phase.head_started {
            Some((
                phase.since + limits.header_read_timeout,
                "request headers not received in time",
            ))
        } else {
            Some((phase.since + limits.idle_timeout, "idle keep-alive timeout"))
        }
    }

    /// Completes (with the reason) when the connection passes its current deadline.
    async fn expired(&self, limits: &ConnectionLimits) -> &'static str {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deadline(limits) {
                None => changed.await,
                Some((deadline, reason)) => {
                    let now = Instant::now();
                    if deadline <= now {
                        return reason;
                    }
                    tokio::select! {
                        () = changed => {}
                        () = crate::rt::sleep(deadline - now) => {}
                    }
                }
            }
        }
    }
}

/// Marks a request in flight while alive.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The client's socket, reporting reads to the connection's [`Activity`].
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router for one connection: request bodies get the stall timeout, and each request is
/// in flight until its response is sent.
struct ConnectionService {
    app: Router,
    activity: Arc<Activity>,
    body_read_timeout: Duration,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = hyper::Response<Tracked>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let guard = self.activity.begin();
        let timeout = self.body_read_timeout;
        let req = req.map(|body| Body::new(StallTimeout::new(body, timeout)));
        let response = tower::ServiceExt::oneshot(self.app.clone(), req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Tracked {
                body,
                _in_flight: guard,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is dropped (hyper drops it after
/// the last frame, or when the connection ends).
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body whose every read waits at most `timeout` for the client's next bytes.
struct StallTimeout<B> {
    body: B,
    timeout: Duration,
    /// Running while the body waits for the client.
    timer: Option<BoxFuture<'static, ()>>,
}

impl<B> StallTimeout<B> {
    fn new(body: B, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            timer: None,
        }
    }
}

impl<B> HttpBody for StallTimeout<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(crate::rt::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timer = None;
                Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the request body stalled: no bytes for {} s",
                        timeout.as_secs_f64()
                    ),
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
