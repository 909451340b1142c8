//! The web inbox in a real headless Chromium, driven over WebDriver: what a person sees and does.
//! Screenshots go to the target directory (`screenshots/`); the good ones are copied to `docs/`.

use reqwest::StatusCode;
use serde_json::json;
use signoff_testkit::app::*;
use signoff_testkit::browser::{Browser, ENTER, ESCAPE, TAB};

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

/// A prod-deploy request by alice; its id.
async fn deploy(app: &App) -> String {
    let body = json!({"policy": "prod-deploy", "title": "payments-api 2026.12.1", "subject": "CHG-4411",
        "context": {"service": "payments-api", "image": "registry.example.com/payments-api:2026.12.1", "replicas": 6, "canary_percent": 10},
        "evidence": [{"title": "Change record CHG-4411", "url": "https://change.example.com/CHG-4411"}]});
    let (status, r) = app.post("alice", "/v1/requests", body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    r["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_checklist_gates_approval_and_an_edit_is_checked_at_its_field_then_shown_as_a_diff() {
    let Some(browser) = Browser::start(1000, 1500).await else { return };
    checklist_then_edits(browser, true).await;
}

#[tokio::test]
async fn in_firefox_too_a_checklist_gates_approval_and_an_edit_is_checked_at_its_field() {
    let Some(browser) = Browser::firefox(1000, 1500).await else { return };
    checklist_then_edits(browser, false).await;
}

/// Sign in, acknowledge the checklist, approve with a refused and then an accepted edit.
async fn checklist_then_edits(browser: Browser, screenshots_too: bool) {
    let app = spawn_app().await;
    let id = deploy(&app).await;
    sign_in(&browser, &app, "sam").await;
    browser.click(&browser.find(&format!("a[href='/requests/{id}']")).await).await;
    browser.wait_for_title("payments-api 2026.12.1 · signoff").await;
    assert_eq!(browser.attribute("#step-sre button[data-dialog]", "disabled").await.as_deref(), Some("true"), "approve waits for the checklist");
    let graph = browser.wait_for_text("figure.graph", "sre").await;
    assert!(graph.contains("sre") && graph.to_uppercase().contains("ACTIVE"), "the plan's graph: {graph}");
    if screenshots_too {
        browser.screenshot(&screenshots(), "request").await;
    }

    for (n, item) in ["rollback-plan-reviewed", "change-window-ok"].into_iter().enumerate() {
        browser.click_on(&format!("#step-sre .checklist form:has(input[value='{item}']) button")).await;
        browser.wait_for_text("#step-sre .facts", &format!("{} of 2 acknowledged", n + 1)).await;
    }
    assert_eq!(browser.attribute("#step-sre button[data-dialog]", "disabled").await, None, "every item acknowledged");

    // The dialog opens with the comment focused; a bound the schema words is checked at its field.
    browser.click_on("#step-sre button[data-dialog=approve-sre]").await;
    browser.wait_until("return document.getElementById('approve-sre').open && document.activeElement.id === 'approve-comment-sre'").await;
    browser.clear(&browser.find("#edit-sre-canary_percent").await).await;
    browser.type_on("#edit-sre-canary_percent", "150").await;
    browser.type_on("#edit-sre-canary_percent", ENTER).await;
    browser.wait_for_text("#edit-sre-canary_percent-error", "canary_percent must be between 1 and 100").await;
    assert_eq!(browser.execute("return document.activeElement.id").await, "edit-sre-canary_percent", "the wrong field has the focus");
    if screenshots_too {
        browser.screenshot(&screenshots(), "approve-dialog").await;
    }
    let (_, state) = app.get("sam", &format!("/v1/requests/{id}")).await;
    assert_eq!(state["steps"][0]["approvals"].as_array().unwrap().len(), 0, "nothing was sent");

    browser.clear(&browser.find("#edit-sre-canary_percent").await).await;
    browser.type_on("#edit-sre-canary_percent", "25").await;
    browser.type_on("#approve-comment-sre", "canary at 25% for the first hour").await;
    browser.type_on("#approve-comment-sre", ENTER).await;
    let diff = browser.wait_for_text("#changes", "canary_percent").await;
    assert!(diff.contains("10") && diff.contains("25") && diff.contains("sam"), "the diff says what changed and who changed it: {diff}");
    browser.wait_for_text("#step-sre .acted", "sam approved").await;
    let (_, state) = app.get("sam", &format!("/v1/requests/{id}")).await;
    assert_eq!(state["effective_context"]["canary_percent"], 25, "{state}");
    assert_eq!(state["effective_context"]["replicas"], 6, "an untouched field is no edit");
}

#[tokio::test]
async fn a_reject_needs_a_reason_escape_closes_and_another_approval_appears_without_a_reload() {
    let Some(browser) = Browser::start(1000, 1300).await else { return };
    reject_and_live(browser, true).await;
}

#[tokio::test]
async fn in_firefox_too_a_reject_needs_a_reason_and_another_approval_appears_live() {
    let Some(browser) = Browser::firefox(1000, 1300).await else { return };
    reject_and_live(browser, false).await;
}

/// Another approver's approval appears live; Escape closes a dialog; a reject needs a reason.
async fn reject_and_live(browser: Browser, screenshots_too: bool) {
    let app = spawn_app().await;
    let r = app.submit("alice", "quote-discount", quote(0.18, 0.21)).await;
    let id = r["id"].as_str().unwrap().to_string();
    sign_in(&browser, &app, "mark").await;
    browser.goto(&format!("{}/requests/{id}", app.url)).await;
    browser.find("#step-manager").await;
    browser.execute("document.querySelector('main h1').dataset.seen = 'yes'").await;

    // fiona approves finance elsewhere: mark's open page shows it, swapped in place.
    let (status, _) = app.act("fiona", &id, json!({"action": "approve", "step": "finance"})).await;
    assert_eq!(status, StatusCode::OK);
    browser.wait_for_text("#step-finance .acted", "fiona approved").await;
    browser.wait_for_text("#step-finance .status", "APPROVED").await;
    assert_eq!(browser.execute("return document.querySelector('main h1').dataset.seen || 'swapped'").await, "swapped");
    if screenshots_too {
        browser.screenshot(&screenshots(), "request-parallel").await;
    }
    assert_eq!(browser.execute("return performance.getEntriesByType('navigation').length").await, 1, "not reloaded");

    // Escape closes a dialog; the opener has the focus back.
    browser.click_on("#step-manager button[data-dialog=reject-manager]").await;
    browser.wait_until("return document.getElementById('reject-manager').open").await;
    browser.type_on("#reject-comment-manager", ESCAPE).await;
    browser.wait_until("return !document.getElementById('reject-manager').open && document.activeElement.dataset.dialog === 'reject-manager'").await;

    // Enter with no reason: said at the field, nothing sent; with one, rejected.
    browser.type_on("#step-manager button[data-dialog=reject-manager]", ENTER).await;
    browser.wait_until("return document.getElementById('reject-manager').open").await;
    browser.type_on("#reject-comment-manager", ENTER).await;
    browser.wait_for_text("#reject-comment-manager-error", "Say why you reject it").await;
    let (_, state) = app.get("mark", &format!("/v1/requests/{id}")).await;
    assert_eq!(state["status"], "pending");
    browser.type_on("#reject-comment-manager", "18% is past what this account earns").await;
    browser.type_on("#reject-comment-manager", ENTER).await;
    browser.wait_for_text("main h1 .status", "REJECTED").await;
    browser.wait_for_text(".timeline", "18% is past what this account earns").await;
}

#[tokio::test]
async fn a_delegate_is_found_by_name_and_a_refusal_is_said_with_its_code() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start(1000, 1300).await else { return };
    let r = app.submit("alice", "quote-discount", quote(0.18, 0.25)).await;
    let id = r["id"].as_str().unwrap().to_string();
    sign_in(&browser, &app, "mark").await;
    browser.goto(&format!("{}/requests/{id}", app.url)).await;

    browser.type_on("#to-manager", "ghost").await;
    browser.type_on("#to-manager", ENTER).await;
    let problem = browser.wait_for_text("#problem", "(unknown_user)").await;
    assert!(problem.contains("ghost"), "{problem}");

    browser.clear(&browser.find("#to-manager").await).await;
    browser.type_on("#to-manager", "Dana").await;
    browser.wait_until("return Array.from(document.querySelectorAll('#people option')).map(o => o.value).join() === 'dana'").await;
    browser.clear(&browser.find("#to-manager").await).await;
    browser.type_on("#to-manager", "dana").await;
    browser.click_on("#step-manager .delegate button").await;
    browser.wait_for_text("#step-manager .facts", "mark delegated to dana").await;
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
    // The policy's schema is a form: a number per bound value, yes or no for a boolean.
    assert_eq!(browser.attribute("#ctx-quote-discount", "max").await.as_deref(), Some("1"));
    for (field, value) in [("#ctx-quote-total", "48000"), ("#ctx-quote-discount", "0.18"), ("#ctx-quote-margin", "0.21")] {
        browser.clear(&browser.find(field).await).await;
        browser.type_on(field, value).await;
    }
    browser.execute("document.getElementById('ctx-quote-nonstandard-clause').value = 'false'").await;
    browser.type_into(&browser.find("#evidence").await, "https://crm.example.com/deals/ACME-7").await;
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

#[tokio::test]
async fn at_phone_width_nothing_runs_off_the_side_and_the_keyboard_reaches_every_action() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start(390, 844).await else { return };
    let id = deploy(&app).await;
    app.submit("alice", "quote-discount", json!({"quote": {"total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": true}})).await;
    sign_in(&browser, &app, "sam").await;
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth";
    for path in ["/".to_string(), format!("/requests/{id}"), "/mine".into(), "/new?policy=quote-discount".into()] {
        browser.goto(&format!("{}{path}", app.url)).await;
        browser.find("main h1").await;
        let wide = "return Array.from(document.querySelectorAll('main *')).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '.' + e.className).slice(0, 8).join(' ')";
        assert_eq!(browser.execute(fits).await, true, "{path} is no wider than a phone: {}", browser.execute(wide).await);
    }
    browser.goto(&format!("{}/requests/{id}", app.url)).await;
    browser.find("main h1").await;
    browser.screenshot(&screenshots(), "request-phone").await;

    // The first Tab reaches the skip link, which moves on to the page.
    browser.press(TAB).await;
    assert_eq!(browser.execute("return document.activeElement.className").await, "skip");
    browser.press(ENTER).await;
    browser.wait_until("return document.activeElement.id === 'main'").await;
    // Tabbing from there reaches the checklist, then Approve once it is enabled.
    let order = browser
        .execute("return Array.from(document.querySelectorAll('main a[href], main button:not([disabled]), main input:not([type=hidden]), main textarea, main select')).filter(e => !e.closest('dialog')).map(e => e.textContent.trim() || e.id).join('|')")
        .await;
    let order = order.as_str().unwrap().to_string();
    let ack = order.find("Acknowledge").expect("the checklist is reachable");
    let reject = order.find("Reject…").expect("reject is reachable");
    assert!(ack < reject, "in reading order: {order}");
    // Every form control has a name a screen reader can say.
    let unnamed = browser
        .execute("return Array.from(document.querySelectorAll('input:not([type=hidden]), textarea, select')).filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id || e.name).join()")
        .await;
    assert_eq!(unnamed, "", "controls without a label");
}

/// Seeded history (deal desk and deploy guard, the last 30 days) in `app`'s store.
async fn seeded(app: &App, requests: usize) {
    let plan = signoff_server::seed::Plan {
        scenarios: signoff_server::seed::Scenario::parse("deal-desk").unwrap().into_iter().chain(signoff_server::seed::Scenario::parse("deploy-guard").unwrap()).collect(),
        requests,
        days: 30,
        until: app.service.now(),
        seed: 5,
    };
    signoff_server::seed::run(&**app.service.store(), &app.service.catalog(), &plan).await.unwrap();
}

#[tokio::test]
async fn the_insights_page_shows_where_approvals_wait_and_the_report_is_the_same_in_one_file() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start(1280, 2300).await else { return };
    seeded(&app, 1500).await;
    sign_in(&browser, &app, "root").await;
    browser.click_on("nav a[href='/insights']").await;
    browser.wait_for_title("Insights · signoff").await;
    let cards = browser.text(&browser.find("ul.cards").await).await;
    for label in ["Requests", "Decided in (median)", "SLA met", "Escalated", "Timed out", "Auto-approved"] {
        assert!(cards.contains(label), "{label} in {cards}");
    }
    assert_eq!(browser.execute("return document.querySelectorAll('section.heatmap svg').length").await, 3);
    let steps = browser.text(&browser.find("#steps + table").await).await;
    assert!(steps.contains("quote-discount/manager") && steps.contains("prod-deploy/sre"), "{steps}");
    // The pictures fit the page: no sideways scrolling.
    assert_eq!(browser.execute("return document.documentElement.scrollWidth <= window.innerWidth").await, true);
    browser.screenshot(&screenshots(), "insights").await;
    // One policy, a week.
    browser.goto(&format!("{}/insights?policy=prod-deploy&days=7", app.url)).await;
    browser.wait_for_title("Insights: prod-deploy · signoff").await;
    let steps = browser.text(&browser.find("#steps + table").await).await;
    assert!(steps.contains("prod-deploy/sre") && !steps.contains("quote-discount"), "{steps}");

    // The report: the same, in one file that needs nothing else.
    let report = app.http.get(format!("{}/v1/insights/report", app.url)).bearer_auth("root-token").send().await.unwrap();
    assert_eq!(report.status(), StatusCode::OK);
    let html = report.text().await.unwrap();
    assert!(!html.contains("/assets/") && html.contains("<style>") && html.matches("<svg").count() == 3, "self-contained");
    let file = screenshots().join("report.html");
    std::fs::create_dir_all(screenshots()).unwrap();
    std::fs::write(&file, &html).unwrap();
    browser.goto(&format!("file://{}", file.display())).await;
    browser.wait_for_title("Insights · signoff report").await;
    assert_eq!(browser.execute("return getComputedStyle(document.querySelector('.card.metric')).borderRadius !== '0px'").await, true, "styled from inside the file");
    browser.screenshot(&screenshots(), "report").await;

    // A pending request says when it is expected to be decided, on its page and in the inbox.
    let (_, pending) = app.get("root", "/v1/requests?status=pending&policy=quote-discount&limit=1").await;
    let id = pending["items"][0]["id"].as_str().expect("a pending seeded quote").to_string();
    browser.goto(&format!("{}/requests/{id}", app.url)).await;
    let expected = browser.text(&browser.find("#expected").await).await;
    assert!(expected.starts_with("about "), "{expected}");

    // Someone who owns no policy is refused.
    sign_in(&browser, &app, "alice").await;
    assert_eq!(browser.execute("return document.querySelector(\"nav a[href='/insights']\") === null").await, true, "no link for alice");
    browser.goto(&format!("{}/insights", app.url)).await;
    let refused = browser.text(&browser.find("main").await).await;
    assert!(refused.contains("forbidden"), "{refused}");
}

#[tokio::test]
async fn single_sign_on_in_chromium_goes_to_the_issuer_and_back_to_the_inbox() {
    use signoff_testkit::peers::oidc::start_issuer;
    let issuer = start_issuer().await;
    let (app, clock) = crate::sso::sso_app(&issuer).await;
    let Some(browser) = Browser::start(1000, 760).await else { return };
    let body = json!({"policy": "quote-discount", "title": "ACME renewal, 3 years", "subject": "Q-2026-0120", "context": quote(0.18, 0.25)});
    assert_eq!(app.post("alice", "/v1/requests", body).await.0, StatusCode::CREATED);
    *issuer.next_login.lock().unwrap() = issuer.claims("mark", signoff_server::Clock::now(clock.as_ref()).as_second());

    browser.goto(&format!("{}/", app.url)).await;
    browser.wait_for_title("Sign in · signoff").await;
    browser.screenshot(&screenshots(), "signin-sso").await;
    browser.click(&browser.find("#sso-sign-in").await).await;
    browser.wait_for_title("(1) Inbox · signoff").await;
    let first = browser.text(&browser.find("li.task .title").await).await;
    assert_eq!(first, "ACME renewal, 3 years");
}
