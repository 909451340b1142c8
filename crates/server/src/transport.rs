//! The HTTP/1.1 transport under the router: it accepts connections up to a cap, serves each with
//! hyper under a deadline for every request head, rewrites the bare answers hyper gives on its
//! own (a malformed request line, a head too large) as problem+json like every other error,
//! and on shutdown stops accepting, lets calls in flight finish and closes what is left after a
//! bounded grace period. Request bodies are read, bounded and drained by `http::read_body`.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use signoff_engine::Code;
use tokio::net::{TcpListener, TcpStream};

use crate::error::Problem;

/// What the transport allows each client; every field is configurable (`signoff serve --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection must deliver a complete request head within this time of opening, and of
    /// the end of its previous response: so it is also how long an idle keep-alive connection
    /// stays open. Not restarted by each byte, so a head sent a byte at a time cannot hold a
    /// connection longer.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this time of its head (408 otherwise).
    pub body_timeout: Duration,
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Bodies above this size are refused with 413 `too_large`.
    pub max_body_bytes: usize,
    /// How much of a refused body is read and thrown away before the 413 is sent, so that a
    /// client that writes its whole body before reading gets the answer (as nginx lingers):
    /// at most this many bytes, for at most `drain_time`. Past either the connection is closed.
    pub drain_bytes: usize,
    pub drain_time: Duration,
    /// On shutdown, how long calls in flight may take to finish before their connections are
    /// closed.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_body_bytes: 1024 * 1024,
            drain_bytes: 32 * 1024 * 1024,
            drain_time: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The longest request target (path and query) the router is handed; longer is 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The largest request head (all header lines) the router is handed; larger is 431.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// hyper's own read buffer for a head: beyond it hyper answers 431 itself (rewritten here).
const HYPER_HEAD_BUFFER: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets calls in
/// flight finish (live streams and long polls end on the service's own shutdown signal) and
/// returns at the latest `limits.shutdown_grace` later.
pub async fn serve(router: Router, listener: TcpListener, limits: Limits, tls: Option<Arc<crate::tls::Tls>>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Connections over the cap are answered by at most this many tasks at once; beyond them a
    // connection is closed unanswered, so a flood cannot turn refusals into a descriptor leak.
    let refusals = Arc::new(tokio::sync::Semaphore::new(64));
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::error!(error = %e, "cannot accept connections; retrying in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let (router, closed) = (router.clone(), closed.clone());
                // Each connection takes the certificates in force when it arrives (a reload
                // changes later ones only).
                let tls = tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.current()));
                connections.spawn(async move {
                    match tls {
                        None => connection(stream, peer, router, limits, closed).await,
                        Some(acceptor) => {
                            // The handshake counts against the time to send a request head.
                            match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => connection(stream, peer, router, limits, closed).await,
                                Ok(Err(e)) => {
                                    metrics::counter!(crate::telemetry::TLS_HANDSHAKE_FAILURES).increment(1);
                                    tracing::debug!(address = %peer.ip(), error = %e, "TLS handshake failed");
                                }
                                Err(_) => metrics::counter!(crate::telemetry::TLS_HANDSHAKE_FAILURES).increment(1),
                            }
                        }
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                metrics::counter!(crate::telemetry::CONNECTIONS_REFUSED).increment(1);
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    connections.spawn(async move {
                        refuse(stream, limits.max_connections).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "closing connections still busy after the shutdown grace period");
        connections.abort_all();
    }
    Ok(())
}

/// Errors of one connection that say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}

/// The address a connection came from, in each of its requests' extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

async fn connection<S>(stream: S, peer: std::net::SocketAddr, router: Router, limits: Limits, mut closed: tokio::sync::watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(ProblemIo::new(stream));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(HYPER_HEAD_BUFFER)
        .keep_alive(true);
    let service = tower::ServiceExt::map_request(router, move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        req
    });
    let conn = builder.serve_connection(io, TowerToHyperService::new(service));
    let mut conn = pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { drop(closed.wait_for(|c| *c).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream, cap: usize) {
    let problem = Problem::new(Code::Busy, format!("the server has {cap} connections open, its limit; retry shortly")).retry_after(1);
    let body = problem.body().to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes (a little, briefly): closing with unread
        // bytes would reset the connection and could lose the answer.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let n = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// A connection whose bare error answers from hyper (written when it cannot parse a request:
/// a head with no body and no content type) leave as problem+json instead. Every answer of the
/// router carries a content type, so only hyper's own are touched.
struct ProblemIo<S> {
    inner: S,
    /// A rewritten answer still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> ProblemIo<S> {
    fn new(inner: S) -> Self {
        ProblemIo { inner, pending: None }
    }
}

impl<S: AsyncWrite + Unpin> ProblemIo<S> {
    fn flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.pending {
            if *sent == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> ProblemIo<S> {
    /// Writes `answer` in place of the `written` bytes hyper handed over (reported as written).
    fn answer_instead(&mut self, cx: &mut Context<'_>, answer: Vec<u8>, written: usize) -> Poll<io::Result<usize>> {
        self.pending = Some((answer, 0));
        if let Poll::Ready(Err(e)) = self.flush_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(written))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.flush_pending(cx))?;
        if let Some(answer) = problem_for_bare_error(buf) {
            return self.answer_instead(cx, answer, buf.len());
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        ready!(self.flush_pending(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && let Some(answer) = problem_for_bare_error(only)
        {
            return self.answer_instead(cx, answer, only.len());
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.flush_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.flush_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// If `written` is a whole bare error head (status 4xx or 5xx, `content-length: 0`, no content
/// type), the same answer as problem+json.
fn problem_for_bare_error(written: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(written).ok()?;
    let head = head.strip_suffix("\r\n\r\n").filter(|h| !h.contains("\r\n\r\n"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = status_line.strip_prefix("HTTP/1.1 ").or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !(400..600).contains(&status) {
        return None;
    }
    let headers: Vec<&str> = lines.collect();
    let named = |h: &str, name: &str| h.len() > name.len() && h[..name.len()].eq_ignore_ascii_case(name) && h.as_bytes()[name.len()] == b':';
    if headers.iter().any(|h| named(h, "content-type")) || !headers.iter().any(|h| named(h, "content-length") && h.ends_with(" 0")) {
        return None;
    }
    let (code, detail) = match status {
        414 => (Code::UriTooLong, format!("the request target is longer than {MAX_URI_BYTES} bytes")),
        431 => (Code::HeadersTooLarge, format!("the request head is larger than {MAX_HEAD_BYTES} bytes or has too many header lines")),
        _ => (Code::MalformedRequest, "the request is not valid HTTP/1.1 (request line or headers)".to_string()),
    };
    let body = Problem::new(code, detail).body().to_string();
    let mut out = String::with_capacity(head.len() + body.len() + 96);
    out.push_str(status_line);
    out.push_str("\r\ncontent-type: application/problem+json\r\n");
    out.push_str(&format!("content-length: {}\r\n", body.len()));
    for h in headers.iter().filter(|h| !named(h, "content-length") && !named(h, "connection")) {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::problem_for_bare_error;

    #[test]
    fn only_bare_error_heads_are_rewritten() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 08:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(problem_for_bare_error(bare).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{head}");
        assert!(head.contains("content-type: application/problem+json") && head.contains("date: Tue"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(431), Some("headers_too_large")));
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n";
        assert!(problem_for_bare_error(ours).is_none());
        assert!(problem_for_bare_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(problem_for_bare_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nbody").is_none());
        assert!(problem_for_bare_error(b"{\"json\": 1}").is_none());
    }
}
