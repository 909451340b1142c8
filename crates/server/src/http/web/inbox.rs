//! The inbox page: the signed-in person's open tasks, soonest due first, with what each is and
//! how urgent it is.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use signoff_store::{Task, TaskQuery};

use super::{AppState, Page, Visitor, When};

/// Due within this long: urgent.
const URGENT: SignedDuration = SignedDuration::from_mins(15);
/// The request expires within this long: expiring.
const EXPIRING: SignedDuration = SignedDuration::from_hours(1);
/// The tasks one page shows.
const PAGE: u32 = 50;

#[derive(Deserialize)]
pub(super) struct Filter {
    policy: Option<String>,
    /// 1 for the soonest due.
    page: Option<u32>,
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
    due: Option<When>,
    /// `overdue`, `urgent` or empty.
    mark: &'static str,
    /// When this step is expected to be decided, in words (empty without a prediction).
    expected: String,
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
            due: t.due_at.map(|d| When::of(d, now)),
            mark,
            expected: String::new(),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    user: String,
    csrf: String,
    admin: bool,
    /// Whether the nav offers the Insights page.
    insights: bool,
    /// The server's clock, in milliseconds, for the countdowns.
    now_ms: i64,
    rows: Vec<Row>,
    /// Every open task of the visitor's under the filter, on every page.
    total: u64,
    /// Which of them this page shows: `51–100`.
    shown: String,
    /// Every loaded policy, for the filter.
    policies: Vec<String>,
    policy: String,
    overdue: usize,
    /// Whether tasks past this page are overdue too.
    more_overdue: bool,
    earlier: String,
    later: String,
}

/// The inbox at `page` (1-based) under `policy`.
fn href(policy: &str, page: u32) -> String {
    let mut query: Vec<(&str, String)> = Vec::new();
    if !policy.is_empty() {
        query.push(("policy", policy.to_string()));
    }
    if page > 1 {
        query.push(("page", page.to_string()));
    }
    if query.is_empty() { "/".into() } else { format!("/?{}", serde_urlencoded::to_string(query).unwrap_or_default()) }
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, filter: Result<Query<Filter>, QueryRejection>) -> Response {
    let Filter { policy, page } = filter.map(|Query(f)| f).unwrap_or(Filter { policy: None, page: None });
    let policy = policy.filter(|p| !p.is_empty()).unwrap_or_default();
    let page = page.unwrap_or(1).clamp(1, u32::MAX / PAGE);
    let query = TaskQuery {
        approver: Some(visitor.caller.id.clone()),
        policy: (!policy.is_empty()).then(|| policy.clone()),
        offset: (page - 1) * PAGE,
        limit: PAGE,
        count: true,
    };
    let found = match s.tasks(&visitor.caller, query).await {
        Ok(t) => t,
        Err(e) => return Page::problem(e),
    };
    let total = found.total.unwrap_or_default();
    let now = s.now();
    let mut policies: Vec<String> = s.catalog().policies.keys().cloned().collect();
    policies.sort();
    let mut rows: Vec<Row> = found.items.iter().map(|t| Row::of(t, now)).collect();
    for r in &mut rows {
        if let Some(p) = s.prediction(&r.request).await
            && let Some(e) = p.steps.iter().find(|e| e.step == r.step)
        {
            r.expected = super::expected(&e.estimate);
        }
    }
    let overdue = rows.iter().filter(|r| r.mark == "overdue").count();
    let first = u64::from((page - 1) * PAGE);
    let last = first + rows.len() as u64;
    let page = InboxPage {
        admin: visitor.caller.admin,
        insights: s.sees_insights(&visitor.caller),
        user: visitor.caller.id,
        csrf: visitor.csrf,
        now_ms: now.as_millisecond(),
        shown: if rows.is_empty() { String::new() } else { format!("{}–{}", first + 1, last) },
        more_overdue: overdue > 0 && overdue == rows.len() && last < total,
        earlier: if page > 1 { href(&policy, page - 1) } else { String::new() },
        later: if last < total { href(&policy, page + 1) } else { String::new() },
        rows,
        total,
        policies,
        policy,
        overdue,
    };
    Page::of(StatusCode::OK, &page).into_response()
}
