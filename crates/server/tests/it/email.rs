//! Email end to end: task messages sent over SMTP to a real SMTP server on loopback, and their
//! signed, expiring, single-use links, which only act from the confirmation page's POST.

use std::sync::{Arc, Mutex};

use signoff_testkit::app::*;
use signoff_testkit::peers::smtp::{Mail, start_smtp};
use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;
use signoff_server::ManualClock;
use signoff_server::notify::NotifyConfig;
use signoff_server::notify::dispatch::Dispatcher;
use signoff_server::notify::email::EmailConfig;

struct Setup {
    app: App,
    clock: Arc<ManualClock>,
    dispatcher: Arc<Dispatcher>,
    inbox: Arc<Mutex<Vec<Mail>>>,
}

async fn setup() -> Setup {
    let (inbox, port) = start_smtp().await;
    let clock = Arc::new(ManualClock::new("2026-11-22T09:00:00Z".parse().unwrap()));
    // The server's port is picked at start, so links carry a placeholder host; `local` swaps it.
    let email = EmailConfig {
        smtp_url: format!("smtp://127.0.0.1:{port}"),
        from: "signoff <signoff@example.com>".into(),
        public_url: "http://placeholder".into(),
        link_secret: "a-test-secret-of-some-length".into(),
        link_ttl: Some("72h".into()),
    };
    let app = spawn_app_notifying(clock.clone(), "", NotifyConfig { email: Some(email), ..Default::default() }).await;
    let dispatcher = app.service.workers().dispatcher;
    Setup { app, clock, dispatcher, inbox }
}

fn links(mail: &Mail) -> (String, String) {
    let find = |label: &str| {
        let at = mail.text.find(label).unwrap() + label.len();
        mail.text[at..].lines().find(|l| l.contains("/email/act?token=")).unwrap().trim().to_string()
    };
    (find("Approve:"), find("Reject:"))
}

/// The link with this server's address (the configured public URL is a placeholder here).
fn local(app: &App, link: &str) -> String {
    format!("{}{}", app.url, &link[link.find("/email/act").unwrap()..])
}

#[tokio::test]
async fn a_task_email_with_links_that_act_once_after_confirmation() {
    let s = setup().await;
    let id = s.app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    assert_eq!(s.dispatcher.deliver_due().await, 2);
    let mails = s.inbox.lock().unwrap().clone();
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["fiona@example.com", "frank@example.com"]);
    let fiona = mails.iter().find(|m| m.to == ["fiona@example.com"]).unwrap();
    assert!(fiona.text.contains("alice asks for your approval"), "{}", fiona.text);
    let (approve, reject) = links(fiona);

    // A mail scanner fetching the link changes nothing: it only gets a confirmation page.
    let page = s.app.http.get(local(&s.app, &approve)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\"") && html.contains("approve"), "{html}");
    let (_, r) = s.app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["status"], "pending");

    let token = approve.split("token=").nth(1).unwrap().to_string();
    let post = |token: String, comment: &'static str| {
        let http = s.app.http.clone();
        let url = format!("{}/email/act", s.app.url);
        async move {
            let resp = http.post(url).header("content-type", "application/x-www-form-urlencoded").body(serde_urlencoded::to_string([("token", token.as_str()), ("comment", comment)]).unwrap()).send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    let (status, html) = post(token.clone(), "").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Done"), "{html}");
    let (_, r) = s.app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["status"], "approved");
    assert_eq!(r["steps"][0]["approvals"][0]["by"], "fiona");
    let (status, html) = post(token, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "single use: {html}");
    let _ = reject;
}

#[tokio::test]
async fn rejecting_needs_a_reason_and_links_expire() {
    let s = setup().await;
    let id = s.app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string();
    s.dispatcher.deliver_due().await;
    let mails = s.inbox.lock().unwrap().clone();
    let frank = mails.iter().find(|m| m.to == ["frank@example.com"]).unwrap();
    let (_, reject) = links(frank);
    let token = reject.split("token=").nth(1).unwrap().to_string();
    let url = format!("{}/email/act", s.app.url);
    let resp = s.app.http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(serde_urlencoded::to_string([("token", token.as_str())]).unwrap()).send().await.unwrap();
    let html = resp.text().await.unwrap();
    assert!(html.contains("A reason is required"), "{html}");
    let resp = s.app.http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(serde_urlencoded::to_string([("token", token.as_str()), ("comment", "too expensive")]).unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, r) = s.app.get("alice", &format!("/v1/requests/{id}")).await;
    assert_eq!(r["status"], "rejected");

    // Another request: its links stop working after 72 hours.
    s.app.submit("alice", "any", json!({})).await;
    s.dispatcher.deliver_due().await;
    let mails = s.inbox.lock().unwrap().clone();
    let (approve, _) = links(mails.last().unwrap());
    s.clock.advance(SignedDuration::from_hours(72));
    let page = s.app.http.get(local(&s.app, &approve)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::GONE);
    let forged = format!("{}/email/act?token=e30.AAAA", s.app.url);
    assert_eq!(s.app.http.get(forged).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
}
