//! What a notification channel is: one implementation of `Channel` (what it sends for a
//! commit's events, and how it delivers one message), what an attempt comes to (`Delivery`),
//! and the request's summary every message carries. `notify::Channels` registers the
//! implementations; a new channel is one file and one line there.

use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use signoff_engine::{Directory, Event, Policy, RequestState};
use signoff_store::{Notification, Outgoing, Store};


/// What a delivery may use besides its channel's settings.
pub struct Outbound<'a> {
    /// The HTTP client every delivery shares (its connection pool).
    pub http: &'a reqwest::Client,
    /// The store, for messages that follow up earlier ones (Slack updates and threads).
    pub store: &'a dyn Store,
}

#[async_trait]
pub trait Channel: Send + Sync {
    /// The channel's name, as outbox rows record it (`webhook`, `slack`, `email`).
    fn name(&self) -> &'static str;

    /// Whether it is configured to send anything.
    fn is_active(&self) -> bool;

    /// The outbox rows a commit's `events` call for. Pure: they are written in the same
    /// transaction as the events.
    fn plan(&self, policy: &Policy, dir: &Directory, events: &[Event], state: &RequestState) -> Vec<Outgoing>;

    /// One attempt to deliver `n` at `now`.
    async fn deliver(&self, out: &Outbound<'_>, n: &Notification, now: Timestamp) -> Delivery;
}

/// A receiver gets this long to answer.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// What one attempt came to.
#[derive(Debug)]
pub enum Delivery {
    Delivered { status: Option<u16>, result: Option<Value> },
    Failed { status: Option<u16>, error: String, retry_after: Option<SignedDuration>, permanent: bool },
    /// Not attempted: what it depends on is not delivered yet.
    NotYet { until: Timestamp },
}

impl Delivery {
    pub fn fail(status: Option<u16>, error: impl Into<String>) -> Delivery {
        Delivery::Failed { status, error: error.into(), retry_after: None, permanent: false }
    }

    /// An HTTP exchange at `now`: 2xx delivered; anything else failed, with `Retry-After` kept.
    pub async fn from_http(sent: Result<reqwest::Response, reqwest::Error>, now: Timestamp) -> Delivery {
        match sent {
            Err(e) => Delivery::fail(None, format!("no answer: {e}")),
            Ok(resp) if resp.status().is_success() => {
                Delivery::Delivered { status: Some(resp.status().as_u16()), result: None }
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| parse_retry_after(v, now));
                let body: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
                Delivery::Failed {
                    status: Some(status),
                    error: format!("HTTP {status}: {body}"),
                    retry_after,
                    // 410 Gone: the receiver says never again.
                    permanent: status == 410,
                }
            }
        }
    }
}

/// `Retry-After` as seconds or as an HTTP date (measured from `now`, the injected clock's).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<SignedDuration> {
    if let Ok(secs) = value.trim().parse::<i64>() {
        return Some(SignedDuration::from_secs(secs.max(0)));
    }
    let at = jiff::fmt::rfc2822::parse(value.trim()).ok()?.timestamp();
    Some(at.duration_since(now).max(SignedDuration::ZERO))
}

/// A compact view of the request for messages; receivers fetch the rest from the API.
pub fn summary(state: &RequestState) -> Value {
    json!({
        "id": state.id,
        "status": state.status,
        "policy": state.policy.id,
        "title": state.title,
        "subject": state.subject,
        "requester": state.requester,
        "current_tasks": state.current_tasks,
        "pending_reasons": state.pending_reasons,
        "version": state.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now: Timestamp = "2099-10-21T07:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("42", now), Some(SignedDuration::from_secs(42)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT", now), Some(SignedDuration::from_mins(28)), "from the injected clock");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2099 06:28:00 GMT", now), Some(SignedDuration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
