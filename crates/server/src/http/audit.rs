//! The audit log's routes: the signed checkpoint, consistency proofs between two of them, and
//! one request's verification with the proof of each of its events.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::extract::{Auth, path, query, time};
use crate::audit::{ConsistencyProof, RequestVerification};
use crate::error::Problem;
use signoff_audit::checkpoint::Checkpoint;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit/checkpoint", get(checkpoint))
        .route("/audit/consistency", get(consistency))
        .route("/audit/events", get(audit_events))
        .route("/requests/{id}/verify", get(verify))
}

/// The audit log's current size and root, signed (Ed25519). Keep one: a later consistency
/// proof shows the log only grew since.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit", responses((status = 200, body = Object)))]
pub(crate) async fn checkpoint(
    State(s): State<AppState>,
    Auth(_caller): Auth,
) -> Result<Json<Checkpoint>, Problem> {
    Ok(Json(s.audit_checkpoint().await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyParams {
    /// The size of the earlier checkpoint.
    from: u64,
    /// The size of the later one; the current size by default.
    to: Option<u64>,
}

/// The proof (RFC 6962) that the log of `to` events extends the log of `from` events.
#[utoipa::path(get, path = "/v1/audit/consistency", tag = "audit", params(ConsistencyParams), responses((status = 200, body = Object)))]
pub(crate) async fn consistency(
    State(s): State<AppState>,
    Auth(_caller): Auth,
    q: Result<Query<ConsistencyParams>, QueryRejection>,
) -> Result<Json<ConsistencyProof>, Problem> {
    let q = query(q)?;
    Ok(Json(s.audit_consistency(q.from, q.to).await?))
}

/// Verifies one request: its hash chain, that its stored state is the fold of its events, and
/// each event's place in the audit log (with the inclusion proofs).
#[utoipa::path(get, path = "/v1/requests/{id}/verify", tag = "audit", params(("id" = String, Path)), responses((status = 200, body = Object)))]
pub(crate) async fn verify(
    State(s): State<AppState>,
    Auth(caller): Auth,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RequestVerification>, Problem> {
    let id = path(id)?;
    Ok(Json(s.verify_request(&caller, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsParams {
    /// Events at or after this time (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Events before this time (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Only requests under this policy.
    policy: Option<String>,
    /// Only events of this type (`submitted`, `approved`, …).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Only events by this actor.
    actor: Option<String>,
    /// Only requests in this status now.
    #[param(inline, value_type = Option<String>, pattern = "^(pending|approved|rejected|expired|cancelled)$")]
    status: Option<String>,
    /// Resume from this log index (the `cursor` of the last line read, or a record's `index` + 1).
    #[param(minimum = 0)]
    cursor: Option<u64>,
}

/// The audit trail as NDJSON, streamed in log (commit) order: one record per event (and per
/// directory change made through the API, type `directory_changed`), then a
/// last line `{"complete": true, "cursor": N, "records": K}`. A stream that ends without it was
/// cut short: ask again from the last record's `index` + 1. Admins only.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", params(EventsParams),
    responses((status = 200, description = "NDJSON records", content_type = "application/x-ndjson", body = String)))]
pub(crate) async fn audit_events(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<EventsParams>, QueryRejection>) -> Result<axum::response::Response, Problem> {
    let q = query(q)?;
    if let Some(status) = &q.status
        && signoff_engine::RequestStatus::parse(status).is_none()
    {
        return Err(Problem::bad_parameter(format!("status: `{status}` is not a request status")));
    }
    let filter = crate::audit::ExportFilter {
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
        policy: q.policy,
        kind: q.kind,
        actor: q.actor,
        status: q.status,
    };
    let export = s.audit_export(&caller, filter, q.cursor.unwrap_or(0))?;
    let lines = futures_util::stream::unfold(Some((export, 0u64)), |state| async move {
        let (mut export, mut count) = state?;
        let chunk = match export.next_page().await {
            Ok(Some(records)) => {
                count += records.len() as u64;
                let mut text = String::new();
                for r in &records {
                    text.push_str(&serde_json::to_string(r).unwrap_or_default());
                    text.push('\n');
                }
                return Some((Ok::<_, std::convert::Infallible>(text), Some((export, count))));
            }
            Ok(None) => serde_json::json!({"complete": true, "cursor": export.cursor, "records": count}),
            Err(e) => {
                tracing::warn!(error = %e, cursor = export.cursor, "audit export: cannot read the store");
                serde_json::json!({"error": e.to_string(), "cursor": export.cursor})
            }
        };
        Some((Ok(format!("{chunk}\n")), None))
    });
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(lines));
    response.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}
