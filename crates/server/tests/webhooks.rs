//! Webhooks end to end: the outbox delivered by the dispatcher to a real HTTP receiver on
//! loopback that verifies Standard Webhooks signatures, answers as told (errors, 429 with
//! Retry-After) and deduplicates on `webhook-id`.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use serde_json::{Value, json};
use signoff_server::ManualClock;
use signoff_server::notify::dispatch::Dispatcher;
use signoff_server::notify::{NotifyConfig, WebhookEndpoint};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook receiver: verifies each delivery, answers from a script (then 204), and keeps
/// what it accepted by `webhook-id`.
#[derive(Default)]
struct Receiver {
    script: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    accepted: Mutex<HashMap<String, Value>>,
    order: Mutex<Vec<String>>,
    arrivals: Mutex<usize>,
    bad_signatures: Mutex<usize>,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (id, ts, sigs) = (get("webhook-id"), get("webhook-timestamp"), get("webhook-signature"));
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    !id.is_empty() && sigs.split(' ').any(|s| s == expected)
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver::default());
    let r = receiver.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                *r.arrivals.lock().unwrap() += 1;
                if !verify(&headers, &body) {
                    *r.bad_signatures.lock().unwrap() += 1;
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                if let Some((status, retry_after)) = r.script.lock().unwrap().pop_front() {
                    let mut resp = StatusCode::from_u16(status).unwrap().into_response();
                    if let Some(ra) = retry_after {
                        resp.headers_mut().insert("retry-after", ra.parse().unwrap());
                    }
                    return resp;
                }
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                let value: Value = serde_json::from_slice(&body).unwrap();
                if r.accepted.lock().unwrap().insert(id.clone(), value).is_none() {
                    r.order.lock().unwrap().push(id);
                }
                StatusCode::NO_CONTENT.into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, url)
}

fn endpoint(name: &str, url: &str, events: Option<&[&str]>, policies: Option<&[&str]>) -> WebhookEndpoint {
    WebhookEndpoint {
        name: name.into(),
        url: url.into(),
        secret: SECRET.into(),
        events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
        policies: policies.map(|p| p.iter().map(|s| s.to_string()).collect()),
    }
}

async fn app(webhooks: Vec<WebhookEndpoint>) -> (App, Arc<ManualClock>, Arc<Dispatcher>) {
    let clock = Arc::new(ManualClock::new("2026-11-22T09:00:00Z".parse().unwrap()));
    let app = spawn_app_notifying(clock.clone(), "", NotifyConfig { webhooks, ..Default::default() }).await;
    let dispatcher = Dispatcher::new(app.service.clone());
    (app, clock, dispatcher)
}

#[tokio::test]
async fn every_event_is_delivered_signed_once() {
    let (receiver, url) = start_receiver().await;
    let (app, _, dispatcher) = app(vec![endpoint("crm", &url, None, None)]).await;
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    app.approve("fiona", &id, "finance").await;
    let events = app.events(&id).await;
    assert_eq!(dispatcher.deliver_due().await, events.len());
    assert_eq!(dispatcher.deliver_due().await, 0, "nothing left to send");
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), events.len(), "one message per event");
    let mut types: Vec<String> = accepted.values().map(|m| m["type"].as_str().unwrap().to_string()).collect();
    types.sort();
    let mut expected: Vec<String> = events.iter().map(|e| format!("request.{}", e["type"].as_str().unwrap())).collect();
    expected.sort();
    assert_eq!(types, expected);
    let completed = accepted.values().find(|m| m["type"] == "request.completed").unwrap();
    assert_eq!(completed["data"]["request"]["status"], "approved");
    assert_eq!(completed["data"]["event"]["seq"], events.last().unwrap()["seq"]);

    let (status, report) = app.get("alice", &format!("/v1/requests/{id}/notifications")).await;
    assert_eq!(status, 200);
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), events.len());
    for n in items {
        assert_eq!((n["status"].as_str(), n["attempts"].as_u64(), n["destination"].as_str()), (Some("delivered"), Some(1), Some("crm")));
        assert_eq!(n["attempt_log"][0]["status"], 204);
    }
    let (status, _) = app.get("bob", &format!("/v1/requests/{id}/notifications")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn failures_are_retried_on_schedule_and_retry_after_is_honoured() {
    let (receiver, url) = start_receiver().await;
    let (app, clock, dispatcher) = app(vec![endpoint("crm", &url, Some(&["submitted"]), None)]).await;
    receiver.script.lock().unwrap().extend([(503, None), (429, Some("120"))]);
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    assert_eq!(dispatcher.deliver_due().await, 1);
    let (_, report) = app.get("alice", &format!("/v1/requests/{id}/notifications")).await;
    let n = &report["items"][0];
    assert_eq!((n["status"].as_str(), n["attempts"].as_u64()), (Some("pending"), Some(1)));
    assert!(n["last_error"].as_str().unwrap().starts_with("HTTP 503"));
    let next: jiff::Timestamp = n["next_attempt_at"].as_str().unwrap().parse().unwrap();
    let wait = next.duration_since(signoff_server::Clock::now(&*clock)).as_secs_f64();
    assert!((4.0..=6.0).contains(&wait), "5 s ± 20% jitter, got {wait}");

    clock.advance(SignedDuration::from_secs(4));
    assert_eq!(dispatcher.deliver_due().await, 0, "not yet");
    clock.advance(SignedDuration::from_secs(2));
    assert_eq!(dispatcher.deliver_due().await, 1, "second attempt: 429 with Retry-After: 120");
    clock.advance(SignedDuration::from_secs(119));
    assert_eq!(dispatcher.deliver_due().await, 0, "Retry-After is honoured");
    clock.advance(SignedDuration::from_secs(1));
    assert_eq!(dispatcher.deliver_due().await, 1);
    let (_, report) = app.get("alice", &format!("/v1/requests/{id}/notifications")).await;
    let n = &report["items"][0];
    assert_eq!((n["status"].as_str(), n["attempts"].as_u64()), (Some("delivered"), Some(3)));
    let statuses: Vec<u64> = n["attempt_log"].as_array().unwrap().iter().map(|a| a["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 429, 204]);
    assert_eq!(receiver.accepted.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_receiver_fails_after_the_last_attempt() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let (app, clock, dispatcher) = app(vec![endpoint("gone", &url, Some(&["submitted"]), None)]).await;
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    for _ in 0..8 {
        assert_eq!(dispatcher.deliver_due().await, 1);
        clock.advance(SignedDuration::from_hours(13));
    }
    assert_eq!(dispatcher.deliver_due().await, 0);
    let (_, report) = app.get("alice", &format!("/v1/requests/{id}/notifications")).await;
    let n = &report["items"][0];
    assert_eq!((n["status"].as_str(), n["attempts"].as_u64()), (Some("failed"), Some(8)));
    assert!(n["last_error"].as_str().unwrap().starts_with("no answer"), "{n}");
}

#[tokio::test]
async fn endpoints_filter_by_event_and_policy() {
    let (receiver, url) = start_receiver().await;
    let (app, _, dispatcher) = app(vec![
        endpoint("done", &url, Some(&["completed"]), None),
        endpoint("quotes", &url, Some(&["submitted"]), Some(&["quote-discount"])),
    ])
    .await;
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    app.approve("fiona", &id, "finance").await;
    app.submit("alice", "quote-discount", quote(0.18, 0.21)).await;
    dispatcher.deliver_due().await;
    let mut types: Vec<String> = receiver.accepted.lock().unwrap().values().map(|m| format!("{}:{}", m["data"]["request"]["policy"].as_str().unwrap(), m["type"].as_str().unwrap())).collect();
    types.sort();
    assert_eq!(types, ["any:request.completed", "quote-discount:request.submitted"]);
}

#[tokio::test]
async fn the_running_dispatcher_delivers_after_commits() {
    let (receiver, url) = start_receiver().await;
    let (app, _, dispatcher) = app(vec![endpoint("crm", &url, Some(&["completed"]), None)]).await;
    let running = tokio::spawn(dispatcher.clone().run());
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    app.approve("fiona", &id, "finance").await;
    // Wait (bounded) for the receiver to get it: the dispatcher is woken by the commit.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while receiver.accepted.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::task::yield_now().await;
    }
    running.abort();
}
