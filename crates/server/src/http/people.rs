//! People, groups, tokens and out-of-office through the API (admins; anyone for their own
//! out-of-office), and the record of every such change.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use signoff_engine::directory::{Change, User};

use super::AppState;
use super::extract::{Auth, JsonBody, path, query};
use crate::error::Problem;
use crate::service::{Caller, Service};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users/{id}", put(put_user).delete(remove_user))
        .route("/admin/groups", get(groups))
        .route("/admin/groups/{id}", put(put_group).delete(remove_group))
        .route("/admin/tokens", get(tokens).post(issue_token))
        .route("/admin/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/admin/directory/changes", get(changes))
        .route("/users/{id}/out-of-office", put(set_out_of_office).delete(clear_out_of_office))
        .route("/users/{id}/directory", get(person))
}

fn admin_only(caller: &Caller) -> Result<(), Problem> {
    if caller.admin { Ok(()) } else { Err(Problem::forbidden("only admins manage people, groups and tokens")) }
}

/// A person as the API shows them: their entry, groups, admin flag and out-of-office.
fn person_json(s: &Service, id: &str) -> Result<Value, Problem> {
    let catalog = s.catalog();
    let dir = &catalog.directory;
    let user = dir.user(id).ok_or_else(|| Problem::not_found(format!("no user `{id}`")))?;
    let mut v = serde_json::to_value(user).map_err(Problem::internal)?;
    v["groups"] = json!(dir.groups_of(id));
    v["admin"] = json!(dir.is_admin(id));
    v["out_of_office"] = json!(dir.out_of_office(id).iter().map(|d| json!({"to": d.to, "starts": d.starts, "ends": d.ends, "set_by_api": d.by_api})).collect::<Vec<_>>());
    Ok(v)
}

/// The fields of a person (`PUT /v1/admin/users/{id}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonBody {
    name: Option<String>,
    email: Option<String>,
    /// Slack member id (`U…`), for Slack notifications.
    slack: Option<String>,
    /// Their manager's user id.
    manager: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: Map<String, Value>,
    /// Make (true) or unmake (false) an admin; left out, unchanged.
    admin: Option<bool>,
}

/// Add a person, or replace what is known of them (admins).
#[utoipa::path(put, path = "/v1/admin/users/{id}", tag = "people", params(("id" = String, Path)), request_body = PersonBody, responses((status = 200, body = Object)))]
pub(crate) async fn put_user(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, body: JsonBody<PersonBody>) -> Result<Json<Value>, Problem> {
    admin_only(&caller)?;
    let id = path(id)?;
    let b = body.value;
    let user = User { id: id.clone(), name: b.name, email: b.email, slack: b.slack, manager: b.manager, attributes: b.attributes };
    let record = s.change_directory(&caller, Change::PutUser { user, admin: b.admin }).await?;
    let mut v = person_json(&s, &id)?;
    v["change"] = json!(record.seq);
    Ok(Json(v))
}

/// Remove a person, with their memberships, tokens and out-of-office (admins).
#[utoipa::path(delete, path = "/v1/admin/users/{id}", tag = "people", params(("id" = String, Path)), responses((status = 200, body = Object)))]
pub(crate) async fn remove_user(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, Problem> {
    admin_only(&caller)?;
    let id = path(id)?;
    if id == caller.id {
        return Err(Problem::forbidden("an admin cannot remove themselves"));
    }
    let record = s.change_directory(&caller, Change::RemoveUser { id: id.clone() }).await?;
    Ok(Json(json!({"id": id, "removed": true, "change": record.seq})))
}

/// Every group with its members (admins).
#[utoipa::path(get, path = "/v1/admin/groups", tag = "people", responses((status = 200, body = Object)))]
pub(crate) async fn groups(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<Value>, Problem> {
    admin_only(&caller)?;
    let catalog = s.catalog();
    let items: Vec<Value> = catalog.directory.groups().map(|(id, members)| json!({"id": id, "members": members})).collect();
    Ok(Json(json!({ "items": items })))
}

/// A group's members (`PUT /v1/admin/groups/{id}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupBody {
    members: Vec<String>,
}

/// Set a group's members, creating it (admins).
#[utoipa::path(put, path = "/v1/admin/groups/{id}", tag = "people", params(("id" = String, Path)), request_body = GroupBody, responses((status = 200, body = Object)))]
pub(crate) async fn put_group(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, body: JsonBody<GroupBody>) -> Result<Json<Value>, Problem> {
    admin_only(&caller)?;
    let id = path(id)?;
    let record = s.change_directory(&caller, Change::PutGroup { id: id.clone(), members: body.value.members }).await?;
    let members = s.catalog().directory.group(&id).map(<[String]>::to_vec).unwrap_or_default();
    Ok(Json(json!({"id": id, "members": members, "change": record.seq})))
}

/// Remove a group (admins).
#[utoipa::path(delete, path = "/v1/admin/groups/{id}", tag = "people", params(("id" = String, Path)), responses((status = 200, body = Object)))]
pub(crate) async fn remove_group(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, Problem> {
    admin_only(&caller)?;
    let id = path(id)?;
    let record = s.change_directory(&caller, Change::RemoveGroup { id: id.clone() }).await?;
    Ok(Json(json!({"id": id, "removed": true, "change": record.seq})))
}

/// The tokens issued through the API: who, what for, until when; never the tokens (admins).
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "people", responses((status = 200, body = Object)))]
pub(crate) async fn tokens(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<Value>, Problem> {
    admin_only(&caller)?;
    let catalog = s.catalog();
    Ok(Json(json!({ "items": catalog.directory.issued_tokens() })))
}

/// A token to issue (`POST /v1/admin/tokens`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    /// Whose token it is.
    user: String,
    /// What it is for (a person reads it in the token list).
    name: Option<String>,
    /// When it stops working (RFC 3339); or
    expires: Option<String>,
    /// how long it works, e.g. `90d`. Neither: until revoked.
    expires_in: Option<String>,
}

/// Issue a token: the answer holds it once; only its hash is kept (admins).
#[utoipa::path(post, path = "/v1/admin/tokens", tag = "people", request_body = TokenBody, responses((status = 201, body = Object)))]
pub(crate) async fn issue_token(State(s): State<AppState>, Auth(caller): Auth, body: JsonBody<TokenBody>) -> Result<(StatusCode, Json<Value>), Problem> {
    admin_only(&caller)?;
    let b = body.value;
    let now = s.now();
    let expires = match (b.expires.as_deref(), b.expires_in.as_deref()) {
        (Some(_), Some(_)) => return Err(Problem::bad_parameter("give expires or expires_in, not both")),
        (Some(at), None) => super::extract::time("expires", Some(at))?,
        (None, Some(span)) => {
            let d = signoff_engine::duration::parse(span).map_err(|e| Problem::bad_parameter(format!("expires_in: `{span}`: {e}")))?;
            Some(now.checked_add(d).map_err(|_| Problem::bad_parameter(format!("expires_in: `{span}` is too long")))?)
        }
        (None, None) => None,
    };
    if expires.is_some_and(|e| e <= now) {
        return Err(Problem::bad_parameter("the token would expire before it is issued"));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(Problem::internal)?;
    let token = format!("so_{}", hex::encode(secret));
    let id = format!("tok_{}", uuid::Uuid::now_v7().simple());
    let change = Change::IssueToken { id: id.clone(), user: b.user.clone(), sha256: signoff_engine::directory::token_hash(&token), name: b.name.clone(), expires };
    let record = s.change_directory(&caller, change).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "token": token, "user": b.user, "name": b.name, "expires": expires, "change": record.seq}))))
}

/// Revoke a token issued through the API (admins); it stops working at once.
#[utoipa::path(delete, path = "/v1/admin/tokens/{id}", tag = "people", params(("id" = String, Path)), responses((status = 200, body = Object)))]
pub(crate) async fn revoke_token(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, Problem> {
    admin_only(&caller)?;
    let id = path(id)?;
    let record = s.change_directory(&caller, Change::RevokeToken { id: id.clone() }).await?;
    Ok(Json(json!({"id": id, "revoked": true, "change": record.seq})))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangesParams {
    /// Changes after this number; from the first by default.
    after: Option<u64>,
    /// 1 to 1000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Every change made to the directory through the API, oldest first: number, time, who, from
/// where, what, and the hash chain (admins).
#[utoipa::path(get, path = "/v1/admin/directory/changes", tag = "people", params(ChangesParams), responses((status = 200, body = Object)))]
pub(crate) async fn changes(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<ChangesParams>, QueryRejection>) -> Result<Json<Value>, Problem> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_parameter("limit must be between 1 and 1000"));
    }
    let items = s.directory_changes(&caller, q.after.unwrap_or(0), limit as usize).await?;
    Ok(Json(json!({ "items": items })))
}

/// An out-of-office (`PUT /v1/users/{id}/out-of-office`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutOfOfficeBody {
    /// Who takes the work meanwhile.
    to: String,
    /// From when (RFC 3339); now by default.
    starts: Option<String>,
    /// Until when (RFC 3339).
    ends: String,
}

/// Set a person's out-of-office (their own, or anyone's for an admin): their tasks go to `to`
/// from `starts` to `ends`. Replaces an out-of-office set through the API before.
#[utoipa::path(put, path = "/v1/users/{id}/out-of-office", tag = "people", params(("id" = String, Path)), request_body = OutOfOfficeBody, responses((status = 200, body = Object)))]
pub(crate) async fn set_out_of_office(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, body: JsonBody<OutOfOfficeBody>) -> Result<Json<Value>, Problem> {
    let id = path(id)?;
    let b = body.value;
    let starts = super::extract::time("starts", b.starts.as_deref())?.unwrap_or_else(|| s.now());
    let ends = super::extract::time("ends", Some(&b.ends))?.unwrap_or(starts);
    let record = s.change_directory(&caller, Change::SetOutOfOffice { user: id.clone(), to: b.to, starts, ends }).await?;
    let mut v = person_json(&s, &id)?;
    v["change"] = json!(record.seq);
    Ok(Json(v))
}

/// End a person's out-of-office set through the API (their own, or anyone's for an admin).
#[utoipa::path(delete, path = "/v1/users/{id}/out-of-office", tag = "people", params(("id" = String, Path)), responses((status = 200, body = Object)))]
pub(crate) async fn clear_out_of_office(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, Problem> {
    let id = path(id)?;
    let record = s.change_directory(&caller, Change::ClearOutOfOffice { user: id.clone() }).await?;
    let mut v = person_json(&s, &id)?;
    v["change"] = json!(record.seq);
    Ok(Json(v))
}

/// A person's directory entry: groups, admin, out-of-office (themselves, or an admin).
#[utoipa::path(get, path = "/v1/users/{id}/directory", tag = "people", params(("id" = String, Path)), responses((status = 200, body = Object)))]
pub(crate) async fn person(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, Problem> {
    let id = path(id)?;
    if !caller.admin && caller.id != id {
        return Err(Problem::forbidden("only admins read other people's directory entries"));
    }
    Ok(Json(person_json(&s, &id)?))
}
