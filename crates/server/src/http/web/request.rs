//! The request page: everything about one request that a person deciding on it needs (its plan
//! step by step, who may act and who has, the context, the history with refused attempts, the
//! notifications), and the forms to act on it. Every form carries an idempotency key made when
//! the page was drawn, so a double click or a resubmitted form acts once.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use signoff_api::{ActionBody, ActionFields};
use signoff_engine::{Event, EventKind, RequestState, StepState, StepStatus};
use signoff_store::DeliveryReport;

use super::{AppState, Page, Visitor};
use crate::error::Problem;
use crate::service::IdempotencyKey;

/// One step, as the page shows it.
struct StepView {
    id: String,
    label: String,
    status: &'static str,
    reason: String,
    after: String,
    approvers: String,
    progress: String,
    acted: Vec<String>,
    due: String,
    escalation_level: u32,
    /// Checklist items not yet acknowledged, and how many of how many are.
    pending_acks: Vec<String>,
    acks: String,
    /// Whether the visitor may act on it now.
    mine: bool,
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default()
}

impl StepView {
    fn of(s: &StepState, visitor: &str) -> StepView {
        let mut acted: Vec<String> = s.approvals.iter().map(|v| vote("approved", &v.by, v.at, v.comment.as_deref())).collect();
        acted.extend(s.rejections.iter().map(|v| vote("rejected", &v.by, v.at, v.comment.as_deref())));
        acted.extend(s.acks.iter().map(|a| format!("{} acknowledged “{}” at {}", a.by, a.item, time(Some(a.at)))));
        StepView {
            id: s.id.clone(),
            label: s.title.clone().unwrap_or_else(|| s.id.clone()),
            status: s.status.as_str(),
            reason: s.skipped_because.clone().or_else(|| s.reason.clone()).unwrap_or_default(),
            after: s.after.join(", "),
            approvers: s.approvers.join(", "),
            progress: format!("{} of {} approvals", s.approvals.len(), s.quorum),
            acted,
            due: time(s.due_at),
            escalation_level: s.escalation_level,
            pending_acks: s.pending_acks().into_iter().map(str::to_string).collect(),
            acks: format!("{} of {} acknowledged", s.require_acks.len() - s.pending_acks().len(), s.require_acks.len()),
            mine: s.status == StepStatus::Active && s.approvers.iter().any(|a| a == visitor) && !s.has_approved(visitor) && !s.has_rejected(visitor),
        }
    }
}

fn vote(what: &str, by: &str, at: Timestamp, comment: Option<&str>) -> String {
    match comment {
        Some(c) => format!("{by} {what} at {}: “{c}”", time(Some(at))),
        None => format!("{by} {what} at {}", time(Some(at))),
    }
}

/// One line of the history.
struct EventView {
    at: String,
    kind: &'static str,
    actor: String,
    step: String,
    detail: String,
    refused: bool,
}

impl EventView {
    fn of(e: &Event) -> EventView {
        let detail = match &e.kind {
            EventKind::Refused { action, code, detail, .. } => format!("{action} refused: {detail} ({code})"),
            EventKind::EditsRefused { .. } => serde_json::to_value(&e.kind).map(|v| v["data"].to_string()).unwrap_or_default(),
            EventKind::Approved { comment: Some(c), .. } => format!("“{c}”"),
            EventKind::Rejected { comment, .. } | EventKind::Commented { comment } => format!("“{comment}”"),
            EventKind::Delegated { from, to } => format!("{from} delegated to {to}"),
            EventKind::Completed { status, reason } => format!("{}{}", status.as_str(), reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()),
            _ => String::new(),
        };
        EventView {
            at: time(Some(e.at)),
            kind: e.kind.type_name(),
            actor: e.actor.clone(),
            step: e.step.clone().unwrap_or_default(),
            detail,
            refused: matches!(e.kind, EventKind::Refused { .. } | EventKind::EditsRefused { .. }),
        }
    }
}

/// One notification and how its delivery stands.
struct DeliveryView {
    channel: String,
    destination: String,
    kind: String,
    status: String,
    attempts: u32,
    error: String,
}

impl DeliveryView {
    fn of(d: &DeliveryReport) -> DeliveryView {
        let n = &d.notification;
        DeliveryView {
            channel: n.outgoing.channel.clone(),
            destination: n.outgoing.destination.clone(),
            kind: n.outgoing.kind.clone(),
            status: serde_json::to_value(n.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            attempts: n.attempts,
            error: n.last_error.clone().unwrap_or_default(),
        }
    }
}

/// A link among the request's evidence.
struct Evidence {
    label: String,
    url: String,
}

fn evidence(items: &[Value]) -> Vec<Evidence> {
    items
        .iter()
        .map(|e| {
            let url = e["url"].as_str().filter(|u| u.starts_with("https://") || u.starts_with("http://")).unwrap_or_default().to_string();
            let label = e["title"].as_str().or(e["label"].as_str()).map(str::to_string).unwrap_or_else(|| if url.is_empty() { e.to_string() } else { url.clone() });
            Evidence { label, url }
        })
        .collect()
}

#[derive(askama::Template)]
#[template(path = "request.html")]
struct RequestPage {
    user: String,
    csrf: String,
    admin: bool,
    /// The idempotency key every form of this drawing carries.
    key: String,
    problem: Option<String>,
    id: String,
    heading: String,
    status: &'static str,
    policy: String,
    hash: String,
    requester: String,
    subject: String,
    created: String,
    decided: String,
    decision_reason: String,
    pending_reasons: Vec<String>,
    evidence: Vec<Evidence>,
    steps: Vec<StepView>,
    context: String,
    effective_context: String,
    events: Vec<EventView>,
    deliveries: Vec<DeliveryView>,
    may_cancel: bool,
    /// Whom a step may be delegated to (the directory's users, the visitor aside): id and label.
    people: Vec<(String, String)>,
}

async fn draw(s: &AppState, visitor: &Visitor, id: &str, problem: Option<String>) -> Result<RequestPage, Problem> {
    let state: RequestState = s.visible(&visitor.caller, id).await?;
    let events = s.events(&visitor.caller, id).await?;
    let deliveries = s.deliveries(&visitor.caller, id).await?;
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let me = visitor.caller.id.as_str();
    Ok(RequestPage {
        user: me.to_string(),
        csrf: visitor.csrf.clone(),
        admin: visitor.caller.admin,
        key: format!("web-{}", uuid::Uuid::now_v7().simple()),
        problem,
        id: state.id.to_string(),
        heading: state.title.clone().or_else(|| state.subject.clone()).unwrap_or_else(|| state.id.to_string()),
        status: state.status.as_str(),
        policy: format!("{} v{}", state.policy.id, state.policy.version),
        hash: state.policy.hash.clone(),
        requester: state.requester.clone(),
        subject: state.subject.clone().unwrap_or_default(),
        created: time(Some(state.created_at)),
        decided: time(state.decided_at),
        decision_reason: state.decision_reason.clone().unwrap_or_default(),
        pending_reasons: state.pending_reasons.clone(),
        evidence: evidence(&state.evidence),
        steps: state.steps.iter().map(|st| StepView::of(st, me)).collect(),
        context: pretty(&state.context),
        effective_context: if state.effective_context == state.context { String::new() } else { pretty(&state.effective_context) },
        events: events.iter().map(EventView::of).collect(),
        deliveries: deliveries.iter().map(DeliveryView::of).collect(),
        may_cancel: !state.status.is_terminal() && (state.requester == me || visitor.caller.admin),
        people: s.users("", 1000).into_iter().filter(|u| u.id != me).map(|u| { let label = u.name.clone().unwrap_or_else(|| u.id.clone()); (u.id, label) }).collect(),
    })
}

pub(super) async fn page(State(s): State<AppState>, visitor: Visitor, id: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(id)) = id else { return Page::refused(StatusCode::BAD_REQUEST, "That is not a request's address.") };
    match draw(&s, &visitor, &id, None).await {
        Ok(page) => Page::of(StatusCode::OK, &page).into_response(),
        Err(e) => Page::problem(e),
    }
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    action: String,
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    item: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// A form on the request page: acts as the visitor, once per drawing of the page.
pub(super) async fn act(State(s): State<AppState>, visitor: Visitor, headers: HeaderMap, id: Result<Path<String>, PathRejection>, body: Bytes) -> Response {
    let Ok(Path(id)) = id else { return Page::refused(StatusCode::BAD_REQUEST, "That is not a request's address.") };
    let Ok(form) = serde_urlencoded::from_bytes::<ActForm>(&body) else { return Page::refused(StatusCode::BAD_REQUEST, "The form is incomplete.") };
    if !visitor.posted_here(&form.csrf, &headers) {
        return Page::not_ours();
    }
    let comment = form.comment.filter(|c| !c.trim().is_empty());
    let to = form.to.clone().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let step = form.step.clone().filter(|s| !s.is_empty());
    let fields = ActionFields { action: form.action.clone(), step, comment, item: form.item.clone(), to: to.clone(), ..Default::default() };
    let fingerprint = signoff_engine::canonical::digest(&json!({ "route": format!("web act {id}"), "action": form.action, "step": form.step, "item": form.item, "to": to }));
    let key = (!form.key.is_empty()).then(|| IdempotencyKey { key: form.key.clone(), fingerprint });
    let outcome = match ActionBody::try_from(fields) {
        Err(e) => Err(Problem::bad_parameter(e)),
        Ok(action) => s.act(&visitor.caller, &id, action, key).await,
    };
    let problem = match outcome {
        Ok(reply) if reply.kind.is_success() => return Redirect::to(&format!("/requests/{id}")).into_response(),
        Ok(reply) => Problem::from_body(&reply.json()),
        Err(e) => e,
    };
    let status = super::super::problem::status(problem.code);
    match draw(&s, &visitor, &id, Some(super::sentence(&problem))).await {
        Ok(page) => Page::of(status, &page).into_response(),
        Err(e) => Page::problem(e),
    }
}

