//! The web inbox over real HTTP: signing in and out with a session cookie, the inbox page, and
//! the cookie's protection against cross-site requests. (The browser tests drive the same pages
//! in Chromium.)

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;
use signoff_testkit::app::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Signs `user` in through the form: the session cookie (`name=value`) and the page's CSRF token.
async fn sign_in(app: &App, user: &str) -> (String, String) {
    let resp = client().post(format!("{}/signin", app.url)).form(&[("token", format!("{user}-token"))]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let page = client().get(format!("{}/", app.url)).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn signing_in_shows_the_inbox_and_signing_out_ends_the_session() {
    let app = spawn_app().await;
    let resp = client().get(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!((resp.status(), resp.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/signin"), "signed out, / asks to sign in");
    let page = client().get(format!("{}/signin", app.url)).send().await.unwrap();
    assert!(page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
    let bad = client().post(format!("{}/signin", app.url)).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(bad.text().await.unwrap().contains("not known here"));

    let r = app.submit("alice", "quote-discount", quote(0.18, 0.25)).await;
    let (cookie, csrf) = sign_in(&app, "mark").await;
    let resp = client().get(format!("{}/", app.url)).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("<title>(1) Inbox · signoff</title>"), "{html}");
    assert!(html.contains(&format!("data-request=\"{}\"", r["id"].as_str().unwrap())), "{html}");

    // The API takes the cookie too: reads as they are, changes only with the CSRF token.
    let me = client().get(format!("{}/v1/me", app.url)).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["id"], "mark");
    let act = |csrf: Option<&str>| {
        let mut req = client()
            .post(format!("{}/v1/requests/{}/actions", app.url, r["id"].as_str().unwrap()))
            .header(COOKIE, &cookie)
            .json(&json!({"action": "approve", "step": "manager"}));
        if let Some(c) = csrf {
            req = req.header("X-CSRF-Token", c);
        }
        req.send()
    };
    let refused = act(None).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["code"], "forbidden");
    assert_eq!(act(Some("wrong")).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(act(Some(&csrf)).await.unwrap().status(), StatusCode::OK);

    // Signing out needs the page's token, and ends the session for good.
    let forged = client().post(format!("{}/signout", app.url)).header(COOKIE, &cookie).form(&[("csrf", "forged")]).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let out = client().post(format!("{}/signout", app.url)).header(COOKIE, &cookie).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let after = client().get(format!("{}/", app.url)).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "the old cookie signs nobody in");
    let api = client().get(format!("{}/v1/me", app.url)).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused() {
    let app = spawn_app().await;
    let resp = client()
        .post(format!("{}/signin", app.url))
        .header("Origin", "https://evil.example")
        .form(&[("token", "mark-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get(SET_COOKIE).is_none());
}

async fn page(app: &App, cookie: &str, path: &str) -> (StatusCode, String) {
    let resp = client().get(format!("{}{path}", app.url)).header(COOKIE, cookie).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn my_requests_by_status_and_page() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..27 {
        ids.push(app.submit("alice", "any", json!({})).await["id"].as_str().unwrap().to_string());
    }
    let (status, _) = app.act("alice", &ids[0], json!({"action": "cancel"})).await;
    assert_eq!(status, StatusCode::OK);
    app.submit("mark", "any", json!({})).await;
    let (cookie, _) = sign_in(&app, "alice").await;
    let (status, html) = page(&app, &cookie, "/mine").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("data-request=").count(), 25, "a page of 25, newest first");
    assert!(html.contains(&format!("data-request=\"{}\"", ids[26])), "the newest is on the first page");
    let next = html.split("&#38;cursor=").nth(1).expect("a link to the next page").split('"').next().unwrap().to_string();
    let (_, older) = page(&app, &cookie, &format!("/mine?cursor={next}")).await;
    assert_eq!(older.matches("data-request=").count(), 2, "the rest on the next page");
    assert!(older.contains(&format!("data-request=\"{}\"", ids[0])));
    let (_, cancelled) = page(&app, &cookie, "/mine?status=cancelled").await;
    assert_eq!(cancelled.matches("data-request=").count(), 1, "only alice's cancelled one");
}

#[tokio::test]
async fn admins_see_every_open_task_and_reload() {
    let app = spawn_app().await;
    app.submit("alice", "quote-discount", quote(0.18, 0.25)).await;
    app.submit("alice", "seq", json!({})).await;
    let (mark, _) = sign_in(&app, "mark").await;
    let (status, html) = page(&app, &mark, "/admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("(forbidden)"), "{html}");
    let (root, csrf) = sign_in(&app, "root").await;
    let (status, html) = page(&app, &root, "/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<tr class=").count(), 2, "mark's two tasks: {html}");
    let (_, by_policy) = page(&app, &root, "/admin?policy=seq").await;
    assert_eq!(by_policy.matches("<tr class=").count(), 1);
    let (_, fiona) = page(&app, &root, "/admin?approver=fiona").await;
    assert!(fiona.contains("No open tasks match."), "fiona's step is not active yet");
    let reloaded = client().post(format!("{}/admin/reload", app.url)).header(COOKIE, &root).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(reloaded.status(), StatusCode::OK);
    assert!(reloaded.text().await.unwrap().contains("Reloaded: "), "the reload says what it did");
}
