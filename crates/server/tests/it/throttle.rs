//! Rate limits over real HTTP: per caller and per client address by class, failed
//! authentication shutting an address out, refills on the injected clock, the 429's
//! `Retry-After` and the metric; and on PostgreSQL, buckets (and the Slack replay guard) shared
//! by two instances.

use std::sync::Arc;

use axum::http::StatusCode;
use jiff::SignedDuration;
use serde_json::{Value, json};
use signoff_server::throttle::{RateLimits, RateLimitsFile};
use signoff_server::{Database, ManualClock};
use signoff_testkit::app::*;

fn limits(toml: &str) -> RateLimits {
    let file: RateLimitsFile = toml::from_str(toml).unwrap();
    file.resolve().unwrap().unwrap()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new("2026-12-02T09:00:00Z".parse().unwrap()))
}

/// A submission by `user` with `token`: its status, `Retry-After` and body.
async fn submit_as(app: &App, token: &str) -> (StatusCode, Option<String>, Value) {
    let resp = app
        .http
        .post(format!("{}/v1/requests", app.url))
        .bearer_auth(token)
        .json(&json!({"policy": "any", "context": {}}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.json().await.unwrap())
}

async fn read_as(app: &App, token: &str) -> StatusCode {
    app.http.get(format!("{}/v1/inbox", app.url)).bearer_auth(token).send().await.unwrap().status()
}

#[tokio::test]
async fn a_caller_past_its_submission_limit_is_told_when_to_come_back() {
    let clock = clock();
    let app = spawn_app_configured(clock.clone(), None, |c| c.rate_limits = Some(limits("submissions = { caller = \"3/s\" }\n"))).await;
    for _ in 0..3 {
        assert_eq!(submit_as(&app, "alice-token").await.0, StatusCode::CREATED);
    }
    let (status, retry, body) = submit_as(&app, "alice-token").await;
    assert_eq!((status, retry.as_deref(), body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("1"), Some("rate_limited")));
    assert!(body["detail"].as_str().unwrap().contains("alice"), "{body}");
    assert_eq!(submit_as(&app, "mark-token").await.0, StatusCode::CREATED, "another caller has a bucket of its own");
    assert_eq!(read_as(&app, "alice-token").await, StatusCode::OK, "reads are another class");
    clock.advance(SignedDuration::from_millis(340));
    assert_eq!(submit_as(&app, "alice-token").await.0, StatusCode::CREATED, "a third of a second brings one token back");
    assert_eq!(submit_as(&app, "alice-token").await.0, StatusCode::TOO_MANY_REQUESTS);
    let scrape = app.http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    let line = scrape.lines().find(|l| l.starts_with("signoff_rate_limited_total{") && l.contains("class=\"submissions\"") && l.contains("by=\"caller\"")).unwrap();
    let counted: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= 2.0, "{line}");
    assert!(scrape.lines().any(|l| l.starts_with("signoff_http_requests_total{") && l.contains("status=\"429\"")), "counted as answered");
}

#[tokio::test]
async fn one_address_is_limited_whoever_calls_from_it() {
    let clock = clock();
    let app = spawn_app_configured(clock.clone(), None, |c| c.rate_limits = Some(limits("reads = { caller = \"off\", address = \"4/s\" }\n"))).await;
    for token in ["alice-token", "mark-token", "fiona-token", "frank-token"] {
        assert_eq!(read_as(&app, token).await, StatusCode::OK);
    }
    assert_eq!(read_as(&app, "lena-token").await, StatusCode::TOO_MANY_REQUESTS, "the fifth read from 127.0.0.1 in the second");
    let resp = app.http.get(format!("{}/healthz", app.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the probes are never limited");
    clock.advance(SignedDuration::from_secs(1));
    assert_eq!(read_as(&app, "lena-token").await, StatusCode::OK);
}

#[tokio::test]
async fn guessing_tokens_shuts_the_address_out_and_a_browser_gets_a_page() {
    let clock = clock();
    let app = spawn_app_configured(clock.clone(), None, |c| c.rate_limits = Some(limits("failed_auth = \"3/min\"\n"))).await;
    for guess in 0..3 {
        assert_eq!(read_as(&app, &format!("guess-{guess}")).await, StatusCode::UNAUTHORIZED);
    }
    let resp = app.http.get(format!("{}/v1/inbox", app.url)).bearer_auth("guess-3").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "20", "a token flows in every 20 s");
    assert_eq!(read_as(&app, "alice-token").await, StatusCode::TOO_MANY_REQUESTS, "even a good token is not checked from a shut-out address");
    // The web inbox's sign-in form counts too, and answers with a page.
    let form = app
        .http
        .post(format!("{}/signin", app.url))
        .header("accept", "text/html")
        .form(&[("token", "alice-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(form.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(form.text().await.unwrap().contains("too many failed authentications"));
    clock.advance(SignedDuration::from_secs(20));
    assert_eq!(read_as(&app, "alice-token").await, StatusCode::OK, "back once a token has flowed in");
    assert_eq!(read_as(&app, "guess-4").await, StatusCode::UNAUTHORIZED, "the next failure takes that token");
    assert_eq!(read_as(&app, "guess-5").await, StatusCode::TOO_MANY_REQUESTS, "and the one after is shut out again");
}

#[tokio::test]
async fn without_limits_nothing_is_limited() {
    let app = spawn_app().await;
    for guess in 0..50 {
        assert_eq!(read_as(&app, &format!("guess-{guess}")).await, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_two_instances_draw_from_the_same_buckets() {
    use signoff_server::notify::NotifyConfig;
    use signoff_server::notify::slack::{SlackConfig, sign};
    use signoff_testkit::peers::slack::{SIGNING, TOKEN, start_slack};
    let Some(db) = signoff_store_postgres::testing::TestDatabase::create("rate limits across instances") else { return };
    let (_slack, slack_url) = start_slack().await;
    let clock = clock();
    let config = |c: &mut signoff_server::Config| {
        c.rate_limits = Some(limits("submissions = { caller = \"3/s\" }\n"));
        c.notify = NotifyConfig { slack: Some(SlackConfig { api_url: slack_url.clone(), token: TOKEN.into(), signing_secret: SIGNING.into(), channel: None }), ..Default::default() };
    };
    let a = spawn_app_configured(clock.clone(), Some(Database::Postgres(db.url.clone())), config).await;
    let b = spawn_app_configured(clock.clone(), Some(Database::Postgres(db.url.clone())), config).await;
    assert_eq!(submit_as(&a, "alice-token").await.0, StatusCode::CREATED);
    assert_eq!(submit_as(&b, "alice-token").await.0, StatusCode::CREATED);
    let (_, _, third) = submit_as(&a, "alice-token").await;
    assert_eq!(submit_as(&b, "alice-token").await.0, StatusCode::TOO_MANY_REQUESTS, "the fourth, whichever instance takes it");
    assert_eq!(submit_as(&a, "alice-token").await.0, StatusCode::TOO_MANY_REQUESTS);
    clock.advance(SignedDuration::from_secs(1));
    assert_eq!(submit_as(&b, "alice-token").await.0, StatusCode::CREATED);
    // A Slack click signed once is taken once, by either instance.
    let id = third["id"].as_str().unwrap();
    let ts = signoff_server::Clock::now(clock.as_ref()).as_second().to_string();
    let payload = json!({"type": "block_actions", "user": {"id": "U-frank"}, "actions": [{"action_id": "approve", "value": format!("{id}|finance")}]});
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let signature = sign(SIGNING, &ts, body.as_bytes());
    let click = |app: &App| {
        app.http
            .post(format!("{}/slack/interactions", app.url))
            .header("x-slack-request-timestamp", ts.clone())
            .header("x-slack-signature", signature.clone())
            .body(body.clone())
            .send()
    };
    assert_eq!(click(&a).await.unwrap().status(), StatusCode::OK);
    let replay = click(&b).await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED, "replayed to the other instance");
    drop((a, b));
}
