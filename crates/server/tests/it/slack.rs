//! Slack end to end against a stand-in Slack Web API on loopback (chat.postMessage and
//! chat.update, able to answer 429 with Retry-After), and signed interactions coming back.

use std::sync::Arc;

use axum::http::StatusCode;
use signoff_testkit::app::*;
use signoff_testkit::peers::slack::{SIGNING, SlackApi, TOKEN, start_slack};
use jiff::SignedDuration;
use serde_json::{Value, json};
use signoff_server::ManualClock;
use signoff_server::notify::dispatch::Dispatcher;
use signoff_server::notify::slack::{SlackConfig, sign};
use signoff_server::notify::NotifyConfig;

struct Setup {
    app: App,
    clock: Arc<ManualClock>,
    dispatcher: Arc<Dispatcher>,
    slack: Arc<SlackApi>,
}

async fn setup() -> Setup {
    let (slack, url) = start_slack().await;
    let clock = Arc::new(ManualClock::new("2026-11-22T09:00:00Z".parse().unwrap()));
    let notify = NotifyConfig { slack: Some(SlackConfig { api_url: url, token: TOKEN.into(), signing_secret: SIGNING.into(), channel: None }), ..Default::default() };
    let app = spawn_app_notifying(clock.clone(), "", notify).await;
    std::fs::write(
        app.dir.path().join("policies").join("ladder.yaml"),
        "id: ladder\nsteps:\n  - {id: a, approvers: {users: [mark]}, remind_every: 1h, escalation: [{after: 2h, to: {users: [vp-sales]}}]}\n",
    )
    .unwrap();
    app.service.reload().await.unwrap();
    let dispatcher = app.service.workers().dispatcher;
    Setup { app, clock, dispatcher, slack }
}

fn calls(slack: &SlackApi, method: &str) -> Vec<Value> {
    slack.calls.lock().unwrap().iter().filter(|(m, _)| m == method).map(|(_, b)| b.clone()).collect()
}

#[tokio::test]
async fn a_message_per_task_kept_up_to_date_with_coalesced_updates() {
    let s = setup().await;
    let id = s.app.submit("alice", "quote-discount", quote(0.18, 0.21)).await["id"].as_str().unwrap().to_string();
    s.dispatcher.deliver_due().await;
    let posts = calls(&s.slack, "chat.postMessage");
    let mut to: Vec<&str> = posts.iter().map(|p| p["channel"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(to, ["U-fiona", "U-frank", "U-mark"], "one message per approver");
    let marks = posts.iter().find(|p| p["channel"] == "U-mark").unwrap();
    let buttons = marks["blocks"].as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap();
    assert_eq!(buttons["elements"][0]["action_id"], "approve");
    assert_eq!(buttons["elements"][0]["value"], format!("{id}|manager"));

    // Two changes before the dispatcher runs again: each message gets one update, the latest.
    s.app.approve("mark", &id, "manager").await;
    s.app.act("fiona", &id, json!({"action": "comment", "comment": "checking margin"})).await;
    s.dispatcher.deliver_due().await;
    let updates = calls(&s.slack, "chat.update");
    assert_eq!(updates.len(), 3, "rapid updates to one message are coalesced: {updates:#?}");
    let marks = updates.iter().find(|u| u["channel"] == "D-mark").unwrap();
    assert!(marks["blocks"].to_string().contains("Approved by mark"), "{marks}");
    assert!(!marks["blocks"].to_string().contains("\"actions\""), "a decided step has no buttons");
    let (_, report) = s.app.get("alice", &format!("/v1/requests/{id}/notifications")).await;
    assert!(report["items"].as_array().unwrap().iter().all(|n| n["status"] == "delivered"), "{report}");
}

#[tokio::test]
async fn slack_rate_limits_are_honoured() {
    let s = setup().await;
    s.slack.throttle.lock().unwrap().extend([30]);
    let id = s.app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    s.dispatcher.deliver_due().await;
    assert_eq!(calls(&s.slack, "chat.postMessage").len(), 1, "one of two went through, the other was told to wait");
    s.clock.advance(SignedDuration::from_secs(29));
    s.dispatcher.deliver_due().await;
    assert_eq!(calls(&s.slack, "chat.postMessage").len(), 1);
    s.clock.advance(SignedDuration::from_secs(1));
    s.dispatcher.deliver_due().await;
    assert_eq!(calls(&s.slack, "chat.postMessage").len(), 2);
    let (_, report) = s.app.get("alice", &format!("/v1/requests/{id}/notifications")).await;
    let statuses: Vec<u64> = report["items"].as_array().unwrap().iter().flat_map(|n| n["attempt_log"].as_array().unwrap().iter().map(|a| a["status"].as_u64().unwrap())).collect();
    assert!(statuses.contains(&429), "{report}");
}

#[tokio::test]
async fn escalations_and_reminders_post_in_the_thread() {
    let s = setup().await;
    let id = s.app.submit("alice", "ladder", json!({})).await["id"].as_str().unwrap().to_string();
    s.dispatcher.deliver_due().await;
    let first = calls(&s.slack, "chat.postMessage");
    assert_eq!(first.len(), 1);
    s.clock.advance(SignedDuration::from_hours(2));
    s.app.service.workers().scheduler.fire_due().await.unwrap();
    s.dispatcher.deliver_due().await;
    let posts = calls(&s.slack, "chat.postMessage");
    let threaded: Vec<&Value> = posts.iter().filter(|p| p["thread_ts"] == "1700000000.000001").collect();
    let texts: Vec<&str> = threaded.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert!(texts.iter().any(|t| t.starts_with("Escalated (level 1): added vp-sales")), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("Reminder")), "{texts:?}");
    assert!(posts.iter().any(|p| p["channel"] == "U-vp-sales" && p["thread_ts"].is_null()), "the escalated approver gets their own task");
    let _ = id;
}

async fn click(s: &Setup, slack_user: &str, value: &str, action: &str, reason: Option<&str>, ts: i64) -> (StatusCode, Value) {
    let mut payload = json!({"type": "block_actions", "user": {"id": slack_user}, "actions": [{"action_id": action, "value": value}]});
    if let Some(r) = reason {
        payload["state"] = json!({"values": {"reason": {"reason": {"type": "plain_text_input", "value": r}}}});
    }
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let ts = ts.to_string();
    let resp = s
        .app
        .http
        .post(format!("{}/slack/interactions", s.app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sign(SIGNING, &ts, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn signed_clicks_act_with_the_apis_authorization() {
    let s = setup().await;
    let now = s.clock.as_ref();
    let ts = signoff_server::Clock::now(now).as_second();
    let id = s.app.submit("alice", "quote-discount", quote(0.18, 0.21)).await["id"].as_str().unwrap().to_string();
    let manager = format!("{id}|manager");
    let finance = format!("{id}|finance");

    let (status, body) = click(&s, "U-nobody", &manager, "approve", None, ts).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["text"].as_str().unwrap().contains("not linked"), "{body}");
    let (_, body) = click(&s, "U-fiona", &manager, "approve", None, ts).await;
    assert!(body["text"].as_str().unwrap().starts_with("Not done"), "fiona may not approve the manager step: {body}");
    let (_, body) = click(&s, "U-mark", &manager, "approve", None, ts).await;
    assert!(body["text"].as_str().unwrap().starts_with("Done"), "{body}");
    let (_, body) = click(&s, "U-fiona", &finance, "reject", None, ts + 1).await;
    assert!(body["text"].as_str().unwrap().contains("Type a reason"), "{body}");
    let (_, body) = click(&s, "U-fiona", &finance, "reject", Some("margin too thin"), ts + 2).await;
    assert!(body["text"].as_str().unwrap().starts_with("Done"), "{body}");
    let (_, r) = s.app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["steps"][1]["rejections"][0]["comment"], "margin too thin");
    let events = s.app.events(&id).await;
    assert!(events.iter().any(|e| e["type"] == "refused" && e["actor"] == "fiona"), "the refused click is recorded like any refusal");
}

#[tokio::test]
async fn forged_stale_and_replayed_interactions_are_refused() {
    let s = setup().await;
    let ts = signoff_server::Clock::now(s.clock.as_ref()).as_second();
    let id = s.app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    let value = format!("{id}|finance");
    let (status, body) = click(&s, "U-frank", &value, "approve", None, ts - 301).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")), "more than five minutes off");
    let (status, _) = click(&s, "U-frank", &value, "approve", None, ts + 301).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = s
        .app
        .http
        .post(format!("{}/slack/interactions", s.app.url))
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", "v0=deadbeef")
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The same signed request twice: the second is a replay.
    let payload = json!({"type": "block_actions", "user": {"id": "U-frank"}, "actions": [{"action_id": "approve", "value": value}]});
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let signature = sign(SIGNING, &ts.to_string(), body.as_bytes());
    let send = || {
        s.app
            .http
            .post(format!("{}/slack/interactions", s.app.url))
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", &signature)
            .body(body.clone())
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "replayed");
    let (_, r) = s.app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["status"], "approved");
}
