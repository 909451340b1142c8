//! For admins: every open task, by approver, policy and whether it is overdue; and reloading
//! the policies and the directory, with what came of it.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppState, Page, Visitor};
use crate::service::ReloadError;

const LIMIT: u32 = 500;

#[derive(Deserialize, Default)]
pub(super) struct Filter {
    approver: Option<String>,
    policy: Option<String>,
    overdue: Option<String>,
}

struct Row {
    request: String,
    step: String,
    approver: String,
    what: String,
    policy: String,
    due: String,
    overdue: bool,
}

#[derive(askama::Template)]
#[template(path = "admin.html")]
struct AdminPage {
    user: String,
    csrf: String,
    admin: bool,
    /// Whether the nav offers the Insights page.
    insights: bool,
    approver: String,
    policy: String,
    overdue: bool,
    rows: Vec<Row>,
    /// What the last reload did, if this page answers one.
    reloaded: Option<String>,
    reload_failed: bool,
}

async fn draw(s: &AppState, visitor: Visitor, filter: Filter, reloaded: Option<(String, bool)>) -> Response {
    if !visitor.caller.admin {
        return Page::refused(StatusCode::FORBIDDEN, "Only admins see every open task; your inbox lists yours (forbidden).");
    }
    let approver = filter.approver.filter(|a| !a.is_empty());
    let policy = filter.policy.filter(|p| !p.is_empty()).unwrap_or_default();
    let overdue = filter.overdue.is_some_and(|o| o == "on" || o == "true");
    let query = signoff_store::TaskQuery { approver: approver.clone(), policy: (!policy.is_empty()).then(|| policy.clone()), limit: LIMIT, ..Default::default() };
    let tasks = match s.tasks(&visitor.caller, query).await {
        Ok(t) => t.items,
        Err(e) => return Page::problem(e),
    };
    let now = s.now();
    let rows = tasks
        .iter()
        .filter(|t| !overdue || t.due_at.is_some_and(|d| d <= now))
        .map(|t| Row {
            request: t.request.clone(),
            step: t.step.clone(),
            approver: t.approver.clone(),
            what: t.title.clone().or_else(|| t.subject.clone()).unwrap_or_else(|| t.request.clone()),
            policy: t.policy.clone(),
            due: t.due_at.map(super::minute).unwrap_or_default(),
            overdue: t.due_at.is_some_and(|d| d <= now),
        })
        .collect();
    let (reloaded, reload_failed) = match reloaded {
        Some((message, failed)) => (Some(message), failed),
        None => (None, false),
    };
    let status = if reload_failed { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = AdminPage {
        user: visitor.caller.id,
        csrf: visitor.csrf,
        admin: true,
        insights: true,
        approver: approver.unwrap_or_default(),
        policy,
        overdue,
        rows,
        reloaded,
        reload_failed,
    };
    Page::of(status, &page).into_response()
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, filter: Result<Query<Filter>, QueryRejection>) -> Response {
    let filter = filter.map(|Query(f)| f).unwrap_or_default();
    draw(&s, visitor, filter, None).await
}

#[derive(Deserialize)]
struct ReloadForm {
    #[serde(default)]
    csrf: String,
}

/// The reload button: policies and directory read again; an invalid file keeps the previous set.
pub(super) async fn reload(State(s): State<AppState>, visitor: Visitor, headers: HeaderMap, body: Bytes) -> Response {
    let form = serde_urlencoded::from_bytes::<ReloadForm>(&body).unwrap_or(ReloadForm { csrf: String::new() });
    if !visitor.posted_here(&form.csrf, &headers) {
        return Page::not_ours();
    }
    if !visitor.caller.admin {
        return Page::refused(StatusCode::FORBIDDEN, "Only admins may reload (forbidden).");
    }
    let outcome = match s.reload().await {
        Ok(c) => (format!("Reloaded: {} policies ({}).", c.policies.len(), c.policies.keys().cloned().collect::<Vec<_>>().join(", ")), false),
        Err(ReloadError::Invalid(e)) => (format!("Kept the previous policies and directory: {e} (invalid_policy)"), true),
        Err(ReloadError::Store(e)) => (format!("Kept the previous policies and directory: {e} (unavailable)"), true),
    };
    draw(&s, visitor, Filter::default(), Some(outcome)).await
}
