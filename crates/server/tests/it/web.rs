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

#[tokio::test]
async fn the_user_lookup_finds_people_by_id_or_name() {
    let app = spawn_app().await;
    let (status, found) = app.get("alice", "/v1/users?q=FI").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = found["items"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["fiona"]);
    let (_, limited) = app.get("alice", "/v1/users?limit=3").await;
    assert_eq!(limited["items"].as_array().unwrap().len(), 3);
    let (status, body) = app.get("alice", "/v1/users?limit=0").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_parameter")));
}

#[tokio::test]
async fn a_step_is_delegated_and_commented_on_from_the_page() {
    let app = spawn_app().await;
    let r = app.submit("alice", "any", json!({})).await;
    let id = r["id"].as_str().unwrap();
    let (cookie, csrf) = sign_in(&app, "fiona").await;
    let (_, html) = page(&app, &cookie, &format!("/requests/{id}")).await;
    assert!(html.contains("<option value=\"dana\">"), "the delegate box offers the directory: {html}");
    let post = |fields: Vec<(&'static str, String)>| {
        let mut form = vec![("csrf", csrf.clone())];
        form.extend(fields);
        client().post(format!("{}/requests/{id}/act", app.url)).header(COOKIE, &cookie).form(&form).send()
    };
    let key = || ("key", format!("k-{}", uuid_like()));
    let refused = post(vec![key(), ("action", "delegate".into()), ("step", "finance".into()), ("to", "ghost".into())]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("(unknown_user)"));
    let done = post(vec![key(), ("action", "delegate".into()), ("step", "finance".into()), ("to", "dana".into())]).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let commented = post(vec![key(), ("action", "comment".into()), ("comment", "dana knows this customer".into())]).await.unwrap();
    assert_eq!(commented.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&app, &cookie, &format!("/requests/{id}")).await;
    assert!(html.contains("fiona delegated to dana"), "{html}");
    assert!(html.contains("“dana knows this customer”"), "{html}");
    let (_, state) = app.get("root", &format!("/v1/requests/{id}")).await;
    assert!(state["steps"][0]["approvers"].as_array().unwrap().iter().any(|a| a == "dana"), "{state}");
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test]
async fn a_request_expiring_within_the_hour_is_marked_in_the_inbox() {
    let app = spawn_app().await;
    let expiring = app.submit("alice", "expiring", json!({})).await;
    let later = app.submit("alice", "seq", json!({})).await;
    let (cookie, _) = sign_in(&app, "mark").await;
    let (_, html) = page(&app, &cookie, "/").await;
    assert!(html.contains(&format!("<li class=\"task expiring\" data-request=\"{}\"", expiring["id"].as_str().unwrap())), "{html}");
    assert!(html.contains(&format!("<li class=\"task \" data-request=\"{}\"", later["id"].as_str().unwrap())), "{html}");
    let (_, inbox) = app.get("mark", "/v1/inbox").await;
    assert!(inbox["items"].as_array().unwrap().iter().any(|t| t["expires_at"].is_string()), "the task says when its request expires");
}

#[tokio::test]
async fn an_edit_the_schema_refuses_is_said_at_its_field_and_an_accepted_one_as_a_diff() {
    let app = spawn_app().await;
    let context = json!({"service": "payments-api", "image": "registry.example.com/payments-api:1", "replicas": 6, "canary_percent": 10});
    let r = app.submit("alice", "prod-deploy", context).await;
    let id = r["id"].as_str().unwrap();
    for item in ["rollback-plan-reviewed", "change-window-ok"] {
        let (status, _) = app.act("sam", id, json!({"action": "acknowledge", "step": "sre", "item": item})).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (cookie, csrf) = sign_in(&app, "sam").await;
    let (_, html) = page(&app, &cookie, &format!("/requests/{id}")).await;
    assert!(html.contains(r#"id="edit-sre-canary_percent" name="edit.canary_percent" value="10""#), "a field per allowed key, with its value: {html}");
    assert!(html.contains(r#"min="1" max="100""#) && html.contains("from 1 to 50"), "bounds from the schema: {html}");
    let approve = |canary: &'static str| {
        let form = [("csrf", csrf.clone()), ("key", format!("k-{}", uuid_like())), ("action", "approve".into()), ("step", "sre".into()),
            ("comment", "ok".into()), ("edit.replicas", "6".into()), ("edit.canary_percent", canary.into())];
        client().post(format!("{}/requests/{id}/act", app.url)).header(COOKIE, &cookie).form(&form).send()
    };
    let refused = approve("150").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(html.contains(r#"id="edit-sre-canary_percent-error" aria-live="polite">canary_percent must be between 1 and 100</p>"#), "at the field: {html}");
    assert!(html.contains(r#"aria-labelledby="approve-sre-title" data-open"#), "the dialog opens again: {html}");
    assert!(html.contains(r#"name="edit.canary_percent" value="150""#), "what was typed is kept: {html}");
    let (_, events) = app.get("sam", &format!("/v1/requests/{id}/events")).await;
    assert_eq!(count(events["items"].as_array().unwrap(), "edits_refused"), 1, "the refusal is recorded");

    let unreadable = approve("lots").await.unwrap();
    assert_eq!(unreadable.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unreadable.text().await.unwrap().contains("`lots` is not a whole number"));

    assert_eq!(approve("25").await.unwrap().status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&app, &cookie, &format!("/requests/{id}")).await;
    let diff = html.split("<table class=\"diff\" id=\"changes\">").nth(1).expect("a diff").split("</table>").next().unwrap();
    assert!(diff.contains("<code>canary_percent</code>") && diff.contains("<del>10</del>") && diff.contains("<ins>25</ins>") && diff.contains("sam on sre"), "{diff}");
    assert!(!diff.contains("replicas"), "an unchanged field is no edit: {diff}");
}

#[tokio::test]
async fn the_inbox_is_paged_and_counts_every_task_and_filters_by_policy_in_the_store() {
    let app = spawn_app().await;
    for _ in 0..51 {
        app.submit("alice", "quote-discount", quote(0.18, 0.25)).await;
    }
    let seq = app.submit("alice", "seq", json!({})).await;
    let (cookie, _) = sign_in(&app, "mark").await;
    let (_, first) = page(&app, &cookie, "/").await;
    assert!(first.contains("<title>(52) Inbox · signoff</title>"), "the count is of every task");
    assert_eq!(first.matches("<li class=\"task").count(), 50);
    assert!(first.contains("Tasks 1–50 of 52") && first.contains(r#"<a href="/?page=2" rel="next">"#), "{first}");
    let (_, second) = page(&app, &cookie, "/?page=2").await;
    assert_eq!(second.matches("<li class=\"task").count(), 2);
    assert!(second.contains("Tasks 51–52 of 52") && second.contains(r#"<a href="/" rel="prev">"#));
    let (_, only) = page(&app, &cookie, "/?policy=seq").await;
    assert!(only.contains("<title>(1) Inbox · signoff</title>") && only.contains(seq["id"].as_str().unwrap()), "{only}");
    assert!(!only.contains("rel=\"next\""));
    let (status, odd) = page(&app, &cookie, "/?page=zero").await;
    assert_eq!(status, StatusCode::OK, "a page that is not a number is the first");
    assert!(odd.contains("Tasks 1–50 of 52"));
}

#[tokio::test]
async fn a_new_request_is_a_form_from_the_schema_with_refusals_at_their_fields() {
    let app = spawn_app().await;
    let (cookie, csrf) = sign_in(&app, "alice").await;
    let (_, html) = page(&app, &cookie, "/new?policy=quote-discount").await;
    assert!(html.contains(r#"<legend>quote</legend>"#) && html.contains(r#"name="ctx.quote.discount""#) && html.contains(r#"min="0" max="1""#), "{html}");
    assert!(html.contains(r#"<option value="true""#), "a boolean is yes or no");
    let (_, loose) = page(&app, &cookie, "/new?policy=any").await;
    assert!(loose.contains(r#"<textarea id="context""#), "a loose schema gets the JSON editor: {loose}");
    let (_, json) = page(&app, &cookie, "/new?policy=quote-discount&mode=json").await;
    assert!(json.contains(r#"<textarea id="context""#), "JSON on request");

    let submit = |discount: &'static str| {
        let form = [("csrf", csrf.clone()), ("key", format!("k-{}", uuid_like())), ("intent", "submit".into()), ("policy", "quote-discount".into()),
            ("mode", "form".into()), ("title", "ACME".into()), ("ctx.quote.total", "48000".into()), ("ctx.quote.discount", discount.into()),
            ("ctx.quote.margin", "0.21".into()), ("ctx.quote.nonstandard_clause", "false".into())];
        client().post(format!("{}/new", app.url)).header(COOKIE, &cookie).form(&form).send()
    };
    let refused = submit("1.5").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    let at_field = html.split(r#"id="ctx-quote-discount-error" aria-live="polite">"#).nth(1).unwrap().split("</p>").next().unwrap();
    assert!(at_field.contains('1'), "the schema's message at the discount field: {html}");
    assert!(html.contains(r#"name="ctx.quote.discount" value="1.5""#), "what was typed is kept");
    let unreadable = submit("a lot").await.unwrap();
    assert_eq!(unreadable.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unreadable.text().await.unwrap().contains("`a lot` is not a number"));

    let done = submit("0.18").await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (_, list) = app.get("alice", "/v1/requests").await;
    assert_eq!(list["items"][0]["context"], quote(0.18, 0.21), "the fields spell the context, typed");
}

#[tokio::test]
async fn assets_are_named_by_their_content_kept_a_year_and_sent_compressed() {
    let app = spawn_app().await;
    let resp = client().get(format!("{}/signin", app.url)).send().await.unwrap();
    let html = resp.text().await.unwrap();
    for ext in ["css", "js"] {
        let end = html.find(&format!(".{ext}\"")).unwrap_or_else(|| panic!("no {ext}: {html}"));
        let href = format!("{}.{ext}", &html[html[..end].rfind("/assets/app.").unwrap()..end]);
        assert_eq!(href.len(), "/assets/app.".len() + 12 + 1 + ext.len(), "{href}");
        let resp = client().get(format!("{}{href}", app.url)).header("accept-encoding", "gzip").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(resp.headers()["content-encoding"], "gzip", "{href}");
        let plain = client().get(format!("{}{href}", app.url)).send().await.unwrap();
        assert!(plain.headers().get("content-encoding").is_none(), "plain to a client that does not take gzip");
    }
    let unknown = client().get(format!("{}/assets/app.css", app.url)).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<serde_json::Value>().await.unwrap()["code"], "not_found");
}
