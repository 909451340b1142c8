//! Live HTTP: Server-Sent Events for one request (`/v1/requests/{id}/stream`) or for everything a
//! caller takes part in (`/v1/stream`), and the long poll `/v1/requests/{id}/wait`. All of them
//! wait on the in-process feed and the injected clock; none holds a database connection while
//! it waits. When the server shuts down, streams end and long polls answer at once.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use jiff::SignedDuration;
use serde_json::json;
use signoff_engine::RequestState;
use tokio::sync::broadcast::error::RecvError;

use crate::error::Problem;
use crate::feed::RequestWatch;
use crate::service::{Caller, Service};

/// A `heartbeat` event after this much silence.
pub const HEARTBEAT: SignedDuration = SignedDuration::from_secs(15);
/// The longest `/wait` a caller may ask for.
pub const MAX_WAIT: SignedDuration = SignedDuration::from_secs(600);

pub type EventStream = Sse<std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>>;

fn state_event(name: &str, state: &RequestState) -> Event {
    let data = serde_json::to_string(state).unwrap_or_default();
    Event::default().event(name).id(state.version.to_string()).data(data)
}

fn heartbeat(service: &Service) -> Event {
    Event::default().event("heartbeat").data(json!({ "at": service.now() }).to_string())
}

/// Counts a live stream or long poll in a gauge while it is open.
struct Open(&'static str);

impl Open {
    fn new(gauge: &'static str) -> Open {
        metrics::gauge!(gauge).increment(1.0);
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

const STREAMS: &str = crate::telemetry::SSE_STREAMS;
const WAITS: &str = crate::telemetry::LONG_POLLS;

struct RequestStream {
    _open: Open,
    service: Arc<Service>,
    watch: RequestWatch,
    first: Option<RequestState>,
    last_sent: u64,
    closed: bool,
}

/// The events of one request: its state now (unless the client has it: `Last-Event-ID`), after
/// every change, a heartbeat after 15 s of silence, and the end after the terminal state.
pub async fn request_stream(service: Arc<Service>, caller: &Caller, id: &str, last_event_id: Option<u64>) -> Result<EventStream, Problem> {
    let watch = service.feed().watch_request(id);
    let state = service.visible(caller, id).await?;
    let start = RequestStream { _open: Open::new(STREAMS), service, watch, first: Some(state), last_sent: last_event_id.unwrap_or(0), closed: false };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        if s.closed {
            return None;
        }
        if let Some(state) = s.first.take() {
            if state.version > s.last_sent {
                s.last_sent = state.version;
                s.closed = state.status.is_terminal();
                return Some((Ok(state_event("state", &state)), s));
            }
            if state.status.is_terminal() {
                return None;
            }
        }
        loop {
            let quiet_until = s.service.now() + HEARTBEAT;
            tokio::select! {
                changed = s.watch.changed() => match changed {
                    Some(state) if state.version > s.last_sent => {
                        s.last_sent = state.version;
                        s.closed = state.status.is_terminal();
                        return Some((Ok(state_event("state", &state)), s));
                    }
                    Some(_) => continue,
                    None => return None,
                },
                _ = s.service.clock().sleep_until(quiet_until) => {
                    let beat = heartbeat(&s.service);
                    return Some((Ok(beat), s));
                }
                // The server is shutting down: end the stream (a client resumes with
                // Last-Event-ID once the server is back).
                _ = s.service.closing() => return None,
            }
        }
    });
    Ok(Sse::new(Box::pin(stream)))
}

/// Everything `caller` takes part in: `inbox` (their open tasks) at connect, `request` with the
/// new state of any of their requests as it changes, `resync` if they fell behind (fetch the
/// inbox again), and heartbeats.
pub async fn user_stream(service: Arc<Service>, caller: &Caller) -> Result<EventStream, Problem> {
    let rx = service.feed().watch_user(&caller.id);
    let inbox = service.inbox(caller, 1000).await?;
    let first = Event::default().event("inbox").data(json!({ "items": inbox }).to_string());
    let open = Open::new(STREAMS);
    let stream = futures_util::stream::unfold((service, rx, Some(first), open), |(service, mut rx, first, open)| async move {
        if let Some(event) = first {
            return Some((Ok(event), (service, rx, None, open)));
        }
        let quiet_until = service.now() + HEARTBEAT;
        let event = tokio::select! {
            got = rx.recv() => match got {
                Ok(state) => state_event("request", &state),
                Err(RecvError::Lagged(missed)) => Event::default().event("resync").data(json!({ "missed": missed }).to_string()),
                Err(RecvError::Closed) => return None,
            },
            _ = service.clock().sleep_until(quiet_until) => heartbeat(&service),
            _ = service.closing() => return None,
        };
        Some((Ok(event), (service, rx, None, open)))
    });
    Ok(Sse::new(Box::pin(stream)))
}

/// Answers as soon as the request is closed, or after `timeout`, with the request either way.
pub async fn wait(service: &Service, caller: &Caller, id: &str, timeout: SignedDuration) -> Result<RequestState, Problem> {
    let mut watch = service.feed().watch_request(id);
    let state = service.visible(caller, id).await?;
    if state.status.is_terminal() {
        return Ok(state);
    }
    let _open = Open::new(WAITS);
    let deadline = service.now() + timeout;
    loop {
        tokio::select! {
            changed = watch.changed() => match changed {
                Some(s) if s.status.is_terminal() => return Ok(RequestState::clone(&s)),
                Some(_) => continue,
                None => break,
            },
            _ = service.clock().sleep_until(deadline) => {
                if service.now() >= deadline {
                    break;
                }
            }
            // The server is shutting down: answer now, with the request as it is.
            _ = service.closing() => break,
        }
    }
    service.visible(caller, id).await
}
