//! Webhooks end to end: the outbox delivered by the dispatcher to a real HTTP receiver on
//! loopback that verifies Standard Webhooks signatures, answers as told (errors, 429 with
//! Retry-After) and deduplicates on `webhook-id`.

use std::sync::Arc;

use signoff_testkit::app::*;
use signoff_testkit::peers::webhook::{Behaviour, SECRET, WebhookReceiver};
use jiff::SignedDuration;
use serde_json::json;
use signoff_server::ManualClock;
use signoff_server::notify::dispatch::Dispatcher;
use signoff_server::notify::{NotifyConfig, WebhookEndpoint};

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
    let dispatcher = app.service.workers().dispatcher;
    (app, clock, dispatcher)
}

#[tokio::test]
async fn every_event_is_delivered_signed_once() {
    let receiver = WebhookReceiver::start(Behaviour::verifying()).await;
    let url = receiver.url.clone();
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
    let receiver = WebhookReceiver::start(Behaviour::verifying()).await;
    let url = receiver.url.clone();
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
    let receiver = WebhookReceiver::start(Behaviour::verifying()).await;
    let url = receiver.url.clone();
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
    let receiver = WebhookReceiver::start(Behaviour::verifying()).await;
    let url = receiver.url.clone();
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
