//! Insights through the HTTP API: statistics and per-person summaries of a small history made
//! with an injected clock, checked against answers worked out by hand, and who may see them.

use std::sync::Arc;

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signoff_server::ManualClock;
use signoff_testkit::app::*;

const POLICIES: &[(&str, &str)] = &[
    ("desk.yaml", "id: desk\nowners: {users: [lena]}\nsteps:\n  - {id: a, approvers: {users: [mark]}, sla: 1h}\n  - {id: b, approvers: {users: [fiona]}, sla: 2h}\n"),
    ("auto.yaml", "id: auto\nauto_approve: ['amount < 10']\nsteps:\n  - {id: x, approvers: {users: [mark]}}\n"),
];

fn at(hhmm: &str) -> jiff::Timestamp {
    format!("2026-11-22T{hhmm}:00Z").parse().unwrap()
}

/// Moves `clock` to `hhmm` on the day of the history.
fn set(clock: &ManualClock, hhmm: &str) {
    clock.advance(at(hhmm).duration_since(clock_now(clock)));
}

fn clock_now(clock: &ManualClock) -> jiff::Timestamp {
    use signoff_server::Clock;
    clock.now()
}

/// The history, by the clock (09:00 to 13:30):
/// - R1 (desk) 09:00; mark approves a 09:30; fiona approves b 10:30: approved after 1h30.
/// - R2 (desk) 10:00; mark approves a 12:00 (due 11:00: late); fiona rejects b 12:30: rejected
///   after 2h30.
/// - R3 (auto) 12:30: approved at once.
/// - R4 (desk) 12:40, pending: a waits on mark, due 13:40.
async fn history() -> (App, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at("09:00")));
    let app = spawn_app_with(clock.clone(), "").await;
    for (name, text) in POLICIES {
        std::fs::write(app.dir.path().join("policies").join(name), text).unwrap();
    }
    app.service.reload().await.unwrap();
    let r1 = app.submit("alice", "desk", json!({})).await["id"].as_str().unwrap().to_string();
    set(&clock, "09:30");
    app.approve("mark", &r1, "a").await;
    set(&clock, "10:00");
    let r2 = app.submit("alice", "desk", json!({})).await["id"].as_str().unwrap().to_string();
    set(&clock, "10:30");
    assert_eq!(app.approve("fiona", &r1, "b").await["status"], "approved");
    set(&clock, "12:00");
    app.approve("mark", &r2, "a").await;
    set(&clock, "12:30");
    let (status, r) = app.act("fiona", &r2, json!({"action": "reject", "step": "b", "comment": "no"})).await;
    assert_eq!((status, &r["status"]), (StatusCode::OK, &json!("rejected")), "{r}");
    assert_eq!(app.submit("alice", "auto", json!({"amount": 5})).await["status"], "approved");
    set(&clock, "12:40");
    app.submit("alice", "desk", json!({})).await;
    set(&clock, "13:30");
    (app, clock)
}

fn step<'a>(stats: &'a Value, policy: &str, id: &str) -> &'a Value {
    stats["steps"].as_array().unwrap().iter().find(|s| s["policy"] == policy && s["step"] == id).unwrap_or_else(|| panic!("no {policy}/{id} in {stats}"))
}

#[tokio::test]
async fn statistics_match_the_hand_computed_answers() {
    let (app, _clock) = history().await;
    let (status, s) = app.get("root", "/v1/stats").await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["requests"], 4);
    assert_eq!(s["outcomes"], json!({"approved": 2, "cancelled": 0, "expired": 0, "pending": 1, "rejected": 1}));
    // Decided after 0 s, 5,400 s and 9,000 s: nearest-rank p50 is the 2nd, p90 and p99 the 3rd.
    assert_eq!(s["decision_time"], json!({"count": 3, "p50": 5400.0, "p90": 9000.0, "p99": 9000.0}));
    // R1 met both SLAs, R2 missed a's; R3 had none and R4's is not due yet.
    assert_eq!(s["sla_compliance"], json!({"count": 1, "of": 2, "rate": 0.5}));
    assert_eq!(s["auto_approval_rate"], json!({"count": 1, "of": 4, "rate": 0.25}));
    assert_eq!(s["escalation_rate"]["count"], 0);
    assert_eq!(s["timeout_rate"]["count"], 0);
    let a = step(&s, "desk", "a");
    assert_eq!((&a["activated"], &a["open"]), (&json!(3), &json!(1)), "{a}");
    assert_eq!(a["waiting"], json!({"count": 3, "p50": 0.0, "p90": 0.0, "p99": 0.0}));
    assert_eq!(a["deciding"], json!({"count": 2, "p50": 1800.0, "p90": 7200.0, "p99": 7200.0}));
    assert_eq!(a["sla_compliance"], json!({"count": 1, "of": 2, "rate": 0.5}));
    let b = step(&s, "desk", "b");
    // b waited on a for 30 min (R1) and 2 h (R2), and took 1 h and 30 min to decide.
    assert_eq!(b["waiting"], json!({"count": 2, "p50": 1800.0, "p90": 7200.0, "p99": 7200.0}));
    assert_eq!(b["deciding"], json!({"count": 2, "p50": 1800.0, "p90": 3600.0, "p99": 3600.0}));
    assert_eq!(b["sla_compliance"], json!({"count": 2, "of": 2, "rate": 1.0}));

    // A window and a policy narrow it: from 10:00, R2 to R4; desk alone, R1, R2 and R4.
    let (_, s) = app.get("root", &format!("/v1/stats?from={}", at("10:00"))).await;
    assert_eq!(s["requests"], 3, "{s}");
    let (_, s) = app.get("root", "/v1/stats?policy=desk").await;
    assert_eq!((&s["requests"], &s["auto_approval_rate"]["count"]), (&json!(3), &json!(0)), "{s}");
    let (status, s) = app.get("root", &format!("/v1/stats?from={}&to={}", at("12:00"), at("11:00"))).await;
    assert_eq!((status, &s["code"]), (StatusCode::BAD_REQUEST, &json!("bad_parameter")), "{s}");
    let (status, s) = app.get("root", "/v1/stats?from=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{s}");
}

#[tokio::test]
async fn summaries_match_the_hand_computed_answers() {
    let (app, clock) = history().await;
    // mark: R4's a is pending, due in 10 minutes (urgent); he answered after 30 min and 2 h.
    let (status, m) = app.get("mark", "/v1/users/me/summary").await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m, json!({"user": "mark", "pending": 1, "urgent": 1, "expiring": 0, "approved": 2, "rejected": 0, "delegated": 0, "median_response": 1800.0}));
    // fiona: nothing pending; one approval after 1 h, one rejection after 30 min.
    let (_, f) = app.get("root", "/v1/users/fiona/summary").await;
    assert_eq!(f, json!({"user": "fiona", "pending": 0, "urgent": 0, "expiring": 0, "approved": 1, "rejected": 1, "delegated": 0, "median_response": 1800.0}));
    // Decisions count in the window they were made in: from 11:00, only mark's 12:00 approval.
    let (_, m) = app.get("root", &format!("/v1/users/mark/summary?from={}", at("11:00"))).await;
    assert_eq!((&m["approved"], &m["median_response"], &m["pending"]), (&json!(1), &json!(7200.0), &json!(1)), "{m}");
    // Half an hour later the pending one is overdue (still urgent).
    clock.advance(SignedDuration::from_mins(30));
    let (_, m) = app.get("mark", "/v1/users/me/summary").await;
    assert_eq!(m["urgent"], 1);
}

#[tokio::test]
async fn statistics_are_for_admins_and_policy_owners() {
    let (app, _clock) = history().await;
    // lena owns desk: she sees its statistics (and only its), not auto's.
    let (status, s) = app.get("lena", "/v1/stats").await;
    assert_eq!((status, &s["requests"]), (StatusCode::OK, &json!(3)), "{s}");
    let (status, s) = app.get("lena", "/v1/stats?policy=auto").await;
    assert_eq!((status, &s["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")), "{s}");
    let (status, _) = app.get("alice", "/v1/stats").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, s) = app.get("root", "/v1/stats?policy=nope").await;
    assert_eq!(status, StatusCode::OK, "an admin may ask of a policy no longer loaded: {s}");
    assert_eq!(s["requests"], 0);
    let (status, _) = app.get("alice", "/v1/users/mark/summary").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, s) = app.get("root", "/v1/users/nobody/summary").await;
    assert_eq!((status, &s["code"]), (StatusCode::NOT_FOUND, &json!("not_found")), "{s}");
}

#[tokio::test]
async fn the_projection_is_stored_with_how_far_it_has_read() {
    let (app, _clock) = history().await;
    let (_, s) = app.get("root", "/v1/stats").await;
    assert_eq!(s["requests"], 4);
    let store = app.service.store();
    let size = store.log_size().await.unwrap().size;
    assert_eq!(store.facts_cursor().await.unwrap(), size, "read to the end of the log");
    let rows = store.facts_page((0, ""), 100).await.unwrap();
    assert_eq!(rows.len(), 4, "one row per request");
    let facts: Vec<signoff_insights::RequestFacts> = rows.iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    assert_eq!(facts.iter().filter(|f| f.status == signoff_engine::RequestStatus::Pending).count(), 1);
}

#[tokio::test]
async fn seeding_makes_the_same_varied_history_from_the_same_seed() {
    use signoff_server::seed::{Plan, Scenario, run};
    let catalog = signoff_server::catalog::Catalog::load(&Default::default()).unwrap();
    let plan = Plan { scenarios: Scenario::parse("all").unwrap(), requests: 600, days: 14, until: at("09:00"), seed: 7 };
    let mut reports = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let store = signoff_server::Database::Sqlite(dir.path().join("seeded.db")).open().await.unwrap();
        let report = run(&*store, &catalog, &plan).await.unwrap();
        // Every request's history is a valid chain whose fold is the stored state.
        let page = store.list(&signoff_store::ListQuery { limit: 50, ..Default::default() }).await.unwrap();
        for r in &page.items {
            let events = store.events(r.id.as_str()).await.unwrap();
            signoff_engine::event::verify_chain(&events).unwrap();
            assert_eq!(&signoff_engine::RequestState::fold(&events).unwrap(), r, "{}", r.id);
        }
        reports.push((report, dir));
    }
    let (a, b) = (&reports[0].0, &reports[1].0);
    assert_eq!(a, b, "the same seed, the same history");
    assert_eq!(a.requests, 600 + a.resubmissions);
    assert!(a.resubmissions > 0, "{a:?}");
    for status in ["approved", "rejected", "expired", "pending"] {
        assert!(a.statuses.get(status).copied().unwrap_or(0) > 0, "some {status}: {a:?}");
    }
    // Escalations, timeouts and auto-approvals all happen.
    let dir = &reports[0].1;
    let store = signoff_server::Database::Sqlite(dir.path().join("seeded.db")).open().await.unwrap();
    let projection = signoff_server::insights::Projection::default();
    projection.refresh(&*store).await.unwrap();
    let window = signoff_insights::stats::Window { from: 0, to: i64::MAX, policy: None };
    let s = projection.read(|f| signoff_insights::stats::stats(f, &window, at("09:00").as_millisecond()));
    assert_eq!(s.requests, a.requests);
    assert!(s.escalation_rate.count > 0 && s.timeout_rate.count > 0 && s.auto_approval_rate.count > 0, "{s:?}");
    assert!(s.sla_compliance.rate < 1.0, "some SLAs are missed: {s:?}");
}

/// Fits on the past and scores the future over seeded history: a prediction made at each cut
/// for every step open then, against when it was decided. Three seeds, each on its own
/// (docs/analytics.md reports these runs).
#[tokio::test]
async fn predictions_backtest_within_the_targets() {
    use signoff_server::seed::{Plan, Scenario, run};
    let catalog = signoff_server::catalog::Catalog::load(&Default::default()).unwrap();
    let until = at("09:00");
    for seed in [11, 12, 13] {
        let plan = Plan { scenarios: Scenario::parse("all").unwrap(), requests: 6000, days: 90, until, seed };
        let dir = tempfile::tempdir().unwrap();
        let store = signoff_server::Database::Sqlite(dir.path().join("seeded.db")).open().await.unwrap();
        run(&*store, &catalog, &plan).await.unwrap();
        let projection = signoff_server::insights::Projection::default();
        projection.refresh(&*store).await.unwrap();
        let end = until.as_millisecond();
        // A cut every 13 hours from day 40 to day 83 (fit on 40 days at least; a week to see
        // what happened after the last).
        let cuts: Vec<i64> = (0..80).map(|i| end - 50 * 86_400_000 + i * 13 * 3_600_000).collect();
        let b = projection.read(|f| {
            let facts: Vec<&signoff_insights::RequestFacts> = f.collect();
            signoff_insights::predict::backtest(&facts, &cuts, end)
        });
        eprintln!("seed {seed}: {b:?}");
        assert!(b.scored > 1000, "seed {seed}: {b:?}");
        assert!((0.85..=0.95).contains(&b.p90_coverage), "seed {seed}: p90 covers {:.3}: {b:?}", b.p90_coverage);
        assert!(b.median_abs_error <= 0.7 * b.baseline_median_abs_error, "seed {seed}: {b:?}");
    }
}

#[tokio::test]
async fn a_pending_request_shows_its_predicted_decision() {
    let (app, _clock) = history().await;
    let (_, page) = app.get("root", "/v1/requests?status=pending").await;
    let pending = page["items"][0]["id"].as_str().unwrap().to_string();
    let (status, r) = app.get("alice", &format!("/v1/requests/{pending}")).await;
    assert_eq!(status, StatusCode::OK);
    let p = &r["prediction"];
    // Five activations of desk's steps are all there is: the policy's history, not the step's.
    assert_eq!((&p["basis"], &p["samples"], &p["steps"][0]["step"]), (&json!("policy"), &json!(5), &json!("a")), "{r}");
    let (p50, p90) = (p["steps"][0]["p50"].as_f64().unwrap(), p["steps"][0]["p90"].as_f64());
    assert!(p50 > 0.0 && p90.is_none_or(|p90| p90 >= p50), "{p}");
    // Closed requests have none.
    let (_, page) = app.get("root", "/v1/requests?status=approved").await;
    let closed = page["items"][0]["id"].as_str().unwrap();
    let (_, r) = app.get("alice", &format!("/v1/requests/{closed}")).await;
    assert!(r.get("prediction").is_none(), "{r}");
}

async fn simulate(app: &App, user: &str, policy: &str, candidate: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .post(format!("{}/v1/policies/{policy}/simulate", app.url))
        .bearer_auth(format!("{user}-token"))
        .header("content-type", "application/yaml")
        .body(candidate.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn simulation_reports_exactly_what_a_policy_change_would_route_differently() {
    let app = spawn_app().await;
    let live = include_str!("../../../../examples/policies/quote-discount.yaml");
    let mut ids = Vec::new();
    for discount in [0.02, 0.07, 0.08, 0.12, 0.20] {
        let r = app.submit("alice", "quote-discount", json!({"quote": {"total": 48000, "discount": discount, "margin": 0.30, "nonstandard_clause": false}})).await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    // The live policy itself: nothing differs.
    let (status, same) = simulate(&app, "root", "quote-discount", live).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!((&same["requests"], &same["differ"], &same["differences"], &same["load"]), (&json!(5), &json!(0), &json!({}), &json!([])), "{same}");
    assert_eq!(same["decision_time"]["mean_change"], 0.0);
    // The manager's threshold lowered from 10% to 5%: the 7% and 8% quotes gain the step, and
    // mark (the sales managers) two more tasks.
    let lower = live.replace("when: 'quote.discount > 0.10'", "when: 'quote.discount > 0.05'");
    assert_ne!(lower, live);
    let (status, r) = simulate(&app, "root", "quote-discount", &lower).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!((&r["requests"], &r["differ"]), (&json!(5), &json!(2)), "{r}");
    let added = &r["differences"]["steps_added"];
    assert_eq!(added["count"], 2, "{r}");
    let examples: Vec<&str> = added["examples"].as_array().unwrap().iter().map(|e| e["request"].as_str().unwrap()).collect();
    let mut expected = vec![ids[1].as_str(), ids[2].as_str()];
    let mut got = examples.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{r}");
    assert_eq!(added["examples"][0]["detail"], "adds manager");
    assert_eq!(r["differences"].as_object().unwrap().len(), 1, "nothing else differs: {r}");
    let load: Vec<(String, i64)> = r["load"].as_array().unwrap().iter().map(|l| (l["id"].as_str().unwrap().to_string(), l["change"].as_i64().unwrap())).collect();
    assert!(load.contains(&("mark".into(), 2)) && load.contains(&("sales-managers".into(), 2)), "{r}");
    assert!(r["decision_time"]["mean_change"].as_f64().unwrap() >= 0.0, "an added step never makes it faster: {r}");
    // Auto-approving everything under 50,000: all five.
    let auto = live.replace("'quote.total < 1000'", "'quote.total < 50000'");
    let (_, r) = simulate(&app, "root", "quote-discount", &auto).await;
    assert_eq!((&r["differences"]["auto_approved"]["count"], &r["auto_approval_after"]["count"]), (&json!(5), &json!(5)), "{r}");
    // Two of three SREs become one: a changed quorum.
    app.submit("alice", "prod-deploy", json!({"service": "billing", "image": "r/billing:1", "replicas": 2, "canary_percent": 10})).await;
    let deploy = include_str!("../../../../examples/policies/prod-deploy.yaml");
    let (_, r) = simulate(&app, "root", "prod-deploy", &deploy.replace("quorum: 2", "quorum: 1")).await;
    assert_eq!((&r["differ"], &r["differences"]["quorum_changed"]["examples"][0]["detail"]), (&json!(1), &json!("sre: 1 to approve instead of 2")), "{r}");
    // Who may ask, and what a bad candidate gets.
    let (status, _) = simulate(&app, "alice", "quote-discount", live).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, r) = simulate(&app, "root", "quote-discount", "id: x\nsteps: []\n").await;
    assert_eq!((status, &r["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_policy")), "{r}");
    let (status, _) = simulate(&app, "root", "nope", live).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn on_postgresql_the_projection_follows_the_log_too() {
    let Some(app) = spawn_app_on(On::Postgres, "insights on PostgreSQL").await else { return };
    let r = app.submit("alice", "seq", json!({})).await;
    let id = r["id"].as_str().unwrap().to_string();
    app.approve("mark", &id, "first").await;
    let (status, s) = app.get("root", "/v1/stats?policy=seq").await;
    assert_eq!((status, &s["requests"], &s["outcomes"]["pending"]), (StatusCode::OK, &json!(1), &json!(1)), "{s}");
    app.approve("fiona", &id, "second").await;
    let (_, s) = app.get("root", "/v1/stats?policy=seq").await;
    assert_eq!((&s["outcomes"]["approved"], &s["decision_time"]["count"]), (&json!(1), &json!(1)), "read after write: {s}");
    let store = app.service.store();
    assert_eq!(store.facts_cursor().await.unwrap(), store.log_size().await.unwrap().size);
    let (_, m) = app.get("mark", "/v1/users/me/summary").await;
    assert_eq!(m["approved"], 1, "{m}");
}
