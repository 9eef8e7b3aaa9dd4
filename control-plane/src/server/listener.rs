//! Accepting connections for `serve` so that clients cannot exhaust the
//! process: at most `max_connections` open at once (one more is answered 503
//! and closed at once, and the cap is lowered to fit the open-file limit), a
//! deadline for every request head, idle connections closed, a connection
//! whose response write makes no progress dropped, and a graceful shutdown
//! that lets requests in flight finish.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// How connections are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// A request head must arrive complete within this, counted from the
    /// connection's opening or from the end of the previous response.
    pub header_read_timeout: Duration,
    /// A connection on which nothing is sent or received for this long is
    /// closed (once its request in flight, if any, is answered).
    pub keep_alive_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// A response write that makes no progress for this long (the client
    /// reads nothing: say it pipelines requests with a zero receive window)
    /// gets the connection dropped, freeing its slot.
    pub stalled_write_timeout: Duration,
}

/// The address a connection came from, set on every request it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Descriptors kept for everything but connections: at least 64, or a quarter
/// of the limit (the state store, DuckDB files, job logs, locks).
fn reserved_descriptors(limit: u64) -> u64 {
    (limit / 4).max(64)
}

/// `configured`, lowered so that connections leave descriptors for the rest
/// of the process under an open-file limit of `limit` (`None`: unlimited).
pub fn max_connections_within(configured: usize, limit: Option<u64>) -> usize {
    match limit {
        None => configured.max(1),
        Some(limit) => {
            let room = limit.saturating_sub(reserved_descriptors(limit));
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            configured.min(room).max(1)
        }
    }
}

/// The process's soft open-file limit, `None` when unlimited.
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// What a connection beyond the cap gets before it is closed.
fn refusal() -> Vec<u8> {
    let body = serde_json::json!({
        "code": "too_many_connections",
        "message": "the service has too many open connections; try again shortly",
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting,
/// closes idle connections and waits up to `shutdown_grace` for the rest.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let fd_limit = open_file_limit();
    let max = max_connections_within(limits.max_connections, fd_limit);
    if max < limits.max_connections {
        tracing::info!(
            configured = limits.max_connections,
            max,
            open_file_limit = fd_limit,
            "connection cap lowered to fit the open-file limit"
        );
    }
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let refusal = refusal();
    let mut refused = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Answered without reading anything, then closed (best effort).
            let _ = stream.try_write(&refusal);
            refused.note(max);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_one(
            stream,
            // Rate limits per client need the address the connection came from.
            app.clone().layer(axum::Extension(ClientAddr(peer.ip()))),
            http.clone(),
            limits,
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds its slot until it ends.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = max.saturating_sub(slots.available_permits()),
            "connections still open after the shutdown grace period"
        );
    }
    Ok(())
}

/// A failed accept: out of descriptors (the connection waits in the backlog,
/// so pause rather than spin) or a connection that died before being accepted.
async fn accept_failed(e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => {}
        _ => {
            tracing::warn!(error = %e, "cannot accept a connection");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Refusals logged at most every ten seconds, with their count.
#[derive(Default)]
struct Refusals {
    since_logged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, max: usize) {
        self.since_logged += 1;
        let due = self
            .logged_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                max_connections = max,
                refused = self.since_logged,
                "connections refused: the connection cap is reached"
            );
            self.since_logged = 0;
            self.logged_at = Some(Instant::now());
        }
    }
}

/// One connection: HTTP/1.1 until the client or a timeout ends it, or the
/// server stops.
async fn serve_one(
    stream: TcpStream,
    app: Router,
    http: http1::Builder,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let conn = http.serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(conn);
    // A graceful shutdown waits for the response in flight to be written,
    // which a client that never reads can put off for ever; so once closing
    // the connection has a hard deadline: time for the request in flight
    // (answered within `shutdown_grace` at most) and for its answer to be
    // written. Past it, dropping `conn` closes the socket.
    let close_grace = limits
        .shutdown_grace
        .saturating_add(limits.stalled_write_timeout);
    let mut close_by: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // Closing or not, a write that makes no progress would hold the
            // slot for as long as the client likes.
            () = activity.write_stalled_for(limits.stalled_write_timeout) => {
                tracing::debug!("connection dropped: its response write made no progress");
                return;
            }
            () = sleep_until_some(close_by) => {
                tracing::debug!("connection dropped: still open past its closing deadline");
                return;
            }
            () = activity.idle_for(limits.keep_alive_timeout), if close_by.is_none() => {
                // Closes at once when idle, else after the request in flight.
                conn.as_mut().graceful_shutdown();
                close_by = Some(tokio::time::Instant::now() + close_grace);
            }
            _ = stopping.wait_for(|stop| *stop), if close_by.is_none() => {
                conn.as_mut().graceful_shutdown();
                close_by = Some(tokio::time::Instant::now() + close_grace);
            }
        }
    }
}

/// Resolves at `at`, never when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `Activity::write_blocked` when no write is blocked.
const NOT_BLOCKED: u64 = u64::MAX;

/// When a connection last sent or received a byte, and since when a write
/// has been waiting for room in the socket.
#[derive(Clone)]
struct Activity {
    origin: tokio::time::Instant,
    /// Milliseconds since `origin`.
    last: Arc<AtomicU64>,
    /// Milliseconds since `origin` at which a write first found the socket
    /// full, with no write progress since; `NOT_BLOCKED` otherwise.
    write_blocked: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: tokio::time::Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
            write_blocked: Arc::new(AtomicU64::new(NOT_BLOCKED)),
        }
    }

    fn now_millis(&self) -> u64 {
        // Below NOT_BLOCKED: an elapsed time never reaches it.
        u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .min(NOT_BLOCKED - 1)
    }

    fn touch(&self) {
        self.last.store(self.now_millis(), Ordering::Relaxed);
    }

    /// A write made progress.
    fn wrote(&self) {
        self.touch();
        self.write_blocked.store(NOT_BLOCKED, Ordering::Relaxed);
    }

    /// A write found no room; the first such since the last progress counts.
    fn write_pending(&self) {
        let _ = self.write_blocked.compare_exchange(
            NOT_BLOCKED,
            self.now_millis(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn write_blocked_since(&self) -> Option<tokio::time::Instant> {
        match self.write_blocked.load(Ordering::Relaxed) {
            NOT_BLOCKED => None,
            at => Some(self.origin + Duration::from_millis(at)),
        }
    }

    /// Resolves once a write has been blocked, without progress, for `limit`.
    async fn write_stalled_for(&self, limit: Duration) {
        loop {
            match self.write_blocked_since() {
                // Looked at again after `limit`: a write blocked in between
                // is then waited for until exactly `limit` after it blocked.
                None => tokio::time::sleep(limit).await,
                Some(since) => {
                    tokio::time::sleep_until(since + limit).await;
                    if self.write_blocked_since() == Some(since) {
                        return;
                    }
                }
            }
        }
    }

    fn last(&self) -> tokio::time::Instant {
        self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Resolves once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.last();
            tokio::time::sleep_until(last + limit).await;
            if self.last() <= last {
                return;
            }
        }
    }
}

/// A stream that notes its activity.
struct Watched<T> {
    inner: T,
    activity: Activity,
}

impl<T> Watched<T> {
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(),
            Poll::Pending => self.activity.write_pending(),
            _ => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_of_the_process() {
        assert_eq!(max_connections_within(1024, None), 1024);
        assert_eq!(max_connections_within(1024, Some(256)), 192);
        assert_eq!(max_connections_within(1024, Some(1024)), 768);
        assert_eq!(max_connections_within(1024, Some(1 << 20)), 1024);
        assert_eq!(max_connections_within(100, Some(256)), 100);
        assert_eq!(max_connections_within(1024, Some(10)), 1);
        assert_eq!(max_connections_within(0, None), 1);
    }

    #[test]
    fn the_refusal_is_a_complete_http_answer() {
        let bytes = refusal();
        let text = std::str::from_utf8(&bytes).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(json["code"], "too_many_connections");
    }

    #[tokio::test]
    async fn idle_for_waits_for_a_quiet_period() {
        let activity = Activity::new();
        let started = tokio::time::Instant::now();
        let toucher = {
            let activity = activity.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    activity.touch();
                }
            })
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            activity.idle_for(Duration::from_millis(250)),
        )
        .await
        .expect("quiet at last");
        let _ = toucher.await;
        // The last touch was at 0.3 s; quiet for 0.25 s after it.
        assert!(
            started.elapsed() >= Duration::from_millis(540),
            "{:?}",
            started.elapsed()
        );
    }
}
