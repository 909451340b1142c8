//! Email end to end: task messages sent over SMTP to a real SMTP server on loopback, and their
//! signed, expiring, single-use links, which only act from the confirmation page's POST.

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine;
use common::*;
use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;
use signoff_server::ManualClock;
use signoff_server::notify::NotifyConfig;
use signoff_server::notify::dispatch::Dispatcher;
use signoff_server::notify::email::EmailConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A received message: recipients and the decoded text body.
#[derive(Debug, Clone)]
struct Mail {
    to: Vec<String>,
    text: String,
}

/// A small SMTP server (RFC 5321: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that keeps what
/// it receives.
async fn start_smtp() -> (Arc<Mutex<Vec<Mail>>>, u16) {
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let kept = inbox.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 localhost ESMTP test\r\n").await.unwrap();
                let mut to = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250-localhost\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("MAIL FROM") || upper.starts_with("RSET") || upper.starts_with("NOOP") {
                        if upper.starts_with("RSET") {
                            to.clear();
                        }
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO") {
                        to.push(line[8..].trim().trim_matches(|c| c == ':' || c == '<' || c == '>').to_string());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await.unwrap();
                        let mut data = Vec::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push(l);
                        }
                        let body_at = data.iter().position(|l| l.is_empty()).unwrap_or(data.len());
                        let b64: String = data[body_at..].concat();
                        let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap()).unwrap();
                        kept.lock().unwrap().push(Mail { to: std::mem::take(&mut to), text });
                        b"250 OK queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        write.write_all(b"221 Bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"502 Command not implemented\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (inbox, port)
}

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
    let dispatcher = Dispatcher::new(app.service.clone());
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
