//! Serving HTTP/1.1 with bounds, so that no client can hold more than its own connection:
//! a cap on open connections (one past it is closed at once and counted), a deadline for the
//! request head (which also closes a keep-alive connection left idle that long), a deadline for
//! the TLS handshake, a deadline for a client that stops reading its response, and a limit on
//! header size. A body that stops arriving is the handler's to time out (it knows how long a
//! body may pause). Each connection runs in its own task and no thread ever waits on its
//! socket; on shutdown the listener stops accepting and open connections finish their request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; one more is closed on accept.
    pub max_connections: usize,
    /// A request head (or the next one on a kept-alive connection) must arrive within this.
    pub header_timeout: Duration,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// A response that cannot be written for this long (the client stopped reading) ends the
    /// connection.
    pub write_stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            write_stall_timeout: Duration::from_secs(60),
        }
    }
}

/// What a listener reports; register these in the process's registry.
#[derive(Debug, Clone, Default)]
pub struct ListenerMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections closed on accept because the cap was reached.
    pub refused: Counter,
    /// TLS handshakes that failed or ran out of time.
    pub handshake_failures: Counter,
}

impl ListenerMetrics {
    /// Registers the metrics as `{name}_connections_open`, `{name}_connections_refused_total`
    /// and `{name}_tls_handshake_failures_total`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry, name: &str) {
        registry.register(
            format!("{name}_connections_open"),
            "Connections open on the listener",
            self.open.clone(),
        );
        registry.register(
            format!("{name}_connections_refused"),
            "Connections closed on accept because the listener's cap was reached",
            self.refused.clone(),
        );
        registry.register(
            format!("{name}_tls_handshake_failures"),
            "TLS handshakes that failed or ran out of time",
            self.handshake_failures.clone(),
        );
    }
}

/// Serves `service` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting and waits (at most `drain`) for open connections to finish their request. With
/// `tls`, connections are HTTPS.
#[allow(clippy::too_many_arguments)]
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: ListenerMetrics,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.refused.inc();
            tracing::debug!(%peer, "connection refused: too many open connections");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_header_size(limits.max_header_bytes);
        let service = service.clone();
        let tls = tls.clone();
        let metrics = metrics.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            metrics.open.inc();
            let served = match tls {
                None => {
                    let socket = WriteStall::new(socket, limits.write_stall_timeout);
                    let conn = http.serve_connection(TokioIo::new(socket), service);
                    watcher.watch(conn).await
                }
                // The handshake runs in the connection's task, so a slow client holds up no one.
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(socket))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            let stream = WriteStall::new(stream, limits.write_stall_timeout);
                            let conn = http.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn).await
                        }
                        Ok(Err(e)) => {
                            metrics.handshake_failures.inc();
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            metrics.handshake_failures.inc();
                            tracing::debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            metrics.open.dec();
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after the drain period; leaving them");
    }
    Ok(())
}

/// A connection whose writes fail with `TimedOut` once one has waited `limit` (the peer
/// stopped reading): hyper has no write timeout of its own.
struct WriteStall<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteStall<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// A write's outcome, failed with `TimedOut` once it has been pending for the limit.
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer stopped reading",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Forwarded, or hyper sees a stream without vectored writes and copies every body chunk
    // into its own buffer before writing it.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// [`serve`] for an axum router.
pub async fn serve_router(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    metrics: ListenerMetrics,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let service = hyper_util::service::TowerToHyperService::new(router);
    serve(
        listener,
        service,
        limits,
        None,
        metrics,
        shutdown,
        Duration::from_secs(10),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (std::net::SocketAddr, ListenerMetrics) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = ListenerMetrics::default();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let m = metrics.clone();
        tokio::spawn(serve_router(
            listener,
            router,
            limits,
            m,
            std::future::pending(),
        ));
        (addr, metrics)
    }

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        out
    }

    #[tokio::test]
    async fn half_sent_heads_are_closed_after_the_deadline_and_others_are_served() {
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, metrics) = start(limits).await;
        let mut stalled = Vec::new();
        for _ in 0..50 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
            stalled.push(s);
        }
        assert!(get(addr).await.ends_with("ok"));
        // Every stalled connection is closed by the server (read returns 0 or an error).
        for mut s in stalled {
            let mut buf = [0u8; 512];
            let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            assert!(matches!(r, Ok(Ok(_)) | Ok(Err(_))), "still open");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(metrics.open.get(), 0);
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_loses_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = ListenerMetrics::default();
        // 64 MiB answers: far more than the socket buffers hold.
        let router =
            axum::Router::new().route("/big", axum::routing::get(|| async { vec![7u8; 64 << 20] }));
        let limits = Limits {
            write_stall_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        tokio::spawn(serve_router(
            listener,
            router,
            limits,
            metrics.clone(),
            std::future::pending(),
        ));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(metrics.open.get(), 1);
        // Not reading: the server gives up on the connection after the stall timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while metrics.open.get() > 0 {
            assert!(std::time::Instant::now() < deadline, "still open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(s);
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_at_once() {
        let limits = Limits {
            max_connections: 3,
            ..Limits::default()
        };
        let (addr, metrics) = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The fourth gets no answer: closed on accept.
        assert_eq!(get(addr).await, "");
        assert_eq!(metrics.refused.get(), 1);
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(get(addr).await.ends_with("ok"));
    }
}
