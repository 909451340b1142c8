//! End-to-end tests of the HTTP API: each test starts the real server on 127.0.0.1:0 against
//! its own temporary SQLite database and drives it over HTTP.

use std::sync::Arc;

use signoff_testkit::app::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn golden_path() {
    let app = spawn_app().await;
    let r = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await;
    let id = r["id"].as_str().unwrap();
    assert_eq!(r["status"], "pending");
    assert_eq!(r["current_tasks"], json!(["manager", "finance"]));
    assert_eq!(r["policy"]["id"], "quote-discount");
    assert!(r["policy"]["hash"].as_str().unwrap().starts_with("sha256:"));
    let (_, inbox) = app.get("mark", "/v1/inbox").await;
    assert_eq!(inbox["items"][0]["request"], id);
    assert_eq!(inbox["items"][0]["step"], "manager");
    app.approve("mark", id, "manager").await;
    let r = app.approve("fiona", id, "finance").await;
    assert_eq!(r["status"], "approved");
    let (_, inbox) = app.get("frank", "/v1/inbox").await;
    assert_eq!(inbox["items"], json!([]));
    let events = app.events(id).await;
    assert_eq!(count(&events, "completed"), 1);
    assert_eq!(events.len() as u64, r["version"].as_u64().unwrap());
}

#[tokio::test]
async fn sequence_and_exclusive_choice() {
    let app = spawn_app().await;
    let r = app.submit("alice", "seq", json!({})).await;
    let id = r["id"].as_str().unwrap();
    assert_eq!(r["current_tasks"], json!(["first"]));
    let (status, body) = app.act("fiona", id, json!({"action": "approve", "step": "second"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("step_not_active")), "a step not yet active: {body}");
    let (status, body) = app.act("mark", id, json!({"action": "approve", "step": "second"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("step_not_active")));
    let r = app.approve("mark", id, "first").await;
    assert_eq!(r["current_tasks"], json!(["second"]));
    assert_eq!(app.approve("fiona", id, "second").await["status"], "approved");

    // Only the margin step applies: the manager step is skipped with its reason.
    let r = app.submit("alice", "quote-discount", quote(0.05, 0.21)).await;
    assert_eq!(r["current_tasks"], json!(["finance"]));
    let manager = &r["steps"][0];
    assert_eq!(manager["status"], "skipped");
    assert!(manager["skipped_because"].as_str().unwrap().contains("quote.discount > 0.10"));
    // Nothing applies: approved at once.
    let r = app.submit("alice", "quote-discount", quote(0.05, 0.30)).await;
    assert_eq!(r["status"], "approved");
}

#[tokio::test]
async fn parallel_approvals_complete_exactly_once() {
    let app = Arc::new(spawn_app().await);
    for _ in 0..10 {
        let r = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await;
        let id = r["id"].as_str().unwrap().to_string();
        let (a, b) = tokio::join!(app.approve("mark", &id, "manager"), app.approve("fiona", &id, "finance"));
        assert!(a["status"] == "approved" || b["status"] == "approved");
        let events = app.events(&id).await;
        assert_eq!(count(&events, "completed"), 1, "{events:#?}");
        assert_eq!(count(&events, "step_decided"), 2);
    }
}

#[tokio::test]
async fn any_of_two_of_three_and_all() {
    let app = spawn_app().await;
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    assert_eq!(app.approve("frank", &id, "finance").await["status"], "approved");
    let (status, body) = app.act("fiona", &id, json!({"action": "approve", "step": "finance"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("request_closed")));

    let id = app.submit("alice", "two-of-three", json!({})).await["id"].as_str().unwrap().to_string();
    let (status, _) = app.act("sam", &id, json!({"action": "reject", "step": "sre", "comment": "not yet"})).await;
    assert_eq!(status, StatusCode::OK);
    app.approve("sue", &id, "sre").await;
    assert_eq!(app.approve("sid", &id, "sre").await["status"], "approved");

    let id = app.submit("alice", "two-of-three", json!({})).await["id"].as_str().unwrap().to_string();
    app.act("sam", &id, json!({"action": "reject", "step": "sre", "comment": "no"})).await;
    let (_, r) = app.act("sue", &id, json!({"action": "reject", "step": "sre", "comment": "no"})).await;
    assert_eq!(r["status"], "rejected");

    let id = app.submit("alice", "all", json!({})).await["id"].as_str().unwrap().to_string();
    assert_eq!(app.approve("fiona", &id, "finance").await["status"], "pending");
    assert_eq!(app.approve("frank", &id, "finance").await["status"], "approved");
}

#[tokio::test]
async fn rejection_and_cancellation_close_the_request() {
    let app = spawn_app().await;
    let id = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("fiona", &id, json!({"action": "reject", "step": "finance"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("comment_required")));
    let (_, r) = app.act("fiona", &id, json!({"action": "reject", "step": "finance", "comment": "margin"})).await;
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["steps"][0]["status"], "cancelled");
    let (status, body) = app.act("mark", &id, json!({"action": "approve", "step": "manager"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("request_closed")));
    assert_eq!(count(&app.events(&id).await, "refused"), 1, "the refused attempt is in the history");

    let id = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("mark", &id, json!({"action": "cancel"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (status, r) = app.act("alice", &id, json!({"action": "cancel", "comment": "duplicate"})).await;
    assert_eq!((status, r["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let (_, inbox) = app.get("mark", "/v1/inbox").await;
    assert_eq!(inbox["items"], json!([]));
}

#[tokio::test]
async fn separation_of_duties_capability_and_delegation() {
    let app = spawn_app().await;
    let id = app.submit("alice", "sod", json!({})).await["id"].as_str().unwrap().to_string();
    app.approve("mark", &id, "a").await;
    let (status, body) = app.act("mark", &id, json!({"action": "approve", "step": "b"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("separation_of_duties")));
    let (status, body) = app.act("alice", &id, json!({"action": "approve", "step": "b"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_an_approver")), "alice is no candidate of b: {body}");

    let id = app.submit("alice", "cap", json!({"amount": 80000})).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("mark", &id, json!({"action": "approve", "step": "approve"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_an_approver")), "mark is not eligible: {body}");
    assert_eq!(app.approve("vp-sales", &id, "approve").await["status"], "approved");

    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("fiona", &id, json!({"action": "delegate", "step": "finance", "to": "alice"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("separation_of_duties")));
    let (status, r) = app.act("fiona", &id, json!({"action": "delegate", "step": "finance", "to": "dana"})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["steps"][0]["approvers"], json!(["dana", "frank"]));
    let (status, body) = app.act("fiona", &id, json!({"action": "approve", "step": "finance"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_an_approver")));
    assert_eq!(app.approve("dana", &id, "finance").await["status"], "approved");
}

#[tokio::test]
async fn acks_gate_and_edits_are_validated() {
    let app = spawn_app().await;
    let id = app.submit("alice", "prod-deploy", json!({"replicas": 3, "canary_percent": 10})).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("sam", &id, json!({"action": "approve", "step": "sre"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("acks_pending")));
    for item in ["rollback-plan-reviewed", "change-window-ok"] {
        let (status, _) = app.act("sam", &id, json!({"action": "acknowledge", "step": "sre", "item": item})).await;
        assert_eq!(status, StatusCode::OK);
    }
    let edit = |edits: Value| json!({"action": "approve", "step": "sre", "edits": edits});
    let (status, body) = app.act("sam", &id, edit(json!({"image": "x"}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("edit_key_not_allowed")));
    let (status, body) = app.act("sam", &id, edit(json!({"canary_percent": 0}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("edit_schema_invalid")));
    assert!(body["detail"].as_str().unwrap().contains("canary_percent must be between 1 and 100"), "{body}");
    let (status, r) = app.act("sam", &id, edit(json!({"canary_percent": 5}))).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["effective_context"]["canary_percent"], 5);
    assert_eq!(r["context"]["canary_percent"], 10);
    let r = app.approve("sue", &id, "sre").await;
    assert_eq!(r["status"], "approved");
    assert_eq!(count(&app.events(&id).await, "edits_refused"), 2);

    let id = app.submit("alice", "edits", json!({"note": "x"})).await["id"].as_str().unwrap().to_string();
    let edit = |edits: Value| json!({"action": "approve", "step": "review", "edits": edits});
    let (status, body) = app.act("mark", &id, edit(json!({"note": "éééééééé"}))).await;
    assert_eq!(status, StatusCode::OK, "10 characters of JSON text (18 bytes) fit: {body}");
    let id = app.submit("alice", "edits", json!({"note": "x"})).await["id"].as_str().unwrap().to_string();
    let (status, body) = app.act("mark", &id, edit(json!({"note": "far too long a note"}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("edit_diff_too_large")));
    assert_eq!(count(&app.events(&id).await, "edits_refused"), 1);
}

#[tokio::test]
async fn idempotent_retries() {
    let app = spawn_app().await;
    let body = json!({"policy": "any", "context": {"n": 1}});
    let post = |key: &'static str, body: Value| app.call("alice", reqwest::Method::POST, "/v1/requests", Some(body), Some(key));
    let (s1, first) = post("k-1", body.clone()).await;
    let (s2, again) = post("k-1", body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first, again, "a retry returns the first response");
    let (_, page) = app.get("alice", "/v1/requests").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "and creates nothing");
    let (status, body) = post("k-1", json!({"policy": "any", "context": {"n": 2}})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("idempotency_conflict")));

    let id = first["id"].as_str().unwrap();
    let path = format!("/v1/requests/{id}/actions");
    let approve = json!({"action": "approve", "step": "finance"});
    let (s1, a1) = app.call("fiona", reqwest::Method::POST, &path, Some(approve.clone()), Some("a-1")).await;
    let (s2, a2) = app.call("fiona", reqwest::Method::POST, &path, Some(approve.clone()), Some("a-1")).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a1, a2);
    // A refusal is replayed too, without a second refused event.
    let (s1, _) = app.call("frank", reqwest::Method::POST, &path, Some(approve.clone()), Some("a-2")).await;
    let (s2, _) = app.call("frank", reqwest::Method::POST, &path, Some(approve.clone()), Some("a-2")).await;
    assert_eq!((s1, s2), (StatusCode::CONFLICT, StatusCode::CONFLICT));
    assert_eq!(count(&app.events(id).await, "refused"), 1);
}

#[tokio::test]
async fn lists_paginate_and_filter() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let body = json!({"policy": "any", "context": {}, "subject": format!("S-{}", i % 2)});
        let (_, r) = app.post("alice", "/v1/requests", body).await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/requests?limit=3&cursor={c}"),
            None => "/v1/requests?limit=3".into(),
        };
        let (status, page) = app.get("alice", &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every request once, newest first");
    let (_, page) = app.get("alice", "/v1/requests?subject=S-0&status=pending").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    let (_, page) = app.get("fiona", "/v1/requests?approver=me").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    let (_, page) = app.get("bob", "/v1/requests").await;
    assert_eq!(page["items"], json!([]), "bob sees none of them");
    let (_, page) = app.get("root", "/v1/requests?requester=alice&limit=500").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 7, "admins see everything");
    for bad in ["limit=0", "limit=501", "limit=x", "status=done", "cursor=abc", "colour=red"] {
        let (status, body) = app.get("alice", &format!("/v1/requests?{bad}")).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_parameter")), "{bad}: {body}");
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let app = spawn_app().await;
    let raw = |token: Option<&str>, path: &str, body: &'static str| {
        let mut req = app.http.post(format!("{}{path}", app.url)).header("content-type", "application/json").body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let cases: Vec<(Option<&str>, &str, &'static str, StatusCode, &str)> = vec![
        (None, "/v1/requests", "{}", StatusCode::UNAUTHORIZED, "unauthenticated"),
        (Some("wrong"), "/v1/requests", "{}", StatusCode::UNAUTHORIZED, "unauthenticated"),
        (Some("alice-token"), "/v1/requests", "{\"policy\": ", StatusCode::BAD_REQUEST, "malformed_json"),
        (Some("alice-token"), "/v1/requests", "[1,2]", StatusCode::BAD_REQUEST, "bad_parameter"),
        (Some("alice-token"), "/v1/requests", "{\"policy\": 7, \"context\": {}}", StatusCode::BAD_REQUEST, "bad_parameter"),
        (Some("alice-token"), "/v1/requests", "{\"policy\": \"any\"}", StatusCode::BAD_REQUEST, "bad_parameter"),
        (Some("alice-token"), "/v1/requests", "{\"policy\": \"any\", \"context\": {}, \"colour\": 1}", StatusCode::BAD_REQUEST, "bad_parameter"),
        (Some("alice-token"), "/v1/requests", "{\"policy\": \"nope\", \"context\": {}}", StatusCode::UNPROCESSABLE_ENTITY, "unknown_policy"),
        (Some("alice-token"), "/v1/requests", "{\"policy\": \"any\", \"context\": 5}", StatusCode::UNPROCESSABLE_ENTITY, "invalid_context"),
        (Some("alice-token"), "/v1/requests", "{\"policy\": \"quote-discount\", \"context\": {\"quote\": {}}}", StatusCode::UNPROCESSABLE_ENTITY, "invalid_context"),
        (Some("alice-token"), "/v1/requests", "{\"policy\": \"cap\", \"context\": {}}", StatusCode::UNPROCESSABLE_ENTITY, "planning_error"),
        (Some("alice-token"), "/v1/requests/req_nope/actions", "{\"action\": \"approve\", \"step\": \"x\"}", StatusCode::NOT_FOUND, "not_found"),
        (Some("alice-token"), "/v1/nowhere", "{}", StatusCode::NOT_FOUND, "not_found"),
        (Some("alice-token"), "/v1/policies/validate", "id: x\nsteps: []\ncolour: 1\n", StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy"),
        (Some("alice-token"), "/v1/policies/any/plan", "{\"context\": {}, \"requester\": \"ghost\"}", StatusCode::UNPROCESSABLE_ENTITY, "unknown_user"),
    ];
    for (token, path, body, status, code) in cases {
        let (got, problem) = raw(token, path, body).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{path} {body}: {problem}");
    }
    // Every problem of an invalid policy is listed.
    let (_, problem) = raw(Some("alice-token"), "/v1/policies/validate", "id: Bad\ncolour: 1\nsteps: [{id: a, approvers: {}, when: '1 +'}]\n").await;
    assert_eq!(problem["valid"], false);
    assert!(problem["errors"].as_array().unwrap().len() >= 4, "{problem}");
    // Legal but wrong against the server's directory: valid, with warnings beside the errors.
    let (status, answer) = raw(Some("alice-token"), "/v1/policies/validate", "id: w\nsteps:\n  - {id: ops, approvers: {groups: [sre, ghosts]}, sla: 1h, escalation: [{after: 2h, to: {users: [nobody]}}]}\n").await;
    assert_eq!((status, &answer["valid"]), (StatusCode::OK, &json!(true)), "{answer}");
    let paths: Vec<&str> = answer["warnings"].as_array().unwrap().iter().map(|w| w["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["steps.ops.approvers.groups", "steps.ops.escalation[0].to.users", "steps.ops.escalation[0].to", "steps.ops.escalation[0].after"], "{answer}");
    let (_, answer) = raw(Some("alice-token"), "/v1/policies/validate", "id: fine\nsteps: [{id: a, approvers: {groups: [sre]}}]\n").await;
    assert_eq!(answer["warnings"], json!([]), "{answer}");

    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    for (body, status, code) in [
        (json!({"action": "approve"}), StatusCode::BAD_REQUEST, "bad_parameter"),
        (json!({"action": "explode", "step": "finance"}), StatusCode::BAD_REQUEST, "bad_parameter"),
        (json!({"action": "approve", "step": "nope"}), StatusCode::NOT_FOUND, "not_found"),
        (json!({"action": "delegate", "step": "finance", "to": "ghost"}), StatusCode::UNPROCESSABLE_ENTITY, "unknown_user"),
        (json!({"action": "approve", "step": "finance", "edits": {"x": 1}}), StatusCode::UNPROCESSABLE_ENTITY, "edit_key_not_allowed"),
    ] {
        let (got, problem) = app.act("fiona", &id, body.clone()).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{body}: {problem}");
    }
    // An undecodable path parameter is a problem too.
    let resp = app.http.get(format!("{}/v1/requests/%FF", app.url)).bearer_auth("alice-token").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "bad_parameter");
    // Someone not on the plan cannot even see the request.
    let (status, _) = app.get("bob", &format!("/v1/requests/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An oversized body is refused and the connection survives.
    let big = format!("{{\"policy\": \"any\", \"context\": {{\"blob\": \"{}\"}}}}", "x".repeat(2 * 1024 * 1024));
    let resp = app.http.post(format!("{}/v1/requests", app.url)).bearer_auth("alice-token").body(big).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "too_large");
    let (status, _) = app.get("alice", "/v1/inbox").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn policies_plan_reload_and_operations() {
    let app = spawn_app().await;
    let (_, list) = app.get("alice", "/v1/policies").await;
    assert_eq!(list["items"].as_array().unwrap().len(), POLICIES.len());
    let (status, p) = app.get("alice", "/v1/policies/quote-discount").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["steps"][0]["id"], "manager");
    let (status, plan) = app.post("alice", "/v1/policies/quote-discount/plan", json!({"context": quote(0.18, 0.21)})).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["current_tasks"], json!(["manager", "finance"]));
    let (_, page) = app.get("alice", "/v1/requests").await;
    assert_eq!(page["items"], json!([]), "planning stores nothing");

    let (status, body) = app.post("alice", "/v1/admin/reload", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (status, body) = app.post("root", "/v1/admin/reload", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let resp = app.http.get(format!("{}{path}", app.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let doc: Value = app.http.get(format!("{}/openapi.json", app.url)).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/v1/requests/{id}/actions"]["post"].is_object());
    let metrics = app.http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("signoff_http_requests_total"), "{metrics}");
}
