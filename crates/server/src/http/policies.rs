//! The policies resource: the loaded policies, validation and dry-run plans.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use signoff_engine::{Code, Policy, RequestState};

use super::AppState;
use super::extract::{Auth, JsonBody, body_error, path};
use crate::error::Problem;
use crate::service::PlanBody;
use signoff_api::{PolicyList, PolicySummary};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/policies", get(policies))
        .route("/policies/validate", post(validate_policy))
        .route("/policies/{id}", get(policy))
        .route("/policies/{id}/plan", post(plan))
        .route("/policies/{id}/simulate", post(simulate))
}

pub(super) fn summary(p: &Policy) -> PolicySummary {
    PolicySummary { id: p.id.clone(), title: p.title.clone(), version: p.version, hash: p.hash.clone() }
}

/// The loaded policies.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = Object)))]
pub(crate) async fn policies(State(s): State<AppState>, Auth(_caller): Auth) -> Json<PolicyList> {
    Json(PolicyList { items: s.catalog().policies.values().map(|p| summary(p)).collect() })
}

/// One policy, as JSON, with its hash.
#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path)),
    responses((status = 200, body = Object)))]
pub(crate) async fn policy(State(s): State<AppState>, Auth(_caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, Problem> {
    let id = path(id)?;
    let catalog = s.catalog();
    let p = catalog
        .policies
        .get(&id)
        .ok_or_else(|| Problem::not_found(signoff_engine::suggest::unknown("no policy", &id, catalog.policies.keys().map(String::as_str))))?;
    let mut doc = p.source.clone();
    if let Value::Object(map) = &mut doc {
        map.insert("hash".into(), json!(p.hash));
        map.insert("version".into(), json!(p.version));
    }
    Ok(Json(doc))
}

/// Validate a policy (YAML or JSON body), listing every problem, and what is legal but wrong
/// against the server's directory (`warnings`).
#[utoipa::path(post, path = "/v1/policies/validate", tag = "policies", request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = Object)))]
pub(crate) async fn validate_policy(State(s): State<AppState>, Auth(_caller): Auth, body: Result<Bytes, BytesRejection>) -> Result<Response, Problem> {
    let bytes = body.map_err(body_error)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Problem::bad_parameter("the body must be UTF-8 text"))?;
    match Policy::from_yaml(text) {
        Ok(p) => {
            let warnings = p.warnings(&s.catalog().directory);
            Ok(Json(json!({ "valid": true, "id": p.id, "hash": p.hash, "warnings": warnings })).into_response())
        }
        Err(problems) => {
            let n = problems.len();
            Ok(Problem::new(Code::InvalidPolicy, format!("the policy has {n} problem(s)"))
                .with(json!({ "valid": false, "errors": problems, "warnings": [] }))
                .into_response())
        }
    }
}

/// The plan a submission would produce; nothing is stored.
#[utoipa::path(post, path = "/v1/policies/{id}/plan", tag = "policies", params(("id" = String, Path)), request_body = PlanBody,
    responses((status = 200, body = RequestState)))]
pub(crate) async fn plan(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, body: JsonBody<PlanBody>) -> Result<Json<RequestState>, Problem> {
    let id = path(id)?;
    Ok(Json(s.plan(&caller, &id, body.value)?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimulateParams {
    /// Requests submitted at or after this time (RFC 3339); 30 days before `to` by default.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Requests submitted before this time (RFC 3339); now by default.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Example requests kept per kind of difference, 0 to 100; 5 by default.
    #[param(minimum = 0, maximum = 100)]
    examples: Option<usize>,
}

/// What-if: replays the stored contexts of this policy's past requests through a candidate
/// policy (YAML or JSON body) and reports what would route differently, the change in
/// auto-approval and in each person's and group's load, and the expected change in time to
/// decision. Nothing is stored. Admins and the policy's owners.
#[utoipa::path(post, path = "/v1/policies/{id}/simulate", tag = "insights", params(("id" = String, Path), SimulateParams),
    request_body(content = String, content_type = "application/yaml"), responses((status = 200, body = Object)))]
pub(crate) async fn simulate(
    State(s): State<AppState>,
    Auth(caller): Auth,
    id: Result<Path<String>, PathRejection>,
    q: Result<axum::extract::Query<SimulateParams>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = path(id)?;
    let q = super::extract::query(q)?;
    let bytes = body.map_err(body_error)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Problem::bad_parameter("the body must be UTF-8 text"))?;
    let candidate = match Policy::from_yaml(text) {
        Ok(p) => p,
        Err(problems) => {
            let n = problems.len();
            return Ok(Problem::new(Code::InvalidPolicy, format!("the candidate policy has {n} problem(s)")).with(json!({ "errors": problems })).into_response());
        }
    };
    let examples = q.examples.unwrap_or(5);
    if examples > 100 {
        return Err(Problem::bad_parameter("examples must be between 0 and 100"));
    }
    let (from, to) = super::insights::window(q.from.as_deref(), q.to.as_deref(), s.now())?;
    Ok(Json(s.simulate(&caller, &id, candidate, from, to, examples).await?).into_response())
}
