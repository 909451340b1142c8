//! The contract under stress, on SQLite and on PostgreSQL alike: refusals with their precise
//! codes and a bounded record of them, what goes in coming back out, bounded responses.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

async fn refusals_follow_the_contract(app: &App) {
    // bob is on nothing of this request: he cannot read it, but his attempt is refused with
    // the precise code and recorded; the answer says nothing of the request.
    let r = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await;
    let id = r["id"].as_str().unwrap();
    let (status, body) = app.act("bob", id, json!({"action": "approve", "step": "manager"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_an_approver"), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(!detail.contains("manager") && !detail.contains(id) && !detail.contains("mark"), "nothing of the request: {body}");
    let (status, _) = app.get("bob", &format!("/v1/requests/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "reads by outsiders stay 404");
    let (status, _) = app.get("bob", &format!("/v1/requests/{id}/events")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.act("bob", id, json!({"action": "comment", "comment": "hi"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "{body}");
    let (status, body) = app.act("bob", id, json!({"action": "cancel"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "{body}");
    let events = app.events(id).await;
    let by_bob: Vec<&Value> = events.iter().filter(|e| e["type"] == "refused" && e["actor"] == "bob").collect();
    assert_eq!(by_bob.len(), 3, "{events:#?}");
    assert_eq!(by_bob[0]["data"]["code"], "not_an_approver");
    assert_eq!(by_bob[0]["step"], "manager");

    // not_an_approver comes before separation_of_duties, which only concerns someone who
    // would otherwise be eligible.
    let id = app.submit("alice", "sod", json!({})).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("alice", &id, json!({"action": "approve", "step": "a"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_an_approver"), "{body}");
    app.approve("mark", &id, "a").await;
    let (status, body) = app.act("mark", &id, json!({"action": "approve", "step": "b"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "separation_of_duties"), "{body}");
    let (status, body) = app.act("fiona", &id, json!({"action": "approve", "step": "b"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_an_approver"), "fiona decided a but is no candidate of b: {body}");
    let id = app.submit("alice", "own", json!({})).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("alice", &id, json!({"action": "approve", "step": "a"})).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "separation_of_duties"), "alice is named but requested it: {body}");

    // A step not active yet, or any more, is step_not_active, for anyone.
    let id = app.submit("alice", "seq", json!({})).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("fiona", &id, json!({"action": "approve", "step": "second"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "step_not_active"), "{body}");
    let (status, body) = app.act("bob", &id, json!({"action": "approve", "step": "second"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "step_not_active"), "{body}");
    app.approve("mark", &id, "first").await;
    let (status, body) = app.act("fiona", &id, json!({"action": "approve", "step": "first"})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "step_not_active"), "{body}");
    let (status, _) = app.act("mark", &id, json!({"action": "approve", "step": "first"})).await;
    assert_eq!(status, StatusCode::OK, "a repeated click is still harmless");

    // Plan answers an unknown policy like submit does.
    let (status, body) = app.post("alice", "/v1/policies/nope/plan", json!({"context": {}})).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_policy"), "{body}");
    let (status, body) = app.post("alice", "/v1/requests", json!({"policy": "nope", "context": {}})).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_policy"), "{body}");
}

async fn one_caller_cannot_flood_a_history(app: &App) {
    let id = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await["id"].as_str().unwrap().to_string();
    for _ in 0..25 {
        let (status, body) = app.act("bob", &id, json!({"action": "approve", "step": "manager"})).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_an_approver"), "every attempt is answered: {body}");
    }
    // Someone else's refusals are still recorded.
    let (status, _) = app.act("fiona", &id, json!({"action": "approve", "step": "manager"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let events = app.events(&id).await;
    let by_bob: Vec<&Value> = events.iter().filter(|e| e["type"] == "refused" && e["actor"] == "bob").collect();
    let max = signoff_engine::machine::MAX_RECORDED_REFUSALS as usize;
    assert_eq!(by_bob.len(), max, "at most {max} refusals of one caller are recorded");
    assert!(by_bob[..max - 1].iter().all(|e| e["data"].get("limit_reached").is_none()));
    assert_eq!(by_bob[max - 1]["data"]["limit_reached"], true, "the last recorded one says so");
    assert_eq!(events.iter().filter(|e| e["type"] == "refused" && e["actor"] == "fiona").count(), 1);
    // The request still works.
    app.approve("mark", &id, "manager").await;
    assert_eq!(app.approve("fiona", &id, "finance").await["status"], "approved");
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(#[tokio::test] async fn $name() { super::$name(&spawn_app_on(On::Sqlite, "").await.unwrap()).await; })*
        }
        mod postgres {
            use super::*;
            $(#[tokio::test] async fn $name() {
                let Some(app) = spawn_app_on(On::Postgres, stringify!($name)).await else { return };
                super::$name(&app).await;
            })*
        }
    };
}

on_both_stores!(refusals_follow_the_contract, one_caller_cannot_flood_a_history);
