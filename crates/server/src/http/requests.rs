//! The requests resource: submit, read, list, act on, and a request's history and deliveries;
//! the caller's inbox.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use signoff_engine::{RequestState, RequestStatus};
use signoff_store::{ListQuery, ListSort};

use super::AppState;
use super::extract::{Auth, JsonBody, idempotency, path, query, reply};
use crate::error::Problem;
use crate::service::{ActionBody, ActionFields, SubmitBody};
use signoff_api::{DeliveryList, EventList, Inbox, RequestPage};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/requests", post(submit).get(list))
        .route("/requests/{id}", get(request))
        .route("/requests/{id}/actions", post(act))
        .route("/requests/{id}/events", get(events))
        .route("/requests/{id}/notifications", get(notifications))
        .route("/inbox", get(inbox))
}

/// Submit a request.
#[utoipa::path(post, path = "/v1/requests", tag = "requests", request_body = SubmitBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses((status = 201, body = RequestState)))]
pub(crate) async fn submit(State(s): State<AppState>, Auth(caller): Auth, headers: HeaderMap, body: JsonBody<SubmitBody>) -> Result<Response, Problem> {
    let key = idempotency(&headers, "POST /v1/requests", &body.raw)?;
    Ok(reply(s.submit(&caller, body.value, key).await?))
}

/// Act on a request: approve, reject, acknowledge, delegate, comment or cancel.
#[utoipa::path(post, path = "/v1/requests/{id}/actions", tag = "requests", request_body = ActionFields,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = RequestState)))]
pub(crate) async fn act(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, headers: HeaderMap, body: JsonBody<ActionFields>) -> Result<Response, Problem> {
    let id = path(id)?;
    let key = idempotency(&headers, &format!("POST /v1/requests/{id}/actions"), &body.raw)?;
    let action = ActionBody::try_from(body.value).map_err(Problem::bad_parameter)?;
    Ok(reply(s.act(&caller, &id, action, key).await?))
}

/// One request.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests", params(("id" = String, Path)),
    responses((status = 200, body = RequestState)))]
pub(crate) async fn request(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<RequestView>, Problem> {
    let id = path(id)?;
    let state = s.visible(&caller, &id).await?;
    let prediction = if state.status.is_terminal() { None } else { s.prediction(&id).await };
    Ok(Json(RequestView { state, prediction }))
}

/// A request as `GET /v1/requests/{id}` shows it: its state and, while it is pending, when it
/// is expected to be decided.
#[derive(Debug, serde::Serialize)]
pub(crate) struct RequestView {
    #[serde(flatten)]
    state: RequestState,
    #[serde(skip_serializing_if = "Option::is_none")]
    prediction: Option<signoff_insights::predict::Prediction>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    #[param(value_type = Option<String>, pattern = "^(pending|approved|rejected|expired|cancelled)$")]
    status: Option<String>,
    /// A policy id.
    policy: Option<String>,
    /// A user id.
    requester: Option<String>,
    /// A user id, or `me`: requests with a step that user can act on now.
    approver: Option<String>,
    subject: Option<String>,
    /// 1 to 500; 50 by default. A page also ends before the request that would take it past the
    /// server's page size in bytes (8 MiB by default).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page (of the same `sort`).
    #[param(pattern = "^[0-9]{1,18}(\\.[0-9]{1,18})?$")]
    cursor: Option<String>,
    /// `newest` (the default) or `due`: open requests by their soonest due task, undated last.
    #[param(value_type = Option<String>, pattern = "^(newest|due)$")]
    sort: Option<String>,
    /// `true`: only requests with an open task past its due time.
    overdue: Option<bool>,
}

/// Requests visible to the caller, newest first (or soonest due first with `sort=due`).
#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(ListParams),
    responses((status = 200, body = RequestPage)))]
pub(crate) async fn list(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<ListParams>, QueryRejection>) -> Result<Json<RequestPage>, Problem> {
    let q = query(q)?;
    let status = q
        .status
        .as_deref()
        .map(|st| RequestStatus::parse(st).ok_or_else(|| Problem::bad_parameter(format!("unknown status `{st}`"))))
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Problem::bad_parameter("limit must be between 1 and 500"));
    }
    let sort = match q.sort.as_deref() {
        None | Some("newest") => ListSort::Newest,
        Some("due") => ListSort::Due,
        Some(other) => return Err(Problem::bad_parameter(format!("unknown sort `{other}` (newest, due)"))),
    };
    let query = ListQuery {
        status,
        policy: q.policy,
        requester: q.requester,
        approver: q.approver,
        subject: q.subject,
        visible_to: None,
        limit,
        cursor: q.cursor,
        max_bytes: None,
        sort,
        overdue_at: None,
    };
    let page = match q.overdue {
        Some(true) => s.list_overdue(&caller, query).await?,
        _ => s.list(&caller, query).await?,
    };
    Ok(Json(RequestPage { items: page.items, next_cursor: page.next_cursor }))
}

/// A request's full history, oldest first.
#[utoipa::path(get, path = "/v1/requests/{id}/events", tag = "requests", params(("id" = String, Path)),
    responses((status = 200, body = EventList)))]
pub(crate) async fn events(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<EventList>, Problem> {
    let id = path(id)?;
    Ok(Json(EventList { items: s.events(&caller, &id).await? }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct InboxParams {
    /// 1 to 1000; 100 by default. The most urgent tasks come first; `GET /v1/requests?approver=me`
    /// pages through all of them.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The caller's open tasks, soonest due first.
#[utoipa::path(get, path = "/v1/inbox", tag = "requests", params(InboxParams), responses((status = 200, body = Inbox)))]
pub(crate) async fn inbox(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<InboxParams>, QueryRejection>) -> Result<Json<Inbox>, Problem> {
    let limit = query(q)?.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_parameter("limit must be between 1 and 1000"));
    }
    Ok(Json(Inbox { items: s.inbox(&caller, limit).await? }))
}

/// The request's notifications: where each went, its delivery state and every attempt.
#[utoipa::path(get, path = "/v1/requests/{id}/notifications", tag = "requests", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryList)))]
pub(crate) async fn notifications(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<DeliveryList>, Problem> {
    let id = path(id)?;
    Ok(Json(DeliveryList { items: s.deliveries(&caller, &id).await? }))
}
