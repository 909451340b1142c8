//! Rate limits at the edge: every call by its client address before it is handled, by its
//! caller once authenticated (`extract::Auth`), and failed authentications. A limited call is
//! answered 429 `rate_limited` with `Retry-After`: as problem+json, or as a page to a browser.

use std::net::IpAddr;

use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::Problem;
use crate::throttle::{Class, Throttle};

/// Takes a token for the call from its client address's bucket of its class.
pub(super) async fn by_address(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(t) = s.throttle()
        && let Some(class) = class(req.method(), req.extensions().get::<MatchedPath>())
        && let Err(p) = t.address(class, client(t, req.extensions().get(), req.headers()), s.now()).await
    {
        return answer(req.uri().path(), req.headers(), p);
    }
    next.run(req).await
}

/// The class of a call, from its method and matched route (none for unmatched routes, which
/// are answered 404 at once, and the probes).
fn class(method: &Method, route: Option<&MatchedPath>) -> Option<Class> {
    Class::of(method, route?.as_str())
}

/// The client address of a call: its peer, or whom a trusted proxy forwarded it for.
fn client(t: &Throttle, peer: Option<&crate::transport::Peer>, headers: &HeaderMap) -> Option<IpAddr> {
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    t.client(peer.map(|p| p.0.ip()), forwarded)
}

/// The client address of a call being authenticated, from its peer and headers.
pub(super) fn client_of(s: &AppState, peer: Option<&crate::transport::Peer>, headers: &HeaderMap) -> Option<IpAddr> {
    s.throttle().and_then(|t| client(t, peer, headers))
}

/// Takes a token for an authenticated call from its caller's bucket of its class.
pub(super) async fn by_caller(s: &AppState, parts: &Parts, caller: &str) -> Result<(), Problem> {
    match (s.throttle(), class(&parts.method, parts.extensions.get())) {
        (Some(t), Some(class)) => t.caller(class, caller, s.now()).await,
        _ => Ok(()),
    }
}

/// Refuses a call from an address shut out for failing to authenticate too often.
pub(super) fn shut_out(s: &AppState, address: Option<IpAddr>) -> Result<(), Problem> {
    s.throttle().map_or(Ok(()), |t| t.shut_out(address, s.now()))
}

/// A failed authentication from `address`: `refusal`, or 429 once the address fails too often.
pub(super) async fn failed(s: &AppState, address: Option<IpAddr>, refusal: Problem) -> Problem {
    match s.throttle() {
        Some(t) => t.failed_auth(address, s.now(), refusal).await,
        None => refusal,
    }
}

/// A refusal as the caller reads it: a page for a browser on a page of the inbox, else
/// problem+json.
pub(super) fn answer(path: &str, headers: &HeaderMap, p: Problem) -> Response {
    let browser = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if browser && !path.starts_with("/v1/") {
        return super::web::limited(p);
    }
    p.into_response()
}
