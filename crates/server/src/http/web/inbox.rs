//! The inbox page: the signed-in person's open tasks, soonest due first, with what each is and
//! how urgent it is.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use signoff_store::Task;

use super::{AppState, Page, Visitor};

/// Due within this long: urgent.
const URGENT: SignedDuration = SignedDuration::from_mins(15);
/// The request expires within this long: expiring.
const EXPIRING: SignedDuration = SignedDuration::from_hours(1);
/// The most tasks one page shows.
const PAGE: u32 = 200;

#[derive(Deserialize)]
pub(super) struct Filter {
    policy: Option<String>,
}

/// One row of the inbox.
struct Row {
    request: String,
    step: String,
    what: String,
    subject: String,
    requester: String,
    policy: String,
    reason: String,
    due: String,
    /// `overdue`, `urgent` or empty.
    mark: &'static str,
}

impl Row {
    fn of(t: &Task, now: Timestamp) -> Row {
        let mark = match t.due_at {
            Some(due) if due <= now => "overdue",
            Some(due) if due <= now + URGENT => "urgent",
            _ if t.expires_at.is_some_and(|e| e <= now + EXPIRING) => "expiring",
            _ => "",
        };
        Row {
            request: t.request.clone(),
            step: t.step.clone(),
            what: t.title.clone().or_else(|| t.subject.clone()).unwrap_or_else(|| t.request.clone()),
            subject: t.subject.clone().filter(|_| t.title.is_some()).unwrap_or_default(),
            requester: t.requester.clone().unwrap_or_default(),
            policy: t.policy.clone(),
            reason: t.reason.clone().unwrap_or_default(),
            due: t.due_at.map(|d| format!("{} ({})", super::minute(d), super::relative(d, now))).unwrap_or_default(),
            mark,
        }
    }
}

#[derive(askama::Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    user: String,
    csrf: String,
    admin: bool,
    rows: Vec<Row>,
    /// Every policy among the open tasks, for the filter.
    policies: Vec<String>,
    policy: String,
    overdue: usize,
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, filter: Result<Query<Filter>, QueryRejection>) -> Response {
    let policy = filter.ok().and_then(|Query(f)| f.policy).filter(|p| !p.is_empty()).unwrap_or_default();
    let tasks = match s.inbox(&visitor.caller, PAGE).await {
        Ok(t) => t,
        Err(e) => return Page::problem(e),
    };
    let now = s.now();
    let mut policies: Vec<String> = tasks.iter().map(|t| t.policy.clone()).collect();
    policies.sort();
    policies.dedup();
    let rows: Vec<Row> = tasks.iter().filter(|t| policy.is_empty() || t.policy == policy).map(|t| Row::of(t, now)).collect();
    let overdue = rows.iter().filter(|r| r.mark == "overdue").count();
    let page = InboxPage { admin: visitor.caller.admin, user: visitor.caller.id, csrf: visitor.csrf, rows, policies, policy, overdue };
    Page::of(StatusCode::OK, &page).into_response()
}
