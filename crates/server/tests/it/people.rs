//! People, groups, tokens and out-of-office through the API: admins only (but one's own
//! out-of-office), tokens shown once, kept as hashes, expiring and revocable on the injected
//! clock; every change recorded with who, when and from where in a hash chain; changes kept
//! over a reload of the directory file, and seen by a second instance on PostgreSQL.

use std::sync::Arc;

use axum::http::StatusCode;
use jiff::SignedDuration;
use reqwest::Method;
use serde_json::{Value, json};
use signoff_server::{Database, ManualClock};
use signoff_testkit::app::*;

/// A call with a bearer token (not a `<user>-token` of the test directory).
async fn with_token(app: &App, token: &str, path: &str) -> (StatusCode, Value) {
    let resp = app.http.get(format!("{}{path}", app.url)).bearer_auth(token).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

async fn put(app: &App, user: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.call(user, Method::PUT, path, Some(body), None).await
}

async fn delete(app: &App, user: &str, path: &str) -> (StatusCode, Value) {
    app.call(user, Method::DELETE, path, None, None).await
}

#[tokio::test]
async fn admins_add_people_and_issue_tokens_shown_once_that_expire_and_are_revoked() {
    let clock = Arc::new(ManualClock::new("2026-12-02T09:00:00Z".parse().unwrap()));
    let app = spawn_app_with(clock.clone(), "").await;
    let (status, nia) = put(&app, "root", "/v1/admin/users/nia", json!({"name": "Nia Okafor", "email": "nia@example.com", "manager": "mark"})).await;
    assert_eq!(status, StatusCode::OK, "{nia}");
    assert_eq!((nia["name"].as_str(), nia["admin"].as_bool(), nia["change"].as_u64()), (Some("Nia Okafor"), Some(false), Some(1)));
    let (status, _) = put(&app, "root", "/v1/admin/groups/finance", json!({"members": ["fiona", "frank", "nia"]})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, issued) = app.post("root", "/v1/admin/tokens", json!({"user": "nia", "name": "laptop", "expires_in": "1h"})).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().unwrap().to_string();
    assert_eq!(issued["expires"], "2026-12-02T10:00:00Z");
    let (status, me) = with_token(&app, &token, "/v1/me").await;
    assert_eq!((status, me["id"].as_str(), me["groups"].clone()), (StatusCode::OK, Some("nia"), json!(["finance"])));
    let (_, listed) = app.get("root", "/v1/admin/tokens").await;
    assert_eq!(listed["items"][0]["id"], issued["id"]);
    assert!(!listed.to_string().contains(&token), "the token is shown once, never listed");
    // nia, now in finance, can act on a finance step.
    let id = app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    let act = app
        .http
        .post(format!("{}/v1/requests/{id}/actions", app.url))
        .bearer_auth(&token)
        .json(&json!({"action": "approve", "step": "finance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(act.status(), StatusCode::OK);

    clock.advance(SignedDuration::from_hours(1));
    assert_eq!(with_token(&app, &token, "/v1/me").await.0, StatusCode::UNAUTHORIZED, "expired");
    let (_, second) = app.post("root", "/v1/admin/tokens", json!({"user": "nia"})).await;
    let second_token = second["token"].as_str().unwrap().to_string();
    assert_eq!(with_token(&app, &second_token, "/v1/me").await.0, StatusCode::OK);
    let (status, _) = delete(&app, "root", &format!("/v1/admin/tokens/{}", second["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(with_token(&app, &second_token, "/v1/me").await.0, StatusCode::UNAUTHORIZED, "revoked");

    // Mistakes are named.
    let (status, body) = app.post("root", "/v1/admin/tokens", json!({"user": "ghost"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_user")));
    let (status, _) = delete(&app, "root", "/v1/admin/tokens/tok_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = put(&app, "root", "/v1/admin/users/has%20space", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_parameter")));
    let (status, _) = put(&app, "alice", "/v1/admin/users/eve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins");

    // Every change, with who, when, from where, chained.
    let (_, changes) = app.get("root", "/v1/admin/directory/changes").await;
    let items = changes["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{changes}");
    assert_eq!(items.iter().map(|c| c["change"]["op"].as_str().unwrap()).collect::<Vec<_>>(), ["put_user", "put_group", "issue_token", "issue_token", "revoke_token"]);
    assert!(items.iter().all(|c| c["actor"] == "root" && c["origin"]["address"] == "127.0.0.1"));
    for pair in items.windows(2) {
        assert_eq!(pair[1]["prev"], pair[0]["hash"]);
    }
    assert!(!changes.to_string().contains(&token), "only hashes are recorded");
    assert_eq!(app.get("alice", "/v1/admin/directory/changes").await.0, StatusCode::FORBIDDEN);

    // A reload of the file keeps what the API changed.
    app.service.reload().await.unwrap();
    let (status, nia) = app.get("root", "/v1/users/nia/directory").await;
    assert_eq!((status, nia["groups"].clone()), (StatusCode::OK, json!(["finance"])));
    let (_, removed) = delete(&app, "root", "/v1/admin/users/nia").await;
    assert_eq!(removed["removed"], true);
    assert_eq!(app.get("root", "/v1/users/nia/directory").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_person_sets_their_own_out_of_office_and_their_work_goes_to_the_delegate() {
    let app = spawn_app().await;
    let (status, mark) = put(&app, "mark", "/v1/users/mark/out-of-office", json!({"to": "vp-sales", "ends": "2099-01-01T00:00:00Z"})).await;
    assert_eq!(status, StatusCode::OK, "{mark}");
    assert_eq!(mark["out_of_office"][0]["to"], "vp-sales");
    let id = app.submit("alice", "seq", json!({})).await["id"].as_str().unwrap().to_string();
    let (_, inbox) = app.get("vp-sales", "/v1/inbox").await;
    assert!(inbox["items"].as_array().unwrap().iter().any(|t| t["request"] == id.as_str()), "{inbox}");
    assert_eq!(put(&app, "alice", "/v1/users/mark/out-of-office", json!({"to": "alice", "ends": "2099-01-01T00:00:00Z"})).await.0, StatusCode::FORBIDDEN, "not someone else's");
    let (status, body) = put(&app, "mark", "/v1/users/mark/out-of-office", json!({"to": "nobody", "ends": "2099-01-01T00:00:00Z"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_user")));
    let (status, body) = put(&app, "mark", "/v1/users/mark/out-of-office", json!({"to": "vp-sales", "ends": "2000-01-01T00:00:00Z"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_parameter")), "ends before it starts");
    let (status, mark) = delete(&app, "mark", "/v1/users/mark/out-of-office").await;
    assert_eq!((status, mark["out_of_office"].clone()), (StatusCode::OK, json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_change_on_one_instance_reaches_the_other() {
    let Some(db) = signoff_store_postgres::testing::TestDatabase::create("directory changes across instances") else { return };
    let clock = Arc::new(ManualClock::new("2026-12-02T09:00:00Z".parse().unwrap()));
    let a = spawn_app_configured(clock.clone(), Some(Database::Postgres(db.url.clone())), |_| {}).await;
    let b = spawn_app_configured(clock.clone(), Some(Database::Postgres(db.url.clone())), |_| {}).await;
    let (_, issued) = a.post("root", "/v1/admin/tokens", json!({"user": "alice", "name": "ci"})).await;
    let token = issued["token"].as_str().unwrap().to_string();
    b.service.catch_up_directory().await.unwrap();
    assert_eq!(with_token(&b, &token, "/v1/me").await.0, StatusCode::OK, "issued on a, accepted by b");
    // Both instances record changes; the numbers never collide.
    let (status, _) = put(&b, "root", "/v1/admin/users/omar", json!({"name": "Omar"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, omar) = put(&a, "root", "/v1/admin/groups/legal", json!({"members": ["lena", "omar"]})).await;
    assert_eq!(status, StatusCode::OK, "a reads b's change before deciding its own: {omar}");
    let (status, _) = delete(&b, "root", &format!("/v1/admin/tokens/{}", issued["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    a.service.catch_up_directory().await.unwrap();
    assert_eq!(with_token(&a, &token, "/v1/me").await.0, StatusCode::UNAUTHORIZED, "revoked on b, refused by a");
    let (_, changes) = a.get("root", "/v1/admin/directory/changes").await;
    let seqs: Vec<u64> = changes["items"].as_array().unwrap().iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    drop((a, b));
}
