//! Signing in and out of the web inbox. A token pasted into the sign-in form starts a session
//! (`Service::start_session`, which single sign-on would end in too); the browser holds its
//! secret in an HttpOnly, SameSite=Strict cookie, Secure when the page came over HTTPS.

use axum::body::Bytes;
use axum::extract::State;
use axum::Extension;
use signoff_engine::Code;
use crate::error::Problem;
use crate::transport::Peer;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{AppState, Page, SignIn};

/// The session cookie's name.
pub const COOKIE: &str = "signoff_session";

/// The session secret a request's cookie carries, if any.
pub fn secret(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, COOKIE).map(str::to_string)
}

/// The value of the cookie `name` a request carries, if it carries one that is not empty.
pub(super) fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, value)| *n == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// Whether the page reaches the browser over HTTPS: served so, or behind a proxy that says so.
pub(super) fn over_https(s: &AppState, headers: &HeaderMap) -> bool {
    s.tls().is_some() || headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

pub(super) fn cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("signoff_session=; Path=/; Max-Age=0"))
}

/// A form posted from another site carries its own `Origin`: refused, so that nobody can sign a
/// visitor in (or out) as someone else.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

/// The sign-in page.
pub(super) async fn page(State(s): State<AppState>) -> Response {
    SignIn::new(&s, None).into_response()
}

/// The sign-in form's POST: a known token starts a session and goes to the inbox.
pub(super) async fn sign_in(State(s): State<AppState>, peer: Option<Extension<Peer>>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers) {
        return Page::refused(StatusCode::FORBIDDEN, "This sign-in came from another site.");
    }
    let address = crate::http::throttle::client_of(&s, peer.as_ref().map(|p| &p.0), &headers);
    if let Err(p) = crate::http::throttle::shut_out(&s, address) {
        return super::limited(p);
    }
    let token = serde_urlencoded::from_bytes::<SignInForm>(&body).map(|f| f.token.trim().to_string()).unwrap_or_default();
    let Some(caller) = s.authenticate(&token) else {
        if token.is_empty() {
            return (StatusCode::UNAUTHORIZED, SignIn::new(&s, Some("Paste your token."))).into_response();
        }
        let refusal = Problem::new(Code::Unauthenticated, "That token is not known here");
        let refusal = crate::http::throttle::failed(&s, address, refusal).await;
        if refusal.code == Code::RateLimited {
            return super::limited(refusal);
        }
        return (StatusCode::UNAUTHORIZED, SignIn::new(&s, Some("That token is not known here (unauthenticated)."))).into_response();
    };
    match s.start_session(&caller.id).await {
        Ok((secret, _)) => {
            let mut resp = Redirect::to("/").into_response();
            let max_age = crate::service::SESSION_LIFETIME.as_secs();
            resp.headers_mut().insert(header::SET_COOKIE, cookie(&secret, max_age, over_https(&s, &headers)));
            resp
        }
        Err(e) => Page::problem(e),
    }
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session (with its CSRF token, from the page's form) and forgets the cookie.
pub(super) async fn sign_out(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = serde_urlencoded::from_bytes::<SignOutForm>(&body).unwrap_or(SignOutForm { csrf: String::new() });
    if let Some(secret) = secret(&headers) {
        match s.session_caller(&secret).await {
            Ok(Some((_, session))) if session.csrf == form.csrf && same_origin(&headers) => {
                if let Err(e) = s.end_session(&secret).await {
                    return Page::problem(e);
                }
            }
            Ok(Some(_)) => return Page::refused(StatusCode::FORBIDDEN, "This sign-out did not come from signoff's own page."),
            Ok(None) => {}
            Err(e) => return Page::problem(e),
        }
    }
    let mut resp = Redirect::to("/signin").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie("", 0, over_https(&s, &headers)));
    resp
}

