//! Signing in to the web inbox with single sign-on: the authorization-code flow with PKCE.
//! `/signin/sso` sends the browser to the issuer with a fresh state, nonce and code challenge,
//! kept in a short-lived cookie; `/signin/sso/callback` checks the state, trades the code and
//! the verifier for an ID token, checks it (with the nonce) and starts a session as
//! signing in with a token does.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{AppState, Page, SignIn};
use crate::oidc;

/// The cookie holding a sign-in in progress: state, nonce and PKCE verifier.
const COOKIE: &str = "signoff_sso";

fn redirect_uri(s: &AppState, headers: &HeaderMap) -> String {
    let base = match s.oidc().and_then(|o| o.public_url()) {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
            format!("{}://{host}", if super::session::over_https(s, headers) { "https" } else { "http" })
        }
    };
    format!("{base}/signin/sso/callback")
}

fn pending(headers: &HeaderMap) -> Option<(String, String, String)> {
    let mut parts = super::session::cookie_value(headers, COOKIE)?.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(state), Some(nonce), Some(verifier), None) => Some((state.into(), nonce.into(), verifier.into())),
        _ => None,
    }
}

fn sso_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    // Lax: the issuer's redirect back is a cross-site navigation that must carry it.
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/signin/sso; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("signoff_sso=; Path=/signin/sso; Max-Age=0"))
}

/// Sends the browser to the issuer.
pub(super) async fn start(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(o) = s.oidc() else {
        return Page::refused(StatusCode::NOT_FOUND, "Single sign-on is not configured here.");
    };
    let (state, nonce, verifier) = (oidc::random(), oidc::random(), oidc::random());
    let redirect = redirect_uri(&s, &headers);
    match o.authorization_url(&redirect, &state, &nonce, &oidc::challenge(&verifier)).await {
        Ok(url) => {
            let mut resp = Redirect::to(&url).into_response();
            resp.headers_mut().insert(header::SET_COOKIE, sso_cookie(&format!("{state}.{nonce}.{verifier}"), 600, redirect.starts_with("https://")));
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on: the issuer cannot be reached");
            (StatusCode::SERVICE_UNAVAILABLE, SignIn::new(&s, Some("The single sign-on issuer cannot be reached; try again, or sign in with a token."))).into_response()
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The issuer's redirect back: checks it, starts a session.
pub(super) async fn callback(State(s): State<AppState>, headers: HeaderMap, q: Result<Query<Callback>, axum::extract::rejection::QueryRejection>) -> Response {
    let Some(o) = s.oidc() else {
        return Page::refused(StatusCode::NOT_FOUND, "Single sign-on is not configured here.");
    };
    let refuse = |s: &AppState, why: &str| {
        tracing::warn!(detail = why, "single sign-on refused");
        (StatusCode::UNAUTHORIZED, SignIn::new(s, Some(&format!("Single sign-on did not sign you in: {why}.")))).into_response()
    };
    let Ok(Query(q)) = q else { return refuse(&s, "the issuer's answer is malformed") };
    if let Some(error) = q.error {
        return refuse(&s, &format!("the issuer said `{error}`"));
    }
    let Some((state, nonce, verifier)) = pending(&headers) else { return refuse(&s, "this sign-in was not started here, or took longer than ten minutes") };
    if q.state.as_deref() != Some(state.as_str()) {
        return refuse(&s, "the state does not match this sign-in");
    }
    let Some(code) = q.code else { return refuse(&s, "the issuer sent no code") };
    let redirect = redirect_uri(&s, &headers);
    let identity = match o.redeem(&code, &verifier, &redirect, &nonce, s.now()).await {
        Ok(i) => i,
        Err(why) => return refuse(&s, &why),
    };
    let caller = match s.caller_of(identity).await {
        Ok(c) => c,
        Err(why) => return refuse(&s, &why),
    };
    match s.start_session(&caller.id).await {
        Ok((secret, _)) => {
            // A page, not a redirect: the session cookie is SameSite=Strict, and a redirect
            // chain that began on the issuer's site would not carry it to the inbox.
            let mut resp = Html("<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url=/\"><title>Signed in · signoff</title><p>Signed in. <a href=\"/\">Go to your inbox</a>.</p>").into_response();
            let max_age = crate::service::SESSION_LIFETIME.as_secs();
            let secure = redirect.starts_with("https://");
            resp.headers_mut().append(header::SET_COOKIE, super::session::cookie(&secret, max_age, secure));
            resp.headers_mut().append(header::SET_COOKIE, sso_cookie("", 0, secure));
            resp
        }
        Err(e) => Page::problem(e),
    }
}
