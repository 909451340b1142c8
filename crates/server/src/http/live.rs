//! Live views: Server-Sent Events of one request or of everything the caller takes part in, and
//! the long poll.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use signoff_engine::RequestState;

use super::AppState;
use super::extract::{Auth, path, query};
use crate::error::Problem;
use crate::live;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/requests/{id}/stream", get(request_stream))
        .route("/requests/{id}/wait", get(wait))
        .route("/stream", get(user_stream))
}

/// Server-Sent Events of one request: `state` at connect and after every change (`id` is the
/// version; send `Last-Event-ID` to resume), `heartbeat` every 15 s, closed after the terminal
/// state.
#[utoipa::path(get, path = "/v1/requests/{id}/stream", tag = "live",
    params(("id" = String, Path), ("Last-Event-ID" = Option<u64>, Header, description = "the last version received")),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub(crate) async fn request_stream(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Result<live::EventStream, Problem> {
    let id = path(id)?;
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|v| (1..=18).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| Problem::bad_parameter("Last-Event-ID must be a version number (1 to 18 digits)"))?,
        ),
    };
    live::request_stream(s, &caller, &id, last).await
}

/// Server-Sent Events of everything the caller takes part in: `inbox` at connect, then
/// `request` on every change, `resync` after falling behind, `heartbeat` every 15 s.
#[utoipa::path(get, path = "/v1/stream", tag = "live", responses((status = 200, content_type = "text/event-stream", body = String)))]
pub(crate) async fn user_stream(State(s): State<AppState>, Auth(caller): Auth) -> Result<live::EventStream, Problem> {
    live::user_stream(s, &caller).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitParams {
    /// How long to wait at most, e.g. `30s` (the default) or `5m`; longer is cut to 10m.
    #[param(pattern = "^[1-9][0-9]{0,3}[smhd]$")]
    timeout: Option<String>,
}

/// Long poll: answers when the request is closed, or after the timeout, with the request.
#[utoipa::path(get, path = "/v1/requests/{id}/wait", tag = "live", params(("id" = String, Path), WaitParams),
    responses((status = 200, body = RequestState)))]
pub(crate) async fn wait(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, q: Result<Query<WaitParams>, QueryRejection>) -> Result<Json<RequestState>, Problem> {
    let id = path(id)?;
    let timeout = match query(q)?.timeout {
        None => jiff::SignedDuration::from_secs(30),
        Some(t) => signoff_engine::duration::parse(&t)
            .map_err(|e| Problem::bad_parameter(format!("timeout: {e}")))?
            .min(live::MAX_WAIT),
    };
    Ok(Json(live::wait(&s, &caller, &id, timeout).await?))
}
