//! HTTP handlers: parse, authenticate, call the service, render. Every failure, including a
//! malformed body, an unknown route or a panic, leaves as `application/problem+json`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use signoff_engine::{Event, Policy, RequestState, RequestStatus, canonical};
use signoff_store::{ListQuery, ListSort, Task};

use crate::error::ApiError;
use crate::live;
use crate::service::{ActionBody, Caller, IdempotencyKey, PlanBody, ReloadError, Reply, Service, SubmitBody};

type AppState = Arc<Service>;

pub fn router(service: Arc<Service>) -> Router {
    let v1 = Router::new()
        .route("/requests", post(submit).get(list))
        .route("/requests/{id}", get(request))
        .route("/requests/{id}/actions", post(act))
        .route("/requests/{id}/events", get(events))
        .route("/requests/{id}/stream", get(request_stream))
        .route("/requests/{id}/notifications", get(notifications))
        .route("/requests/{id}/wait", get(wait))
        .route("/stream", get(user_stream))
        .route("/inbox", get(inbox))
        .route("/tasks", get(tasks))
        .route("/me", get(me))
        .route("/policies", get(policies))
        .route("/policies/validate", post(validate_policy))
        .route("/policies/{id}", get(policy))
        .route("/policies/{id}/plan", post(plan))
        .route("/admin/reload", post(reload))
        .route("/openapi.json", get(crate::openapi::catalog_document));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(crate::openapi::public_document))
        .route("/slack/interactions", post(slack_interactions))
        .route("/email/act", get(email_confirm).post(email_act))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::new("method_not_allowed", "this route does not take that method") })
        // `read_body` bounds every body (`Limits::max_body_bytes`) before an extractor sees it.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(service.clone(), read_body))
        .layer(middleware::from_fn(record_metrics))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal("a handler panicked").into_response()
        }))
        .with_state(service)
}

// ---- request bodies and heads --------------------------------------------------------------

/// An error answer that also closes the connection (the rest of the request was not read).
fn closing(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Before routing: checks the size of the request target (414) and head (431), and reads the
/// body whole: at most `max_body_bytes` (413 `too_large`), within `body_timeout` (408
/// `request_timeout`). A refused body is drained first, within bounds, so that a client that
/// writes its whole body before reading still gets the 413.
async fn read_body(State(s): State<AppState>, req: Request, next: Next) -> Response {
    use crate::transport::{MAX_HEAD_BYTES, MAX_URI_BYTES};
    use futures_util::StreamExt;
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return closing(ApiError::new("uri_too_long", format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are allowed")));
    }
    let head: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if head > MAX_HEAD_BYTES {
        return closing(ApiError::new("headers_too_large", format!("the request headers are {head} bytes; at most {MAX_HEAD_BYTES} are allowed")));
    }
    if axum::body::HttpBody::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let limits = *s.limits();
    let (parts, body) = req.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large = || closing(ApiError::new("too_large", format!("the body is larger than {} bytes", limits.max_body_bytes)));
    let mut chunks = body.into_data_stream();
    let started = tokio::time::Instant::now();
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        // A client waiting for `100 Continue` has sent nothing yet: reading would invite the body.
        let waits_to_send = parts.headers.contains_key(header::EXPECT);
        if !waits_to_send && declared.is_some_and(|n| n <= limits.drain_bytes as u64) {
            drain(&mut chunks, 0, &limits, started).await;
        }
        return too_large();
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let deadline = started + limits.body_timeout;
    loop {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Err(_) => {
                return closing(ApiError::new("request_timeout", format!("the body did not arrive within {:?}", limits.body_timeout)));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return closing(ApiError::bad_parameter(format!("the body could not be read: {e}"))),
            Ok(Some(Ok(chunk))) => {
                if bytes.len() + chunk.len() > limits.max_body_bytes {
                    drain(&mut chunks, bytes.len() + chunk.len(), &limits, started).await;
                    return too_large();
                }
                bytes.extend_from_slice(&chunk);
            }
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// Reads and throws away what is left of a refused body, up to `drain_bytes` in all (counting
/// the `read` bytes already read) and until `drain_time` after `started`.
async fn drain(chunks: &mut axum::body::BodyDataStream, mut read: usize, limits: &crate::transport::Limits, started: tokio::time::Instant) {
    use futures_util::StreamExt;
    let deadline = started + limits.drain_time;
    while read <= limits.drain_bytes {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            _ => return,
        }
    }
}

// ---- extractors -------------------------------------------------------------------------

/// The caller, from `Authorization: Bearer <token>`.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::new("unauthenticated", "send Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new("unauthenticated", "the Authorization header must be `Bearer <token>`"))?;
        service
            .authenticate(token)
            .map(Auth)
            .ok_or_else(|| ApiError::new("unauthenticated", "unknown token"))
    }
}

/// A JSON body: syntax errors are `malformed_json`, wrong shapes `bad_parameter`, oversized
/// bodies `too_large`, bodies nesting deeper than `nesting::MAX_DEPTH` `too_deep`. Keeps the parsed value for the idempotency fingerprint.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Value,
}

/// The body was already read whole (and bounded) by `read_body`: only its bytes can be wrong.
fn body_error(e: BytesRejection) -> ApiError {
    ApiError::bad_parameter(format!("the body could not be read: {e}"))
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        let depth = signoff_engine::nesting::text_depth(&bytes);
        if depth > signoff_engine::nesting::MAX_DEPTH {
            return Err(ApiError::new(
                "too_deep",
                format!("the body nests {depth} levels of objects and arrays; at most {} are allowed", signoff_engine::nesting::MAX_DEPTH),
            ));
        }
        let raw: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new("malformed_json", format!("the body is not valid JSON: {e}")))?;
        let value = T::deserialize(&raw).map_err(|e| ApiError::bad_parameter(format!("the body is not valid: {e}")))?;
        Ok(JsonBody { value, raw })
    }
}

/// The `Idempotency-Key` header with the fingerprint of this call.
fn idempotency(headers: &HeaderMap, route: &str, body: &Value) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key = v
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| ApiError::bad_parameter("Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces)"))?;
    let fingerprint = canonical::digest(&json!({ "route": route, "body": body }));
    Ok(Some(IdempotencyKey { key: key.to_string(), fingerprint }))
}

fn reply(r: Reply) -> Response {
    let content_type = if r.status.is_client_error() || r.status.is_server_error() {
        "application/problem+json"
    } else {
        "application/json"
    };
    (r.status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], r.body).into_response()
}

/// A path parameter; one that cannot be decoded (e.g. invalid UTF-8) is `bad_parameter`.
fn path(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id).map_err(|e| ApiError::bad_parameter(e.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|e| ApiError::bad_parameter(e.body_text()))
}

// ---- requests ---------------------------------------------------------------------------

/// Submit a request.
#[utoipa::path(post, path = "/v1/requests", tag = "requests", request_body = SubmitBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "retry-safe key")),
    responses((status = 201, body = RequestState)))]
pub(crate) async fn submit(State(s): State<AppState>, Auth(caller): Auth, headers: HeaderMap, body: JsonBody<SubmitBody>) -> Result<Response, ApiError> {
    let key = idempotency(&headers, "POST /v1/requests", &body.raw)?;
    Ok(reply(s.submit(&caller, body.value, key).await?))
}

/// Act on a request: approve, reject, acknowledge, delegate, comment or cancel.
#[utoipa::path(post, path = "/v1/requests/{id}/actions", tag = "requests", request_body = ActionBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = RequestState)))]
pub(crate) async fn act(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, headers: HeaderMap, body: JsonBody<ActionBody>) -> Result<Response, ApiError> {
    let id = path(id)?;
    let key = idempotency(&headers, &format!("POST /v1/requests/{id}/actions"), &body.raw)?;
    Ok(reply(s.act(&caller, &id, body.value, key).await?))
}

/// One request.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests", params(("id" = String, Path)),
    responses((status = 200, body = RequestState)))]
pub(crate) async fn request(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<RequestState>, ApiError> {
    let id = path(id)?;
    Ok(Json(s.visible(&caller, &id).await?))
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

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RequestPage {
    items: Vec<RequestState>,
    next_cursor: Option<String>,
}

/// Requests visible to the caller, newest first (or soonest due first with `sort=due`).
#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(ListParams),
    responses((status = 200, body = RequestPage)))]
pub(crate) async fn list(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<ListParams>, QueryRejection>) -> Result<Json<RequestPage>, ApiError> {
    let q = query(q)?;
    let status = q
        .status
        .as_deref()
        .map(|st| RequestStatus::parse(st).ok_or_else(|| ApiError::bad_parameter(format!("unknown status `{st}`"))))
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_parameter("limit must be between 1 and 500"));
    }
    let sort = match q.sort.as_deref() {
        None | Some("newest") => ListSort::Newest,
        Some("due") => ListSort::Due,
        Some(other) => return Err(ApiError::bad_parameter(format!("unknown sort `{other}` (newest, due)"))),
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

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EventList {
    items: Vec<Event>,
}

/// A request's full history, oldest first.
#[utoipa::path(get, path = "/v1/requests/{id}/events", tag = "requests", params(("id" = String, Path)),
    responses((status = 200, body = EventList)))]
pub(crate) async fn events(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<EventList>, ApiError> {
    let id = path(id)?;
    Ok(Json(EventList { items: s.events(&caller, &id).await? }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Inbox {
    #[schema(value_type = Vec<Object>)]
    items: Vec<Task>,
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
pub(crate) async fn inbox(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<InboxParams>, QueryRejection>) -> Result<Json<Inbox>, ApiError> {
    let limit = query(q)?.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_parameter("limit must be between 1 and 1000"));
    }
    Ok(Json(Inbox { items: s.inbox(&caller, limit).await? }))
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
pub(crate) async fn tasks(State(s): State<AppState>, Auth(caller): Auth, q: Result<Query<TasksParams>, QueryRejection>) -> Result<Json<Inbox>, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_parameter("limit must be between 1 and 1000"));
    }
    Ok(Json(Inbox { items: s.open_tasks(&caller, q.approver.as_deref(), limit).await? }))
}

/// Who the caller is: their directory entry, groups and whether they are an admin.
#[utoipa::path(get, path = "/v1/me", tag = "admin", responses((status = 200, body = Object)))]
pub(crate) async fn me(State(s): State<AppState>, Auth(caller): Auth) -> Json<Value> {
    Json(s.me(&caller))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryList {
    #[schema(value_type = Vec<Object>)]
    items: Vec<signoff_store::DeliveryReport>,
}

/// The request's notifications: where each went, its delivery state and every attempt.
#[utoipa::path(get, path = "/v1/requests/{id}/notifications", tag = "requests", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryList)))]
pub(crate) async fn notifications(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<DeliveryList>, ApiError> {
    let id = path(id)?;
    Ok(Json(DeliveryList { items: s.deliveries(&caller, &id).await? }))
}

// ---- live -------------------------------------------------------------------------------

/// Server-Sent Events of one request: `state` at connect and after every change (`id` is the
/// version; send `Last-Event-ID` to resume), `heartbeat` every 15 s, closed after the terminal
/// state.
#[utoipa::path(get, path = "/v1/requests/{id}/stream", tag = "live",
    params(("id" = String, Path), ("Last-Event-ID" = Option<u64>, Header, description = "the last version received")),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub(crate) async fn request_stream(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Result<live::EventStream, ApiError> {
    let id = path(id)?;
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|v| (1..=18).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_parameter("Last-Event-ID must be a version number (1 to 18 digits)"))?,
        ),
    };
    live::request_stream(s, &caller, &id, last).await
}

/// Server-Sent Events of everything the caller takes part in: `inbox` at connect, then
/// `request` on every change, `resync` after falling behind, `heartbeat` every 15 s.
#[utoipa::path(get, path = "/v1/stream", tag = "live", responses((status = 200, content_type = "text/event-stream", body = String)))]
pub(crate) async fn user_stream(State(s): State<AppState>, Auth(caller): Auth) -> Result<live::EventStream, ApiError> {
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
pub(crate) async fn wait(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, q: Result<Query<WaitParams>, QueryRejection>) -> Result<Json<RequestState>, ApiError> {
    let id = path(id)?;
    let timeout = match query(q)?.timeout {
        None => jiff::SignedDuration::from_secs(30),
        Some(t) => signoff_engine::duration::parse(&t)
            .map_err(|e| ApiError::bad_parameter(format!("timeout: {e}")))?
            .min(live::MAX_WAIT),
    };
    Ok(Json(live::wait(&s, &caller, &id, timeout).await?))
}

// ---- policies ---------------------------------------------------------------------------

fn summary(p: &Policy) -> Value {
    json!({ "id": p.id, "title": p.title, "version": p.version, "hash": p.hash })
}

/// The loaded policies.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = Object)))]
pub(crate) async fn policies(State(s): State<AppState>, Auth(_caller): Auth) -> Json<Value> {
    let items: Vec<Value> = s.catalog().policies.values().map(|p| summary(p)).collect();
    Json(json!({ "items": items }))
}

/// One policy, as JSON, with its hash.
#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path)),
    responses((status = 200, body = Object)))]
pub(crate) async fn policy(State(s): State<AppState>, Auth(_caller): Auth, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, ApiError> {
    let id = path(id)?;
    let catalog = s.catalog();
    let p = catalog
        .policies
        .get(&id)
        .ok_or_else(|| ApiError::not_found(signoff_engine::suggest::unknown("no policy", &id, catalog.policies.keys().map(String::as_str))))?;
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
pub(crate) async fn validate_policy(State(s): State<AppState>, Auth(_caller): Auth, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let bytes = body.map_err(body_error)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_parameter("the body must be UTF-8 text"))?;
    match Policy::from_yaml(text) {
        Ok(p) => {
            let warnings = p.warnings(&s.catalog().directory);
            Ok(Json(json!({ "valid": true, "id": p.id, "hash": p.hash, "warnings": warnings })).into_response())
        }
        Err(problems) => {
            let n = problems.len();
            Ok(ApiError::new("invalid_policy", format!("the policy has {n} problem(s)"))
                .with(json!({ "valid": false, "errors": problems, "warnings": [] }))
                .into_response())
        }
    }
}

/// The plan a submission would produce; nothing is stored.
#[utoipa::path(post, path = "/v1/policies/{id}/plan", tag = "policies", params(("id" = String, Path)), request_body = PlanBody,
    responses((status = 200, body = RequestState)))]
pub(crate) async fn plan(State(s): State<AppState>, Auth(caller): Auth, id: Result<Path<String>, PathRejection>, body: JsonBody<PlanBody>) -> Result<Json<RequestState>, ApiError> {
    let id = path(id)?;
    Ok(Json(s.plan(&caller, &id, body.value)?))
}

/// Reload policies and directory from disk (admins). An invalid file keeps the previous set.
#[utoipa::path(post, path = "/v1/admin/reload", tag = "admin",
    responses((status = 200, body = Object)))]
pub(crate) async fn reload(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<Value>, ApiError> {
    if !caller.admin {
        return Err(ApiError::new("forbidden", "only admins may reload"));
    }
    match s.reload().await {
        Ok(c) => Ok(Json(json!({ "reloaded": true, "policies": c.policies.values().map(|p| summary(p)).collect::<Vec<_>>() }))),
        Err(ReloadError::Invalid(e)) => Err(ApiError::new("invalid_policy", format!("kept the previous policies and directory: {e}"))
            .with(json!({ "file": e.file, "errors": e.problems }))),
        Err(ReloadError::Store(e)) => Err(e),
    }
}

// ---- Slack ------------------------------------------------------------------------------

/// Slack interactivity: verified with the app's signing secret (v0 signature, timestamp within
/// five minutes, each signature accepted once), then acted on as the linked directory user.
#[utoipa::path(post, path = "/slack/interactions", tag = "integrations", security(()),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Slack's form with `payload`; signed with X-Slack-Signature"),
    params(("X-Slack-Request-Timestamp" = Option<String>, Header), ("X-Slack-Signature" = Option<String>, Header)),
    responses((status = 200, body = Object, description = "an ephemeral message for the person who clicked")))]
pub(crate) async fn slack_interactions(State(s): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    use crate::notify::slack;
    let body = body.map_err(body_error)?;
    let config = s.notify_config().slack.clone().ok_or_else(|| ApiError::not_found("Slack is not configured"))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (timestamp, signature) = (header("x-slack-request-timestamp"), header("x-slack-signature"));
    slack::verify(&config.signing_secret, &timestamp, &signature, &body, s.now()).map_err(|e| {
        ApiError::new("unauthenticated", match e {
            slack::Unverified::Missing => "missing or malformed X-Slack-Request-Timestamp",
            slack::Unverified::Stale => "the request timestamp is more than five minutes off",
            slack::Unverified::BadSignature => "the Slack signature does not match",
        })
    })?;
    if !s.store().use_once(&format!("slack:{signature}"), s.now()).await? {
        return Err(ApiError::new("unauthenticated", "this Slack request was already received (replay)"));
    }
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let form: Form = serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::bad_parameter(format!("expected a form with `payload`: {e}")))?;
    let payload: Value = serde_json::from_str(&form.payload).map_err(|e| ApiError::new("malformed_json", format!("payload: {e}")))?;
    let click = slack::click(&payload).ok_or_else(|| ApiError::bad_parameter("not an approve or reject button click"))?;
    let text = s.slack_click(click).await?;
    Ok(Json(json!({ "response_type": "ephemeral", "replace_original": false, "text": text })))
}

// ---- email links -------------------------------------------------------------------------

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\"><title>{t}</title></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], html).into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LinkQuery {
    /// The signed link.
    token: String,
}

#[derive(Deserialize)]
struct LinkForm {
    token: String,
    #[serde(default)]
    comment: Option<String>,
}

/// The page an emailed link opens: it shows what the link would do and asks to confirm.
/// Nothing happens until the form is posted.
#[utoipa::path(get, path = "/email/act", tag = "integrations", security(()), params(LinkQuery),
    responses((status = 200, content_type = "text/html", body = String, description = "a page asking to confirm")))]
pub(crate) async fn email_confirm(State(s): State<AppState>, q: Result<Query<LinkQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else { return page(StatusCode::BAD_REQUEST, "Invalid link", "<p>The link is incomplete.</p>") };
    match s.email_link(&q.token) {
        Err(e) => page(e.status, "This link does not work", &format!("<p>{}</p>", escape(&e.detail))),
        Ok(claim) => confirm_form(&q.token, &claim, None),
    }
}

fn confirm_form(token: &str, claim: &crate::notify::email::LinkClaim, note: Option<&str>) -> Response {
    let reject = claim.a == "reject";
    let body = format!(
        "{note}<p>{who}, you are about to <strong>{action}</strong> step <code>{step}</code> of request <code>{request}</code>.</p>\
         <form method=\"post\" action=\"/email/act\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <p><label>{label}<br><textarea name=\"comment\" rows=\"3\" cols=\"60\"{required}></textarea></label></p>\
         <p><button type=\"submit\">Confirm: {action}</button></p></form>",
        note = note.map(|n| format!("<p><strong>{}</strong></p>", escape(n))).unwrap_or_default(),
        who = escape(&claim.u),
        action = escape(&claim.a),
        step = escape(&claim.s),
        request = escape(&claim.r),
        token = escape(token),
        label = if reject { "Reason (required)" } else { "Comment (optional)" },
        required = if reject { " required" } else { "" },
    );
    page(StatusCode::OK, &format!("Confirm: {}", claim.a), &body)
}

/// The confirmation form's POST: spends the link and acts as its user.
#[utoipa::path(post, path = "/email/act", tag = "integrations", security(()),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`token` and, to reject, `comment`"),
    responses((status = 200, content_type = "text/html", body = String, description = "a page saying what was done")))]
pub(crate) async fn email_act(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let form: Option<LinkForm> = body.ok().and_then(|b| serde_urlencoded::from_bytes(&b).ok());
    let Some(form) = form else { return page(StatusCode::BAD_REQUEST, "Invalid form", "<p>The form is incomplete.</p>") };
    let comment = form.comment.filter(|c| !c.trim().is_empty());
    match s.email_act(&form.token, comment).await {
        Ok(done) => page(StatusCode::OK, "Done", &format!("<p>{}</p>", escape(&done))),
        Err(crate::service::LinkOutcome::NeedsReason(claim)) => confirm_form(&form.token, &claim, Some("A reason is required to reject.")),
        Err(crate::service::LinkOutcome::Refused(e)) => page(e.status, "Not done", &format!("<p>{}</p>", escape(&e.detail))),
    }
}

// ---- operations -------------------------------------------------------------------------

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = Object, description = "`{\"status\": \"ok\"}`")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses((status = 200, body = Object, description = "`{\"status\": \"ready\"}`")))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    s.store().ping().await?;
    Ok(Json(json!({ "status": "ready" })))
}

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several servers in one test process).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format 0.0.4")))]
pub(crate) async fn metrics_text() -> Response {
    let mut resp = prometheus().render().into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

async fn record_metrics(req: Request, next: Next) -> Response {
    prometheus();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    // Every refused or failed call is one log line: what was asked, the answer and why.
    if let Some(r) = resp.extensions().get::<crate::error::Refused>() {
        let status = resp.status().as_u16();
        if status >= 500 {
            tracing::warn!(%method, %path, status, code = r.code, detail = %r.detail, "failed");
        } else {
            tracing::info!(%method, %path, status, code = r.code, detail = %r.detail, "refused");
        }
    }
    let status = resp.status().as_u16().to_string();
    metrics::counter!("signoff_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("signoff_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
