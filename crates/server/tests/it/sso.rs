//! Single sign-on against a small real OpenID Connect issuer on loopback (its own ES256 keys,
//! rotated mid-test): JWT bearer tokens checked for signature, issuer, audience and expiry
//! within the clock skew, mapped to directory users and their groups; and the web inbox's
//! sign-in through the authorization-code flow with PKCE, step by step as a browser follows it.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use signoff_server::ManualClock;
use signoff_server::oidc::OidcConfig;
use signoff_testkit::app::*;
use signoff_testkit::peers::oidc::{CLIENT_ID, CLIENT_SECRET, Issuer, start_issuer};

pub(crate) async fn sso_app(issuer: &Issuer) -> (App, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
    let config = OidcConfig {
        issuer: issuer.url.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        audience: None,
        user_claim: None,
        groups_claim: Some("groups".into()),
        clock_skew: Some("60s".into()),
        public_url: None,
    };
    let app = spawn_app_configured(clock.clone(), None, |c| c.oidc = Some(config)).await;
    (app, clock)
}

async fn me(app: &App, token: &str) -> (StatusCode, Value) {
    let resp = app.http.get(format!("{}/v1/me", app.url)).bearer_auth(token).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn bearer_tokens_from_the_issuer_are_checked_and_name_directory_users() {
    let issuer = start_issuer().await;
    let (app, clock) = sso_app(&issuer).await;
    let now = signoff_server::Clock::now(clock.as_ref()).as_second();
    let fiona = issuer.sign(&issuer.claims("fiona", now));
    let (status, body) = me(&app, &fiona).await;
    assert_eq!((status, body["id"].as_str()), (StatusCode::OK, Some("fiona")), "{body}");

    let refused = |claims: Value| {
        let token = issuer.sign(&claims);
        let app = &app;
        async move { me(app, &token).await }
    };
    let mut wrong_audience = issuer.claims("fiona", now);
    wrong_audience["aud"] = json!("another-app");
    let (status, body) = refused(wrong_audience).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")));
    assert!(body["detail"].as_str().unwrap().contains("does not verify"), "{body}");
    let mut wrong_issuer = issuer.claims("fiona", now);
    wrong_issuer["iss"] = json!("https://elsewhere.example");
    assert_eq!(refused(wrong_issuer).await.0, StatusCode::UNAUTHORIZED);
    let mut expired = issuer.claims("fiona", now);
    expired["exp"] = json!(now - 61);
    let (status, body) = refused(expired).await;
    assert_eq!((status, body["detail"].as_str()), (StatusCode::UNAUTHORIZED, Some("the token has expired")));
    let mut within_skew = issuer.claims("fiona", now);
    within_skew["exp"] = json!(now - 30);
    assert_eq!(refused(within_skew).await.0, StatusCode::OK, "30 s past expiry is within the minute of skew");
    let mut future = issuer.claims("fiona", now);
    future["nbf"] = json!(now + 120);
    assert_eq!(refused(future).await.0, StatusCode::UNAUTHORIZED, "not valid yet");
    let (status, body) = refused(issuer.claims("ghost", now)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("`ghost` is no user of the directory"), "{body}");
    let mut tampered = fiona.clone();
    tampered.pop();
    tampered.push(if fiona.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(me(&app, &tampered).await.0, StatusCode::UNAUTHORIZED, "a signature that does not match");
    assert_eq!(me(&app, "fiona-token").await.0, StatusCode::OK, "directory tokens still work beside single sign-on");

    // The issuer rotates its key: a token with the new key is accepted at once, one with the
    // old key no longer.
    let fetches = *issuer.jwks_fetches.lock().unwrap();
    issuer.rotate();
    let rotated = issuer.sign(&issuer.claims("fiona", now));
    assert_eq!(me(&app, &rotated).await.0, StatusCode::OK);
    assert_eq!(*issuer.jwks_fetches.lock().unwrap(), fetches + 1, "the key set was fetched again for the new key");
    assert_eq!(me(&app, &fiona).await.0, StatusCode::UNAUTHORIZED, "the retired key is gone");

    // The groups claim sets the user's memberships among the directory's groups.
    let mut sam = issuer.claims("sam", now);
    sam["groups"] = json!(["finance", "not-a-directory-group"]);
    let (status, body) = refused(sam).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, entry) = app.get("root", "/v1/users/sam/directory").await;
    assert_eq!(entry["groups"], json!(["finance"]), "joined finance, left sre: {entry}");
    let (_, changes) = app.get("root", "/v1/admin/directory/changes").await;
    assert!(changes["items"].as_array().unwrap().iter().all(|c| c["actor"] == "oidc"), "{changes}");
}

/// The value of cookie `name` that `resp` sets.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next()?.strip_prefix(&format!("{name}=")).map(str::to_string))
}

#[tokio::test]
async fn the_web_inbox_signs_in_through_the_authorization_code_flow_with_pkce() {
    let issuer = start_issuer().await;
    let (app, clock) = sso_app(&issuer).await;
    let now = signoff_server::Clock::now(clock.as_ref()).as_second();
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let page = browser.get(format!("{}/signin", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("href=\"/signin/sso\""), "the sign-in page offers single sign-on");
    let start = browser.get(format!("{}/signin/sso", app.url)).send().await.unwrap();
    assert!(start.status().is_redirection());
    let pending = set_cookie(&start, "signoff_sso").unwrap();
    let to_issuer = start.headers()["location"].to_str().unwrap().to_string();
    assert!(to_issuer.starts_with(&format!("{}/authorize?", issuer.url)), "{to_issuer}");
    assert!(to_issuer.contains("code_challenge_method=S256") && to_issuer.contains("code_challenge="));
    assert!(!to_issuer.contains(pending.split('.').nth(2).unwrap()), "the verifier stays with the browser, only its hash goes out");

    *issuer.next_login.lock().unwrap() = issuer.claims("mark", now);
    let back = browser.get(&to_issuer).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    assert!(callback.starts_with(&format!("{}/signin/sso/callback?code=", app.url)), "{callback}");

    // A callback whose state is not this browser's sign-in is refused.
    let forged = callback.replace("state=", "state=x");
    let refused = browser.get(&forged).header("cookie", format!("signoff_sso={pending}")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.text().await.unwrap().contains("state does not match"));

    let signed_in = browser.get(&callback).header("cookie", format!("signoff_sso={pending}")).send().await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let session = set_cookie(&signed_in, "signoff_session").expect("a session starts");
    let inbox = browser.get(format!("{}/", app.url)).header("cookie", format!("signoff_session={session}")).send().await.unwrap();
    assert_eq!(inbox.status(), StatusCode::OK);
    assert!(inbox.text().await.unwrap().contains("mark"), "signed in as mark");

    // The code was spent: the same callback again gets nothing.
    let again = browser.get(&callback).header("cookie", format!("signoff_sso={pending}")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
}
