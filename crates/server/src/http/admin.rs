//! Administration and identity: reload, every open task, who the caller is.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use signoff_engine::Code;

use super::AppState;
use super::extract::{Auth, query};
use super::policies::summary;
use signoff_api::{Inbox, Me, UserList};
use crate::error::Problem;
use crate::service::ReloadError;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/admin/reload", post(reload)).route("/tasks", get(tasks)).route("/me", get(me)).route("/users", get(users))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct TasksParams {
    /// 1 to 1000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only this user's tasks.
    approver: Option<String>,
}

/// Every open task of every approver, soonest due first (admins).
#[utoipa::path(get, path = "/v1/tasks", tag = "admin", params(TasksParams), responses((status = 200, body = Inbox)))]
pub(crate) async fn tasks(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<TasksParams>, QueryRejection>) -> Result<Json<Inbox>, Problem> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_parameter("limit must be between 1 and 1000"));
    }
    Ok(Json(Inbox { items: s.open_tasks(&caller, q.approver.as_deref(), limit).await? }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsersParams {
    /// Part of a user's id or name, any case; every user when empty.
    q: Option<String>,
    /// 1 to 100; 20 by default.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// Directory users whose id or name contains `q`, by id: for choosing whom to delegate to.
#[utoipa::path(get, path = "/v1/users", tag = "admin", params(UsersParams), responses((status = 200, body = Object)))]
pub(crate) async fn users(State(s): State<AppState>, Auth(_caller): Auth, q: Result<Query<UsersParams>, QueryRejection>) -> Result<Json<UserList>, Problem> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::bad_parameter("limit must be between 1 and 100"));
    }
    Ok(Json(UserList { items: s.users(q.q.as_deref().unwrap_or_default(), limit as usize) }))
}

/// Who the caller is: their directory entry, groups and whether they are an admin.
#[utoipa::path(get, path = "/v1/me", tag = "admin", responses((status = 200, body = Object)))]
pub(crate) async fn me(State(s): State<AppState>, Auth(caller): Auth) -> Json<Me> {
    Json(s.me(&caller))
}


/// Reload policies and directory from disk (admins). An invalid file keeps the previous set.
#[utoipa::path(post, path = "/v1/admin/reload", tag = "admin",
    responses((status = 200, body = Object)))]
pub(crate) async fn reload(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<Value>, Problem> {
    if !caller.admin {
        return Err(Problem::new(Code::Forbidden, "only admins may reload"));
    }
    match s.reload().await {
        Ok(c) => Ok(Json(json!({ "reloaded": true, "policies": c.policies.values().map(|p| summary(p)).collect::<Vec<_>>() }))),
        Err(ReloadError::Invalid(e)) => Err(Problem::new(Code::InvalidPolicy, format!("kept the previous policies and directory: {e}"))
            .with(json!({ "file": e.file, "errors": e.problems }))),
        Err(ReloadError::Store(e)) => Err(e.into()),
    }
}
