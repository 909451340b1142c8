//! Reading request bodies before routing: bounded in size and time, and drained when refused.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use signoff_engine::Code;

use super::{AppState, closing};
use crate::error::Problem;

/// Before routing: checks the size of the request target (414) and head (431), and reads the
/// body whole: at most `max_body_bytes` (413 `too_large`), within `body_timeout` (408
/// `request_timeout`). A refused body is drained first, within bounds, so that a client that
/// writes its whole body before reading still gets the 413.
pub(super) async fn read_body(State(s): State<AppState>, req: Request, next: Next) -> Response {
    use crate::transport::{MAX_HEAD_BYTES, MAX_URI_BYTES};
    use futures_util::StreamExt;
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return closing(Problem::new(Code::UriTooLong, format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are allowed")));
    }
    let head: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if head > MAX_HEAD_BYTES {
        return closing(Problem::new(Code::HeadersTooLarge, format!("the request headers are {head} bytes; at most {MAX_HEAD_BYTES} are allowed")));
    }
    if axum::body::HttpBody::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let limits = *s.limits();
    let (parts, body) = req.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large = || closing(Problem::new(Code::TooLarge, format!("the body is larger than {} bytes", limits.max_body_bytes)));
    let mut chunks = body.into_data_stream();
    let started = tokio::time::Instant::now();
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        // A client waiting for `100 Continue` has sent nothing yet: reading would invite the body.
        let waits_to_send = parts.headers.contains_key(header::EXPECT);
        if !waits_to_send && declared.is_some_and(|n| n <= limits.drain_bytes as u64) {
            drain(&mut chunks, 0, &limits, started).await;
        }
        return too_large();
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let deadline = started + limits.body_timeout;
    loop {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Err(_) => {
                return closing(Problem::new(Code::RequestTimeout, format!("the body did not arrive within {:?}", limits.body_timeout)));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return closing(Problem::bad_parameter(format!("the body could not be read: {e}"))),
            Ok(Some(Ok(chunk))) => {
                if bytes.len() + chunk.len() > limits.max_body_bytes {
                    drain(&mut chunks, bytes.len() + chunk.len(), &limits, started).await;
                    return too_large();
                }
                bytes.extend_from_slice(&chunk);
            }
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// Reads and throws away what is left of a refused body, up to `drain_bytes` in all (counting
/// the `read` bytes already read) and until `drain_time` after `started`.
async fn drain(chunks: &mut axum::body::BodyDataStream, mut read: usize, limits: &crate::transport::Limits, started: tokio::time::Instant) {
    use futures_util::StreamExt;
    let deadline = started + limits.drain_time;
    while read <= limits.drain_bytes {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            _ => return,
        }
    }
}
