//! Time end to end through the HTTP API, with an injected clock: timers stored with requests
//! and fired by the scheduler, out-of-office delegation, and resubmission lineages.

use std::sync::Arc;

use signoff_testkit::app::*;
use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signoff_server::ManualClock;
use signoff_server::scheduler::Fire;

const TIMED: &[(&str, &str)] = &[
    ("approve-late.yaml", "id: approve-late\nsteps:\n  - {id: a, approvers: {users: [mark]}, sla: 1h, on_timeout: approve}\n  - {id: b, approvers: {users: [fiona]}, sla: 2h, on_timeout: reject}\n"),
    ("ladder.yaml", "id: ladder\nexpires_in: 1d\nsteps:\n  - id: a\n    approvers: {users: [mark]}\n    sla: 4h\n    remind_every: 1h\n    escalation:\n      - {after: 2h, to: {users: [vp-sales]}}\n      - {after: 3h, to: {groups: [finance]}}\n"),
    ("escalate.yaml", "id: escalate\nsteps:\n  - id: a\n    approvers: {users: [mark]}\n    sla: 1d\n    on_timeout: escalate\n    on_last_timeout: reject\n    escalation: [{to: {users: [vp-sales]}}]\n"),
    ("retry.yaml", "id: retry\nresubmission: {cooldown: 10m, max_per_lineage: 3}\nsteps:\n  - {id: a, approvers: {users: [mark]}}\n"),
];

fn start() -> jiff::Timestamp {
    "2026-11-22T09:00:00Z".parse().unwrap()
}

async fn app_with(extra_directory: &str) -> (App, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(start()));
    let app = spawn_app_with(clock.clone(), extra_directory).await;
    for (name, text) in TIMED {
        std::fs::write(app.dir.path().join("policies").join(name), text).unwrap();
    }
    app.service.reload().await.unwrap();
    (app, clock)
}

async fn fire(app: &App) -> usize {
    app.service.workers().scheduler.fire_due().await.unwrap()
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_timeout_escalates_then_takes_its_last_action() {
    let (app, clock) = app_with("").await;
    let (_, plan) = app.post("alice", "/v1/policies/escalate/plan", json!({"context": {}})).await;
    assert_eq!((&plan["steps"][0]["on_timeout"], &plan["steps"][0]["on_last_timeout"]), (&json!("escalate"), &json!("reject")), "{plan}");
    let r = app.submit("alice", "escalate", json!({})).await;
    let id = r["id"].as_str().unwrap();
    assert_eq!(r["steps"][0]["next_timer"]["kind"], "timeout");
    clock.advance(SignedDuration::from_hours(24));
    assert_eq!(fire(&app).await, 1);
    assert_eq!(fire(&app).await, 0, "each level fires once");
    let (_, r) = app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["status"], "pending", "escalated, not expired");
    assert_eq!(r["steps"][0]["approvers"], json!(["mark", "vp-sales"]));
    assert_eq!(r["steps"][0]["escalation_level"], 1);
    assert_eq!(r["steps"][0]["due_at"], "2026-11-24T09:00:00Z", "another day to decide");
    let (_, inbox) = app.get("vp-sales", "/v1/inbox").await;
    assert_eq!(inbox["items"][0]["request"], json!(id), "the new approver has the task");
    let (_, events) = app.get("alice", &format!("/v1/requests/{id}/events")).await;
    let events = events["items"].as_array().unwrap().clone();
    assert_eq!(types(&events)[types(&events).len() - 2..], ["step_timed_out", "escalated"]);
    assert_eq!(events[events.len() - 2]["data"]["next_due"], "2026-11-24T09:00:00Z");
    clock.advance(SignedDuration::from_hours(24));
    assert_eq!(fire(&app).await, 1);
    let (_, r) = app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["status"], "rejected", "no level left: on_last_timeout");
}

#[tokio::test]
async fn timeouts_fire_through_the_engine_exactly_once() {
    let (app, clock) = app_with("").await;
    let r = app.submit("alice", "approve-late", json!({})).await;
    let id = r["id"].as_str().unwrap();
    assert_eq!(r["steps"][0]["due_at"], "2026-11-22T10:00:00Z");
    assert_eq!(r["steps"][0]["next_timer"]["kind"], "timeout");
    assert_eq!(fire(&app).await, 0, "nothing is due yet");
    clock.advance(SignedDuration::from_mins(60));
    assert_eq!(fire(&app).await, 1);
    assert_eq!(fire(&app).await, 0, "a timer fires once");
    let (_, r) = app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["steps"][0]["status"], "approved");
    assert_eq!(r["current_tasks"], json!(["b"]));
    assert_eq!(r["steps"][1]["due_at"], "2026-11-22T12:00:00Z");
    clock.advance(SignedDuration::from_hours(2));
    assert_eq!(fire(&app).await, 1);
    let (_, r) = app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["status"], "rejected");
    let t = types(&app.events(id).await);
    assert_eq!(t.iter().filter(|k| *k == "step_timed_out").count(), 2);
    assert_eq!(t.last().unwrap(), "completed");
}

#[tokio::test]
async fn escalation_ladder_and_reminders() {
    let (app, clock) = app_with("").await;
    let id = app.submit("alice", "ladder", json!({})).await["id"].as_str().unwrap().to_string();
    clock.advance(SignedDuration::from_mins(60));
    fire(&app).await;
    clock.advance(SignedDuration::from_mins(60));
    fire(&app).await;
    let (_, r) = app.get("alice", &format!("/v1/requests/{id}")).await;
    let step = &r["steps"][0];
    assert_eq!(step["escalation_level"], 1);
    assert_eq!(step["approvers"], json!(["mark", "vp-sales"]));
    assert_eq!(step["reminders_sent"], 2);
    let (_, inbox) = app.get("vp-sales", "/v1/inbox").await;
    assert_eq!(inbox["items"][0]["request"], id.as_str(), "the escalated approver has the task");
    clock.advance(SignedDuration::from_mins(61));
    fire(&app).await;
    fire(&app).await;
    let events = app.events(&id).await;
    let escalated: Vec<&Value> = events.iter().filter(|e| e["type"] == "escalated").collect();
    assert_eq!(escalated.len(), 2, "each level once");
    assert_eq!(escalated[1]["data"]["level"], 2);
    assert_eq!(escalated[1]["data"]["added"], json!(["fiona", "frank"]));
    let reminded: Vec<&Value> = events.iter().filter(|e| e["type"] == "reminded").collect();
    assert_eq!(reminded.len(), 3);
    assert_eq!(reminded[0]["data"]["to"], json!(["mark"]));
    // The escalated approvers decide; the request's timers are void.
    let r = app.approve("frank", &id, "a").await;
    assert_eq!(r["status"], "approved");
    assert!(r["next_timer_at"].is_null());
    clock.advance(SignedDuration::from_hours(48));
    assert_eq!(fire(&app).await, 0);
}

#[tokio::test]
async fn a_human_decision_racing_the_timer_never_both() {
    let (app, clock) = app_with("").await;
    for _ in 0..10 {
        let id = app.submit("alice", "approve-late", json!({})).await["id"].as_str().unwrap().to_string();
        clock.advance(SignedDuration::from_mins(60));
        let (human, timer) = tokio::join!(
            app.act("mark", &id, json!({"action": "approve", "step": "a"})),
            app.service.fire(&id)
        );
        let events = app.events(&id).await;
        let t = types(&events);
        let approvals = t.iter().filter(|k| *k == "approved").count();
        let timeouts = t.iter().filter(|k| *k == "step_timed_out").count();
        assert_eq!(approvals + timeouts, 1, "exactly one of them decided step a: {t:?}");
        assert_eq!(t.iter().filter(|k| *k == "step_decided").count(), 1);
        if timeouts == 1 {
            assert_eq!(human.0, StatusCode::CONFLICT, "the later human decision is refused");
            assert!(timer.unwrap());
        } else {
            assert_eq!(human.0, StatusCode::OK);
        }
    }
}

#[tokio::test]
async fn the_scheduler_wakes_for_due_timers() {
    let (app, clock) = app_with("").await;
    let scheduler = tokio::spawn(app.service.workers().scheduler.run());
    let id = app.submit("alice", "approve-late", json!({})).await["id"].as_str().unwrap().to_string();
    clock.advance(SignedDuration::from_mins(60));
    // The scheduler reacts to the clock; wait (bounded) for the change it makes.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, r) = app.get("alice", &format!("/v1/requests/{id}")).await;
        if r["steps"][0]["status"] == "approved" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the timer did not fire");
        tokio::task::yield_now().await;
    }
    scheduler.abort();
}

#[tokio::test]
async fn out_of_office_delegation_and_cycles() {
    let extra = "delegations:\n  - {from: mark, to: dana, starts: 2026-11-01T00:00:00Z, ends: 2026-12-01T00:00:00Z}\n  - {from: lena, to: sue, starts: 2026-11-01T00:00:00Z, ends: 2026-12-01T00:00:00Z}\n  - {from: sue, to: lena, starts: 2026-11-01T00:00:00Z, ends: 2026-12-01T00:00:00Z}\n  - {from: fiona, to: alice, starts: 2026-11-01T00:00:00Z, ends: 2026-12-01T00:00:00Z}\n";
    let (app, _clock) = app_with(extra).await;
    let r = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await;
    assert_eq!(r["steps"][0]["approvers"], json!(["dana"]), "mark is away: dana stands in");
    assert_eq!(r["steps"][1]["approvers"], json!(["frank"]), "fiona's delegate is the requester: separation of duties drops the slot");
    let id = r["id"].as_str().unwrap();
    let (status, body) = app.act("mark", id, json!({"action": "approve", "step": "manager"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_an_approver")), "mark is away: {body}");
    app.approve("dana", id, "manager").await;
    let (status, body) = app.post("alice", "/v1/requests", json!({"policy": "quote-discount",
        "context": {"quote": {"total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": true}}})).await;
    assert_eq!(status, StatusCode::CREATED, "legal waits; its cycle shows when it activates: {body}");
    let later = body["id"].as_str().unwrap();
    app.approve("dana", later, "manager").await;
    let r = app.approve("frank", later, "finance").await;
    assert_eq!(r["status"], "rejected");
    assert!(r["decision_reason"].as_str().unwrap().starts_with("delegation_cycle"), "{r}");
    // A step active at submission with a cycle refuses the submission itself.
    std::fs::write(app.dir.path().join("policies").join("legal-now.yaml"), "id: legal-now\nsteps:\n  - {id: l, approvers: {groups: [legal]}}\n").unwrap();
    app.service.reload().await.unwrap();
    let (status, body) = app.post("alice", "/v1/requests", json!({"policy": "legal-now", "context": {}})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("delegation_cycle")), "{body}");
}

#[tokio::test]
async fn resubmission_lineage_cooldown_and_limit() {
    let (app, clock) = app_with("").await;
    let first = app.submit("alice", "retry", json!({})).await;
    let first_id = first["id"].as_str().unwrap().to_string();
    let lineage = first["lineage"].as_str().unwrap().to_string();
    let resubmit = |earlier: &str| json!({"policy": "retry", "context": {}, "resubmits": earlier});

    let (status, body) = app.post("alice", "/v1/requests", resubmit(&first_id)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_terminal")), "still pending");
    app.act("mark", &first_id, json!({"action": "reject", "step": "a", "comment": "redo"})).await;
    let (status, body) = app.post("bob", "/v1/requests", resubmit(&first_id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bob cannot see it: {body}");
    let resp = app.http.post(format!("{}/v1/requests", app.url)).bearer_auth("alice-token").json(&resubmit(&first_id)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "600");
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "resubmit_cooldown");

    clock.advance(SignedDuration::from_mins(10));
    let (status, second) = app.post("alice", "/v1/requests", resubmit(&first_id)).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["lineage"], lineage.as_str());
    assert_eq!(second["resubmits"], first_id.as_str());
    let second_id = second["id"].as_str().unwrap().to_string();
    let events = app.events(&first_id).await;
    let link = events.last().unwrap();
    assert_eq!((link["type"].as_str(), link["data"]["by"].as_str()), (Some("resubmitted"), Some(second_id.as_str())), "the history links forward");
    let (_, first_now) = app.get("alice", &format!("/v1/requests/{first_id}")).await;
    assert_eq!(first_now["resubmitted_by"], json!([second_id]));
    assert_eq!(first_now["status"], "rejected", "linking does not reopen it");

    app.act("alice", &second_id, json!({"action": "cancel"})).await;
    clock.advance(SignedDuration::from_mins(10));
    let (status, third) = app.post("alice", "/v1/requests", resubmit(&second_id)).await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
    let third_id = third["id"].as_str().unwrap().to_string();
    app.act("alice", &third_id, json!({"action": "cancel"})).await;
    clock.advance(SignedDuration::from_mins(10));
    let (status, body) = app.post("alice", "/v1/requests", resubmit(&third_id)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("lineage_limit")), "{body}");

    let approved = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    app.approve("fiona", &approved, "finance").await;
    let (status, body) = app.post("alice", "/v1/requests", json!({"policy": "any", "context": {}, "resubmits": approved})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_terminal")), "approved requests are final");
    let (status, body) = app.post("alice", "/v1/requests", json!({"policy": "any", "context": {}, "resubmits": first_id})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_terminal")), "another policy: {body}");
}
