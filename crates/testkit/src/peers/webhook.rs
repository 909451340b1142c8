//! A webhook receiver: checks each delivery's Standard Webhooks signature, can hold the first
//! deliveries unanswered or answer from a script, and keeps what it accepted by `webhook-id`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;

/// The secret the tests configure their endpoints with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How the receiver answers.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Verify signatures with this secret (401 when one does not match) and keep each accepted
    /// body; `None` accepts everything unread, as fast as it can (for benchmarks).
    pub secret: Option<&'static str>,
    /// The first `hold` deliveries wait unanswered until `release`.
    pub hold: usize,
}

impl Behaviour {
    /// Verifies signatures with `SECRET`.
    pub fn verifying() -> Self {
        Behaviour { secret: Some(SECRET), hold: 0 }
    }
}

/// What the receiver saw, and what it is told to answer next.
#[derive(Default)]
pub struct Deliveries {
    /// Answers to give, in order, before answering 204 again: a status and a `Retry-After`.
    pub script: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    /// Accepted bodies by `webhook-id` (when verifying).
    pub accepted: Mutex<HashMap<String, Value>>,
    /// Distinct accepted ids in the order they first arrived (when verifying).
    pub order: Mutex<Vec<String>>,
    /// The `webhook-id` of every arrival, repeats included.
    pub arrivals: Mutex<Vec<String>>,
    /// The `traceparent` of every arrival that carried one.
    pub traceparents: Mutex<Vec<String>>,
    pub bad_signatures: Mutex<usize>,
    /// When the first and the last delivery arrived.
    pub first_last: Mutex<(Option<Instant>, Option<Instant>)>,
    /// Releases held deliveries (`notify_waiters`).
    pub release: tokio::sync::Notify,
}

pub struct WebhookReceiver {
    /// Where to deliver: `http://127.0.0.1:PORT/hook`.
    pub url: String,
    pub deliveries: Arc<Deliveries>,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl std::ops::Deref for WebhookReceiver {
    type Target = Deliveries;

    fn deref(&self) -> &Deliveries {
        &self.deliveries
    }
}

impl WebhookReceiver {
    /// A receiver on the current Tokio runtime.
    pub async fn start(behaviour: Behaviour) -> WebhookReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (url, deliveries) = serve(listener, behaviour);
        WebhookReceiver { url, deliveries, _runtime: None }
    }

    /// A receiver on a runtime of its own, for tests without one (it lives as long as this).
    pub fn start_blocking(behaviour: Behaviour) -> WebhookReceiver {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let _guard = runtime.enter();
        let (url, deliveries) = serve(listener, behaviour);
        drop(_guard);
        WebhookReceiver { url, deliveries, _runtime: Some(runtime) }
    }
}

fn serve(listener: tokio::net::TcpListener, behaviour: Behaviour) -> (String, Arc<Deliveries>) {
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let deliveries = Arc::new(Deliveries::default());
    let d = deliveries.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (d, behaviour) = (d.clone(), behaviour.clone());
            async move { receive(&d, &behaviour, &headers, &body).await }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, deliveries)
}

async fn receive(d: &Deliveries, behaviour: &Behaviour, headers: &HeaderMap, body: &[u8]) -> Response {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        d.traceparents.lock().unwrap().push(tp.to_string());
    }
    let arrived = {
        let now = Instant::now();
        let mut fl = d.first_last.lock().unwrap();
        fl.0.get_or_insert(now);
        fl.1 = Some(now);
        let mut arrivals = d.arrivals.lock().unwrap();
        arrivals.push(id.clone());
        arrivals.len()
    };
    if arrived <= behaviour.hold {
        d.release.notified().await;
    }
    let Some(secret) = behaviour.secret else { return StatusCode::NO_CONTENT.into_response() };
    if !verify(secret, headers, body) {
        *d.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some((status, retry_after)) = d.script.lock().unwrap().pop_front() {
        let mut resp = StatusCode::from_u16(status).unwrap().into_response();
        if let Some(ra) = retry_after {
            resp.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        return resp;
    }
    let value: Value = serde_json::from_slice(body).unwrap();
    if d.accepted.lock().unwrap().insert(id.clone(), value).is_none() {
        d.order.lock().unwrap().push(id);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Whether the Standard Webhooks signature headers match `body` under `secret`.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (id, ts, sigs) = (get("webhook-id"), get("webhook-timestamp"), get("webhook-signature"));
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    !id.is_empty() && sigs.split(' ').any(|s| s == expected)
}
