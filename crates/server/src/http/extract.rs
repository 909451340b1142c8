//! What handlers take from a call: the caller, a JSON body, the idempotency key, path and
//! query parameters; and how a service reply leaves.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use signoff_engine::{Code, canonical};

use super::AppState;
use crate::error::Problem;
use crate::service::{Caller, IdempotencyKey, Reply};

/// The caller, from `Authorization: Bearer <token>`, or from the web inbox's session cookie.
/// A state change made through the cookie must carry the session's CSRF token in
/// `X-CSRF-Token` (a cross-site page cannot read it), so a cookie alone changes nothing.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, service: &AppState) -> Result<Self, Problem> {
        let mut caller = caller(parts, service).await?;
        super::throttle::by_caller(service, parts, &caller.id).await?;
        caller.origin = Some(origin(parts));
        Ok(Auth(caller))
    }
}

/// Where a call came from: the peer the connection is from, what a proxy said it forwarded
/// for, and the user agent (each as text, cut to 256 characters).
fn origin(parts: &Parts) -> signoff_engine::event::Origin {
    let text = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(256).collect::<String>());
    signoff_engine::event::Origin {
        address: parts.extensions.get::<crate::transport::Peer>().map(|p| p.0.ip().to_string()),
        forwarded_for: text(header::HeaderName::from_static("x-forwarded-for")),
        user_agent: text(header::USER_AGENT),
    }
}

/// The caller a bearer token or a session cookie names.
async fn caller(parts: &Parts, service: &AppState) -> Result<Caller, Problem> {
    let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
        return match super::web::session::secret(&parts.headers) {
            Some(secret) => cookie_caller(parts, service, &secret).await,
            None => Err(Problem::new(Code::Unauthenticated, "send Authorization: Bearer <token>")),
        };
    };
    // An address that failed too often is not heard until its bucket refills.
    let address = super::throttle::client_of(service, parts.extensions.get(), &parts.headers);
    super::throttle::shut_out(service, address)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let why = match token {
        Some(token) => match service.authenticate_bearer(token).await {
            Ok(caller) => return Ok(caller),
            Err(why) => why,
        },
        None => "the Authorization header must be `Bearer <token>`".to_string(),
    };
    Err(super::throttle::failed(service, address, Problem::new(Code::Unauthenticated, why)).await)
}

/// The caller of a live session cookie; for anything but a read, only with its CSRF token.
async fn cookie_caller(parts: &Parts, service: &AppState, secret: &str) -> Result<Caller, Problem> {
    let (caller, session) = service
        .session_caller(secret)
        .await?
        .ok_or_else(|| Problem::new(Code::Unauthenticated, "the session has ended: sign in again"))?;
    if !parts.method.is_safe() {
        let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if sent != Some(session.csrf.as_str()) {
            return Err(Problem::forbidden("a change made with the session cookie needs its X-CSRF-Token"));
        }
    }
    Ok(caller)
}

/// A JSON body: syntax errors are `malformed_json`, wrong shapes `bad_parameter`, oversized
/// bodies `too_large`, bodies nesting deeper than `nesting::MAX_DEPTH` `too_deep`. Keeps the parsed value for the idempotency fingerprint.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Value,
}

/// The body was already read whole (and bounded) by `read_body`: only its bytes can be wrong.
pub(super) fn body_error(e: BytesRejection) -> Problem {
    Problem::bad_parameter(format!("the body could not be read: {e}"))
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        let depth = signoff_engine::nesting::text_depth(&bytes);
        if depth > signoff_engine::nesting::MAX_DEPTH {
            return Err(Problem::new(
                Code::TooDeep,
                format!("the body nests {depth} levels of objects and arrays; at most {} are allowed", signoff_engine::nesting::MAX_DEPTH),
            ));
        }
        let raw: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Problem::new(Code::MalformedJson, format!("the body is not valid JSON: {e}")))?;
        let value = T::deserialize(&raw).map_err(|e| Problem::bad_parameter(format!("the body is not valid: {e}")))?;
        Ok(JsonBody { value, raw })
    }
}

/// The `Idempotency-Key` header with the fingerprint of this call.
pub(super) fn idempotency(headers: &HeaderMap, route: &str, body: &Value) -> Result<Option<IdempotencyKey>, Problem> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key = v
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| Problem::bad_parameter("Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces)"))?;
    let fingerprint = canonical::digest(&json!({ "route": route, "body": body }));
    Ok(Some(IdempotencyKey { key: key.to_string(), fingerprint }))
}

pub(super) fn reply(r: Reply) -> Response {
    let content_type = if r.kind.is_success() { "application/json" } else { "application/problem+json" };
    let status = StatusCode::from_u16(r.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], r.body).into_response()
}

/// A path parameter; one that cannot be decoded (e.g. invalid UTF-8) is `bad_parameter`.
pub(super) fn path(p: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    p.map(|Path(id)| id).map_err(|e| Problem::bad_parameter(e.body_text()))
}

/// A time parameter (RFC 3339), if given; a bad one is 400 `bad_parameter` naming it.
pub(super) fn time(name: &str, value: Option<&str>) -> Result<Option<jiff::Timestamp>, Problem> {
    value.map(|v| v.parse::<jiff::Timestamp>().map_err(|e| Problem::bad_parameter(format!("{name}: `{v}` is not an RFC 3339 time: {e}")))).transpose()
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|Query(t)| t).map_err(|e| Problem::bad_parameter(e.body_text()))
}
