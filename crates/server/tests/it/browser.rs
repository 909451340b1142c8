//! The web inbox in a real headless Chromium, driven over WebDriver: what a person sees and does.
//! Screenshots go to the target directory (`screenshots/`); the good ones are copied to `docs/`.

use reqwest::StatusCode;
use serde_json::json;
use signoff_testkit::app::*;
use signoff_testkit::browser::Browser;

fn screenshots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

#[tokio::test]
async fn signing_in_in_chromium_shows_the_inbox_and_signing_out_leaves_it() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start(1000, 760).await else { return };
    for (title, subject, discount) in [("ACME renewal, 3 years", "Q-2026-0120", 0.18), ("Globex expansion", "Q-2026-0131", 0.12)] {
        let body = json!({"policy": "quote-discount", "title": title, "subject": subject, "context": quote(discount, 0.25)});
        let (status, _) = app.post("alice", "/v1/requests", body).await;
        assert_eq!(status, StatusCode::CREATED);
    }

    browser.goto(&format!("{}/", app.url)).await;
    browser.wait_for_title("Sign in · signoff").await;
    browser.type_into(&browser.find("#token").await, "mark-token").await;
    browser.click(&browser.find("form[action='/signin'] button[type=submit]").await).await;
    browser.wait_for_title("(2) Inbox · signoff").await;
    let first = browser.text(&browser.find("li.task .title").await).await;
    assert_eq!(first, "ACME renewal, 3 years", "soonest due first, then oldest");
    let facts = browser.text(&browser.find("li.task .facts").await).await;
    assert!(facts.contains("alice") && facts.contains("quote-discount"), "{facts}");
    browser.screenshot(&screenshots(), "inbox").await;

    browser.click(&browser.find("form[action='/signout'] button").await).await;
    browser.wait_for_title("Sign in · signoff").await;
    browser.goto(&format!("{}/", app.url)).await;
    browser.wait_for_title("Sign in · signoff").await;
}

#[tokio::test]
async fn a_wrong_token_is_said_so_at_phone_width() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start(390, 760).await else { return };
    browser.goto(&format!("{}/signin", app.url)).await;
    browser.type_into(&browser.find("#token").await, "not-a-token").await;
    browser.click(&browser.find("form[action='/signin'] button[type=submit]").await).await;
    let error = browser.text(&browser.find("#signin-error").await).await;
    assert_eq!(error, "That token is not known here (unauthenticated).");
    browser.screenshot(&screenshots(), "signin-phone").await;
}

/// Signs `user` in on `browser` and waits for the inbox.
async fn sign_in(browser: &Browser, app: &App, user: &str) {
    browser.goto(&format!("{}/signin", app.url)).await;
    browser.type_into(&browser.find("#token").await, &format!("{user}-token")).await;
    browser.click(&browser.find("form[action='/signin'] button[type=submit]").await).await;
    browser.find("main h1").await;
}

#[tokio::test]
async fn on_the_request_page_a_checklist_gates_approval_and_a_reject_needs_a_reason() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start(1000, 1400).await else { return };
    let body = json!({"policy": "prod-deploy", "title": "payments-api 2026.12.1", "subject": "CHG-4411",
        "context": {"service": "payments-api", "image": "registry.example.com/payments-api:2026.12.1", "replicas": 6, "canary_percent": 10}});
    let (status, r) = app.post("alice", "/v1/requests", body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_string();

    sign_in(&browser, &app, "sam").await;
    browser.click(&browser.find(&format!("a[href='/requests/{id}']")).await).await;
    browser.wait_for_title("payments-api 2026.12.1 · signoff").await;
    let disabled = browser.attribute("#step-sre button[value=approve]", "disabled").await;
    assert_eq!(disabled.as_deref(), Some("true"), "approve waits for the checklist");
    browser.screenshot(&screenshots(), "request").await;

    // Reject without a reason: refused, and the page says why with its code.
    browser.click_on("#step-sre button[value=reject]").await;
    browser.wait_for_text("#problem", "(comment_required)").await;

    for (n, item) in ["rollback-plan-reviewed", "change-window-ok"].into_iter().enumerate() {
        browser.click_on(&format!("#step-sre form input[value='{item}'] ~ button")).await;
        browser.wait_for_text("#step-sre .facts", &format!("{} of 2 acknowledged", n + 1)).await;
    }
    assert_eq!(browser.attribute("#step-sre button[value=approve]", "disabled").await, None, "every item acknowledged");
    browser.click_on("#step-sre button[value=approve]").await;
    browser.wait_for_text("#step-sre .acted", "sam approved").await;
    browser.wait_for_text("#step-sre .facts", "1 of 2 approvals").await;
}

#[tokio::test]
async fn the_inbox_follows_new_and_withdrawn_tasks_without_a_reload() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start(1000, 760).await else { return };
    app.submit("alice", "quote-discount", quote(0.18, 0.25)).await;
    sign_in(&browser, &app, "mark").await;
    browser.wait_for_title("(1) Inbox · signoff").await;
    // Marks the page: a reload would lose it.
    browser.execute("document.querySelector('main h1').dataset.seen = 'yes'").await;

    let second = app.submit("alice", "quote-discount", quote(0.12, 0.25)).await;
    browser.wait_for_title("(2) Inbox · signoff").await;
    let (status, _) = app.act("alice", second["id"].as_str().unwrap(), json!({"action": "cancel", "comment": "sent twice"})).await;
    assert_eq!(status, StatusCode::OK);
    browser.wait_for_title("(1) Inbox · signoff").await;
    let seen = browser.execute("return document.querySelector('main h1') ? document.querySelector('main h1').dataset.seen || 'swapped' : 'none'").await;
    assert_eq!(seen, "swapped", "main was swapped in place, the page itself not reloaded");
    let reloaded = browser.execute("return performance.getEntriesByType('navigation').length").await;
    assert_eq!(reloaded, 1, "one navigation: the sign-in's");
}

#[tokio::test]
async fn a_new_request_is_previewed_then_submitted_once() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start(1000, 1300).await else { return };
    sign_in(&browser, &app, "alice").await;
    browser.goto(&format!("{}/new?policy=quote-discount", app.url)).await;
    browser.wait_for_title("New request · signoff").await;
    browser.type_into(&browser.find("#title").await, "ACME renewal").await;
    browser.type_into(&browser.find("#subject").await, "Q-2026-0200").await;
    let context = browser.find("#context").await;
    browser.clear(&context).await;
    browser.type_into(&context, r#"{"quote": {"total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": false}}"#).await;
    browser.click_on("button[value=preview]").await;
    let plan = browser.wait_for_text("#plan-preview", "manager").await;
    assert!(plan.contains("mark") && plan.contains("finance"), "the plan names its approvers: {plan}");
    browser.screenshot(&screenshots(), "new-request").await;
    let (_, before) = app.get("alice", "/v1/requests").await;
    assert_eq!(before["items"].as_array().unwrap().len(), 0, "a preview stores nothing");

    browser.click_on("button[value=submit]").await;
    browser.wait_for_title("ACME renewal · signoff").await;
    let (_, after) = app.get("alice", "/v1/requests").await;
    assert_eq!(after["items"].as_array().unwrap().len(), 1);
    assert_eq!(after["items"][0]["subject"], "Q-2026-0200");
}
