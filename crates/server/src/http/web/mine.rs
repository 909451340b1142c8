//! My requests: what the signed-in person asked for, newest first, by status, a page at a time.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signoff_engine::{RequestState, RequestStatus, StepStatus};
use signoff_store::ListQuery;

use super::{AppState, Page, Visitor};

const PAGE: u32 = 25;

#[derive(Deserialize)]
pub(super) struct Filter {
    status: Option<String>,
    cursor: Option<String>,
}

struct Row {
    id: String,
    what: String,
    status: &'static str,
    policy: String,
    submitted: String,
    steps: String,
    waiting: String,
}

impl Row {
    fn of(r: &RequestState) -> Row {
        let steps = r
            .steps
            .iter()
            .filter(|s| s.status != StepStatus::Skipped)
            .map(|s| format!("{} {}", s.id, s.status.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        Row {
            id: r.id.to_string(),
            what: r.title.clone().or_else(|| r.subject.clone()).unwrap_or_else(|| r.id.to_string()),
            status: r.status.as_str(),
            policy: r.policy.id.clone(),
            submitted: super::minute(r.created_at),
            steps,
            waiting: r.pending_reasons.join("; "),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "mine.html")]
struct MinePage {
    user: String,
    csrf: String,
    admin: bool,
    /// Whether the nav offers the Insights page.
    insights: bool,
    status: String,
    statuses: &'static [&'static str],
    rows: Vec<Row>,
    next: String,
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, filter: Result<Query<Filter>, QueryRejection>) -> Response {
    let (status, cursor) = match filter {
        Ok(Query(f)) => (f.status.filter(|s| RequestStatus::parse(s).is_some()), f.cursor.filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit() || b == b'.'))),
        Err(_) => (None, None),
    };
    let query = ListQuery {
        status: status.as_deref().and_then(RequestStatus::parse),
        requester: Some(visitor.caller.id.clone()),
        limit: PAGE,
        cursor,
        ..Default::default()
    };
    let page = match s.list(&visitor.caller, query).await {
        Ok(p) => p,
        Err(e) => return Page::problem(e),
    };
    let status = status.unwrap_or_default();
    let next = page.next_cursor.map(|c| format!("/mine?status={status}&cursor={c}")).unwrap_or_default();
    let insights = s.sees_insights(&visitor.caller);
    let view = MinePage {
        user: visitor.caller.id,
        csrf: visitor.csrf,
        admin: visitor.caller.admin,
        insights,
        status,
        statuses: &["pending", "approved", "rejected", "expired", "cancelled"],
        rows: page.items.iter().map(Row::of).collect(),
        next,
    };
    Page::of(StatusCode::OK, &view).into_response()
}
