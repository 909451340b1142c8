//! The contract under stress, on SQLite and on PostgreSQL alike: refusals with their precise
//! codes and a bounded record of them, what goes in coming back out, bounded responses.

use signoff_testkit::app::*;
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

/// A context nesting `depth` levels: an object holding nested arrays.
fn deep_context(depth: usize) -> Value {
    let text = format!("{{\"x\": {}}}", signoff_engine::nesting::nested(depth - 1, "7"));
    signoff_store::decode(&text).unwrap()
}

/// Every request of `store`, exported and imported into a fresh SQLite store: the import's
/// counts, and the events of `id` as they arrived.
async fn export_and_import(store: &dyn signoff_store::Store, id: &str) -> (signoff_server::transfer::Counts, Vec<signoff_engine::Event>) {
    let mut out = Vec::new();
    let exported = signoff_server::transfer::export(store, &mut out).await.expect("the export reads every request");
    let dir = tempfile::tempdir().unwrap();
    let target = signoff_store_sqlite::SqliteStore::open(dir.path().join("copy.db")).unwrap();
    let imported = signoff_server::transfer::import(&target, &mut std::io::Cursor::new(out)).await.expect("the import reads every line");
    assert_eq!(exported, imported);
    let events = signoff_store::Store::events(&target, id).await.unwrap();
    (imported, events)
}

async fn what_is_accepted_can_be_read_back(app: &App) {
    use signoff_engine::nesting::MAX_DEPTH;
    // The body nests MAX_DEPTH levels: {"context": {"x": [[…]]}}.
    let context = deep_context(MAX_DEPTH - 1);
    let (status, body) = app.post("alice", "/v1/requests", json!({"policy": "any", "context": context})).await;
    assert_eq!(status, StatusCode::CREATED, "a body at the limit is accepted: {body}");
    let id = body["id"].as_str().unwrap().to_string();
    let events = app.events(&id).await;
    assert_eq!(events[0]["data"]["context"], context, "what went in comes out");
    let (status, r) = app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!((status, &r["context"]), (StatusCode::OK, &context));
    let (status, page) = app.get("root", "/v1/requests?limit=500").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (_, copied) = export_and_import(app.service.store().as_ref(), &id).await;
    assert_eq!(serde_json::to_value(&copied).unwrap(), Value::Array(events.clone()));

    // One level more is refused at the door, with the limit in the message.
    let (status, body) = app.post("alice", "/v1/requests", json!({"policy": "any", "context": deep_context(MAX_DEPTH)})).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "too_deep"), "{body}");
    assert!(body["detail"].as_str().unwrap().contains(&MAX_DEPTH.to_string()), "{body}");
    // Far deeper too (beyond what a JSON parser's own limit would take), on every JSON body.
    let far = format!("{{\"policy\": \"any\", \"context\": {{\"x\": {}}}}}", signoff_engine::nesting::nested(5000, "1"));
    for (path, text) in [("/v1/requests", far.clone()), (&*format!("/v1/requests/{id}/actions"), far.clone()), ("/v1/policies/any/plan", far)] {
        let resp = app.http.post(format!("{}{path}", app.url)).bearer_auth("alice-token").header("content-type", "application/json").body(text).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(code(&body), "too_deep", "{path}: {body}");
    }

    // What an earlier release let in (a context 126 levels deep, stored without the door's
    // check) is read back too: by the store, the API's history and the export.
    let catalog = app.service.catalog();
    let policy = &catalog.policies["any"];
    let sub = signoff_engine::Submission {
        id: "req_legacy_deep".into(), requester: "alice".into(), title: None, subject: None,
        context: deep_context(126), evidence: vec![], lineage: None, resubmits: None,
    };
    let (events, state) = signoff_engine::machine::submit(policy, &catalog.directory, sub, app.service.now()).unwrap();
    let commit = signoff_store::Commit {
        expected_version: 0, events, state: std::sync::Arc::new(state), idempotency: None,
        notifications: vec![], encoded_state: None, previous: None,
    };
    assert_eq!(app.service.store().commit(commit).await.unwrap(), signoff_store::CommitOutcome::Committed);
    let store = app.service.store();
    assert_eq!(store.load("req_legacy_deep").await.unwrap().unwrap().context, deep_context(126));
    assert_eq!(store.events("req_legacy_deep").await.unwrap()[0].kind.type_name(), "submitted");
    let resp = app.http.get(format!("{}/v1/requests/req_legacy_deep/events", app.url)).bearer_auth("alice-token").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (counts, copied) = export_and_import(store.as_ref(), "req_legacy_deep").await;
    assert_eq!(counts.requests, 2);
    assert_eq!(copied.len(), 2);
}

async fn list_pages_are_bounded_by_bytes(app: &App) {
    // Twelve requests of 0.9 MB each: 10.8 MB of JSON in all, more than a page may hold.
    let blob = "x".repeat(900 * 1024);
    let mut ids = Vec::new();
    for i in 0..12 {
        let r = app.submit("alice", "any", json!({"blob": blob, "i": i})).await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let page_bytes = signoff_server::Memory::default().page_bytes;
    let mut seen = Vec::new();
    let mut path = "/v1/requests?limit=500".to_string();
    let mut pages = 0;
    loop {
        let resp = app.http.get(format!("{}{path}", app.url)).bearer_auth("alice-token").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        assert!(text.len() <= page_bytes + 1024 * 1024, "a page of {} bytes", text.len());
        let page: Value = serde_json::from_str(&text).unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty());
        seen.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/requests?limit=500&cursor={c}"),
            None => break,
        }
    }
    assert!(pages >= 2, "the list took {pages} page(s)");
    ids.reverse();
    assert_eq!(seen, ids, "every request once, newest first");
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

on_both_stores!(refusals_follow_the_contract, one_caller_cannot_flood_a_history, what_is_accepted_can_be_read_back, list_pages_are_bounded_by_bytes);

/// The OpenAPI document says what the server does: query parameters in the query, every
/// operation present, errors as problem+json with 401 wherever a token is needed, a quorum
/// that is a number, typed bodies, and (signed in) the loaded policies' context schemas.
#[tokio::test]
async fn the_openapi_document_is_true() {
    let app = spawn_app().await;
    let doc: Value = app.http.get(format!("{}/openapi.json", app.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, names) in [("/v1/requests", &["status", "policy", "requester", "approver", "subject", "limit", "cursor"][..]), ("/v1/inbox", &["limit"]), ("/v1/requests/{id}/wait", &["timeout"])] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        for name in names {
            let p = params.iter().find(|p| p["name"] == *name).unwrap_or_else(|| panic!("{path}: no {name}"));
            assert_eq!(p["in"], "query", "{path} {name}");
            assert_ne!(p["required"], true, "{path} {name}");
        }
    }
    for (path, method) in [("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"), ("/openapi.json", "get"), ("/slack/interactions", "post"), ("/email/act", "get"), ("/email/act", "post")] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is missing");
        assert_eq!(op["security"], json!([{}]), "{method} {path} needs no token: {op}");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = r["content"].as_object().unwrap_or_else(|| panic!("{method} {path} {status}: no content"));
                    assert!(content.contains_key("application/problem+json") || path == "/email/act", "{method} {path} {status}: {r}");
                    assert!(!content.contains_key("application/json"), "{method} {path} {status}");
                }
            }
            if op.get("security").is_none() {
                assert!(responses.contains_key("401"), "{method} {path} needs a token but declares no 401");
            }
        }
    }
    let quorum = &doc["components"]["schemas"]["StepState"]["properties"]["quorum"];
    assert_eq!(quorum["$ref"], "#/components/schemas/Quorum");
    assert_eq!(doc["components"]["schemas"]["Quorum"]["oneOf"][0]["type"], "integer");
    assert_eq!(doc["paths"]["/v1/inbox"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["items"]["items"]["$ref"], "#/components/schemas/Task");
    assert_eq!(doc["components"]["schemas"]["Event"]["properties"]["type"]["enum"].as_array().unwrap().len(), 19);
    assert!(doc["paths"]["/v1/requests/{id}/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"].is_object());
    assert!(!doc.to_string().contains("quote-discount"), "the public document names no policy");

    // Signed in, the document names each loaded policy with its context schema.
    let (status, full) = app.get("alice", "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let variants = full["paths"]["/v1/requests"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"].as_array().unwrap();
    let quote = variants.iter().find(|v| v["allOf"][1]["properties"]["policy"]["const"] == "quote-discount").expect("quote-discount is offered");
    assert_eq!(quote["allOf"][1]["properties"]["context"]["required"], json!(["quote"]));
    let plan = &full["paths"]["/v1/policies/quote-discount/plan"]["post"];
    assert_eq!(plan["requestBody"]["content"]["application/json"]["schema"]["properties"]["context"]["required"], json!(["quote"]));
    let (status, _) = app.get("", "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
