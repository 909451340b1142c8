//! The audit log's routes: the signed checkpoint, consistency proofs between two of them, and
//! one request's verification with the proof of each of its events.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::extract::{Auth, path, query};
use crate::audit::{ConsistencyProof, RequestVerification};
use crate::error::Problem;
use signoff_audit::checkpoint::Checkpoint;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit/checkpoint", get(checkpoint))
        .route("/audit/consistency", get(consistency))
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
